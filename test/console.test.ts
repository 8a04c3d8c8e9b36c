/**
 * `--console` reads as a detection log: what the real engine and rules emit for a
 * known input (a bot burst of 60 orders across six batches, three high-value
 * orders, seven 30 s windows, dead letters and a late order) prints exactly one
 * line per detection, per step a burst grows past, per burst end and per closed
 * window, and nothing a producer sends can reach the terminal as a control
 * sequence or a forged line. Real engine and DuckDB, in memory.
 */
import t from 'tap';
import { detectionPrinter, step } from '../src/console.js';
import { EngineEmitter, type BatchStats } from '../src/engine/events.js';
import { runInMemory } from '../src/compose.js';
import { loadConfig } from '../src/config.js';

const QUERIES = new URL('../queries', import.meta.url).pathname;
const T0 = Date.parse('2025-12-30T12:00:00Z');

interface Input {
  ms: number;
  partition: number;
  value: string;
}

const order = (ms: number, partition: number, fields: { id: string; ip: string; price: number; quantity?: number; product?: string }): Input => ({
  ms,
  partition,
  value: JSON.stringify({
    order_id: fields.id,
    timestamp: new Date(ms).toISOString(),
    user_id: 'USER1',
    product_id: 'P001',
    product_name: fields.product ?? '노트북',
    price: fields.price,
    quantity: fields.quantity ?? 1,
    ip_address: fields.ip,
  }),
});

const HOSTILE_PRODUCT = '\u001b[2J<script>alert("x")</script>\nFAKE [suspicious_ips] 6.6.6.6 new burst\u202e';
const HOSTILE_ID = 'ORD\u001b]0;owned\u0007\r\\';

function input(): Input[] {
  const orders: Input[] = [];
  // Ordinary shoppers: one order every 2 s, each from its own IP, over both partitions.
  for (let s = 0; s <= 180; s += 2) orders.push(order(T0 + s * 1000, (s / 2) % 2, { id: `N${s}`, ip: `192.168.0.${s}`, price: 10_000 }));
  // A bot: 60 orders, one a second from 12:00:05.
  for (let k = 0; k < 60; k++) orders.push(order(T0 + (5 + k) * 1000, 0, { id: `B${k}`, ip: '10.0.0.66', price: 20_000 }));
  orders.push(order(T0 + 33_000, 1, { id: HOSTILE_ID, ip: '172.16.0.1', price: 250_000, quantity: 2, product: HOSTILE_PRODUCT }));
  orders.push(order(T0 + 75_000, 0, { id: 'H2', ip: '172.16.0.2', price: 1_200_000 }));
  orders.push(order(T0 + 140_000, 1, { id: 'H3', ip: '172.16.0.3', price: 700_000 }));
  orders.sort((a, b) => a.ms - b.ms);
  return orders;
}

/** Six-plus batches of 10 s of event time each; dead letters and a late order in the middle. */
function* batches(): Generator<{ partition: number; value: Buffer }[]> {
  const orders = input();
  for (let from = T0; from <= T0 + 180_000; from += 10_000) {
    const batch = orders.filter((o) => o.ms >= from && o.ms < from + 10_000);
    if (from === T0 + 30_000) batch.push({ ms: 0, partition: 0, value: 'not json' }, { ms: 0, partition: 1, value: '{"order_id":"X"}' });
    if (from === T0 + 90_000) batch.push(order(T0 + 10_000, 1, { id: 'LATE', ip: '192.168.1.1', price: 10_000 }));
    yield batch.map((o) => ({ partition: o.partition, value: Buffer.from(o.value) }));
  }
}

t.test('one line per detection, growth step, burst end and closed window', async (t) => {
  const lines: string[] = [];
  let emit: (watermarks: Map<number, number>) => void = () => {};
  const { state } = await runInMemory(loadConfig({}, {}), QUERIES, batches(), {
    listen: (events) => {
      detectionPrinter((line) => lines.push(line))(events);
      emit = (watermarks) => events.safeEmit('finalized', { watermarks });
    },
  });
  state.close();
  // Input stops at 12:03:00; the idle ticker then moves the watermarks past the last window.
  emit(
    new Map([
      [0, (T0 + 240_000) * 1000],
      [1, (T0 + 240_000) * 1000],
    ]),
  );
  // What the producer sent reaches the terminal as text: no escape, bell, return or line break.
  const clean = !lines.some((l) => /[\p{Cc}\u202e]/u.test(l));
  t.ok(clean, 'no control character is printed');
  // (Raw ones would garble this test's own output.)
  if (clean) t.comment('\n' + lines.join('\n'));

  // 4 burst lines (new at 15, past 20 at 25, past 50 at 55, ended at 60) + 3 high-value
  // orders + 7 windows (12:00:30 .. 12:03:30).
  t.equal(lines.length, 14, 'exactly 14 lines');
  t.same(lines, [
    '[suspicious_ips] 10.0.0.66 new burst: 15 orders, 300,000 KRW, 2025-12-30 12:00:05 to 12:00:19 UTC',
    '[suspicious_ips] 10.0.0.66 burst passed 20 orders: 25 orders, 500,000 KRW, 2025-12-30 12:00:05 to 12:00:29 UTC',
    '[high_value_orders] order "ORD\\u{1b}]0;owned\\u{7}\\u{d}\\\\" "\\u{1b}[2J<script>alert(\\"x\\")</script>\\u{a}FAKE [suspicious_ips] 6.6.6.6 new burst\\u{202e}" x2 = 500,000 KRW from 172.16.0.1 at 2025-12-30 12:00:33 UTC',
    '[realtime_stats] window ending 2025-12-30 12:00:30 UTC: 40 orders, 650,000 KRW, avg 16,250 KRW, 1 suspicious IP; 2 dead letters since the last window',
    '[suspicious_ips] 10.0.0.66 burst passed 50 orders: 55 orders, 1,100,000 KRW, 2025-12-30 12:00:05 to 12:00:59 UTC',
    '[realtime_stats] window ending 2025-12-30 12:01:00 UTC: 46 orders, 1,250,000 KRW, avg 27,174 KRW, 1 suspicious IP',
    '[high_value_orders] order "H2" "노트북" x1 = 1,200,000 KRW from 172.16.0.2 at 2025-12-30 12:01:15 UTC',
    '[realtime_stats] window ending 2025-12-30 12:01:30 UTC: 21 orders, 1,450,000 KRW, avg 69,048 KRW, 1 suspicious IP; 1 late order since the last window',
    '[realtime_stats] window ending 2025-12-30 12:02:00 UTC: 15 orders, 150,000 KRW, avg 10,000 KRW, 0 suspicious IPs',
    '[suspicious_ips] 10.0.0.66 burst ended: 60 orders, 1,200,000 KRW, 2025-12-30 12:00:05 to 12:01:04 UTC',
    '[high_value_orders] order "H3" "노트북" x1 = 700,000 KRW from 172.16.0.3 at 2025-12-30 12:02:20 UTC',
    '[realtime_stats] window ending 2025-12-30 12:02:30 UTC: 16 orders, 850,000 KRW, avg 53,125 KRW, 0 suspicious IPs',
    '[realtime_stats] window ending 2025-12-30 12:03:00 UTC: 15 orders, 150,000 KRW, avg 10,000 KRW, 0 suspicious IPs',
    '[realtime_stats] window ending 2025-12-30 12:03:30 UTC: 1 order, 10,000 KRW, avg 10,000 KRW, 0 suspicious IPs',
  ]);
});

t.test('a shop selling mostly expensive goods: ten high-value orders listed per window, the rest counted', async (t) => {
  const lines: string[] = [];
  // 14 high-value orders in the window ending 12:00:30, then one order that closes it.
  const orders = Array.from({ length: 14 }, (_, i) => order(T0 + i * 1000, 0, { id: `H${i}`, ip: `172.16.1.${i}`, price: 800_000 }));
  orders.push(order(T0 + 40_000, 0, { id: 'N1', ip: '192.168.0.1', price: 10_000 }));
  const { state } = await runInMemory(loadConfig({}, {}), QUERIES, [orders.map((o) => ({ partition: o.partition, value: Buffer.from(o.value) }))], {
    listen: detectionPrinter((line) => lines.push(line)),
  });
  state.close();
  t.equal(lines.length, 11);
  // Which ten is the rule's row order (DuckDB's); each is listed once.
  const listed = new Set(lines.slice(0, 10).map((l) => /^\[high_value_orders\] order "(H\d+)"/.exec(l)?.[1]));
  t.equal(listed.size, 10, 'ten different high-value orders are listed');
  t.notOk(listed.has(undefined), 'the first ten lines are high-value orders');
  t.equal(
    lines[10],
    '[realtime_stats] window ending 2025-12-30 12:00:30 UTC: 14 orders, 11,200,000 KRW, avg 800,000 KRW, 0 suspicious IPs; 4 more high-value orders not listed since the last window',
  );
});

t.test('bursts are reported at 10, 20, 50, 100, 200, 500, ...', async (t) => {
  const cases: [number, number][] = [
    [9, 0],
    [10, 10],
    [19, 10],
    [20, 20],
    [49, 20],
    [50, 50],
    [99, 50],
    [100, 100],
    [250, 200],
    [999, 500],
    [1_000, 1_000],
    [2_500_000, 2_000_000],
  ];
  for (const [n, s] of cases) t.equal(step(n), s, `${n} orders: step ${s}`);
});

t.test('one printer for all engines: the per-order lane’s high-value orders count in the windows’ summary', async (t) => {
  const lines: string[] = [];
  const print = detectionPrinter((line) => lines.push(line));
  const [lane, windows] = [new EngineEmitter(), new EngineEmitter()];
  print(lane);
  print(windows);
  const stats = (results: BatchStats['results'], watermarkUs: number): BatchStats =>
    ({ deadLetters: 0, late: 0, results, partitions: [{ partition: 0, nextOffset: 1n, watermarkUs }] }) as unknown as BatchStats;
  const hv = (i: number) => ({
    order_id: `H${i}`,
    product_name: 'p',
    quantity: 1,
    total_price: '900000',
    ip_address: '10.0.0.1',
    order_time: '2025-12-30T12:00:01.000000Z',
  });
  const rows = Array.from({ length: 13 }, (_, i) => hv(i));
  lane.emit(
    'batch:end',
    stats(
      [
        {
          rule: 'high_value_orders',
          target: 'high_value_orders',
          names: Object.keys(rows[0]!),
          columns: Object.keys(rows[0]!).map((k) => rows.map((r) => r[k as keyof typeof r])),
          rowCount: 13,
        },
      ],
      0,
    ),
  );
  const w = { source_partition: 0, stat_time: '2025-12-30T12:00:30.000000Z', total_orders: '13', total_sales: '11700000', suspicious_ip_count: 0 };
  windows.emit(
    'batch:end',
    stats(
      [{ rule: 'realtime_stats', target: 'realtime_stats_partial', names: Object.keys(w), columns: Object.values(w).map((v) => [v]), rowCount: 1 }],
      (T0 + 31_000) * 1000,
    ),
  );
  t.equal(lines.filter((l) => l.startsWith('[high_value_orders]')).length, 10, 'ten listed, whichever engine found them');
  t.match(lines.at(-1), /^\[realtime_stats\] window ending 2025-12-30 12:00:30 UTC: 13 orders, .*; 3 more high-value orders not listed since the last window$/);
});

t.test('catching up, a window is summed once every assigned partition is past it, not when the first one is', async (t) => {
  const lines: string[] = [];
  const events = new EngineEmitter();
  detectionPrinter((line) => lines.push(line))(events);
  events.emit('assigned', { partitions: [0, 1], seek: new Map() });
  const window = (partition: number, orders: number, watermarkUs: number): BatchStats => {
    const w = {
      source_partition: partition,
      stat_time: '2025-12-30T12:00:30.000000Z',
      total_orders: String(orders),
      total_sales: String(orders * 10_000),
      suspicious_ip_count: 0,
    };
    return {
      deadLetters: 0,
      late: 0,
      results: [{ rule: 'realtime_stats', target: 'realtime_stats_partial', names: Object.keys(w), columns: Object.values(w).map((v) => [v]), rowCount: 1 }],
      partitions: [{ partition, nextOffset: 1n, watermarkUs }],
    } as unknown as BatchStats;
  };
  // Partition 0's backlog is read first, far past the window; partition 1 has not been heard from.
  events.emit('batch:end', window(0, 30, (T0 + 600_000) * 1000));
  t.same(lines, [], 'no summary while a partition has said nothing');
  events.emit('batch:end', window(1, 25, (T0 + 600_000) * 1000));
  t.match(lines, [/^\[realtime_stats\] window ending 2025-12-30 12:00:30 UTC: 55 orders, /], 'both partitions summed');
});

t.test('a late order skipped by every engine is one late order in the summary', async (t) => {
  const lines: string[] = [];
  const print = detectionPrinter((line) => lines.push(line));
  const [input, repartitioned] = [new EngineEmitter(), new EngineEmitter()];
  print(input);
  print(repartitioned, false);
  const late = (partition: number, results: BatchStats['results'] = []): BatchStats =>
    ({ deadLetters: 0, late: 1, results, partitions: [{ partition, nextOffset: 1n, watermarkUs: (T0 + 31_000) * 1000 }] }) as unknown as BatchStats;
  repartitioned.emit('batch:end', late(0));
  const w = { source_partition: 0, stat_time: '2025-12-30T12:00:30.000000Z', total_orders: '3', total_sales: '30000', suspicious_ip_count: 0 };
  input.emit(
    'batch:end',
    late(0, [{ rule: 'realtime_stats', target: 'realtime_stats_partial', names: Object.keys(w), columns: Object.values(w).map((v) => [v]), rowCount: 1 }]),
  );
  t.match(lines.at(-1), /; 1 late order since the last window$/);
});
