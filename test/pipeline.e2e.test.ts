/**
 * End to end through the real Kafka broker and PostgreSQL: hand-built edge cases
 * with exact expected rows, and malformed input.
 */
import t from 'tap';
import { scenario, type TestMessage } from './helpers.js';
import type { OracleOrder } from './oracle.js';

const T0 = Date.UTC(2025, 11, 30, 12, 0, 0); // 2025-12-30T12:00:00Z, a minute boundary
let seq = 0;
function order(ip: string, ms: number, price = 10_000, quantity = 1, product = '마우스'): OracleOrder & { json: string } {
  const o = {
    order_id: `ORD${ms}${String(++seq).padStart(4, '0')}`,
    ms,
    product_name: product,
    price,
    quantity,
    ip_address: ip,
    user_id: 'USER0001',
    payment_method: 'card',
  };
  const json = JSON.stringify({
    order_id: o.order_id,
    timestamp: new Date(ms).toISOString(),
    user_id: o.user_id,
    product_id: 'P008',
    product_name: product,
    price,
    quantity,
    ip_address: ip,
    payment_method: o.payment_method,
  });
  return { ...o, json };
}
const msg = (o: { ip_address: string; json: string }): TestMessage => ({ key: o.ip_address, value: o.json });

t.test('hand-built edge cases produce exactly the expected rows', async (t) => {
  const s = await scenario(t, { partitions: 4 });
  const { pool } = s;

  const A = '10.0.0.1'; // burst of 10 across the 12:01:00 boundary
  const B = '10.0.0.2'; // 9 orders within 60 s: not suspicious
  const C = '10.0.0.3'; // high value, window edge, out-of-order and late events
  const sent: ReturnType<typeof order>[] = [];
  for (let i = 0; i < 10; i++) sent.push(order(A, T0 + 55_000 + i * 1_000)); // 12:00:55 .. 12:01:04
  for (let i = 0; i < 9; i++) sent.push(order(B, T0 + i * 6_000)); // 12:00:00 .. 12:00:48
  const hv = order(C, T0 + 1_000, 250_000, 2, '게이밍 헤드셋'); // 500,000: high value
  const nearMiss = order(C, T0 + 2_000, 499_999, 1, '외장 SSD'); // 499,999: not
  const edge = order(C, T0 + 30_000); // exactly window_end of [12:00:00, 12:00:30): belongs to the next window
  const newest = order(C, T0 + 70_000); // 12:01:10: watermark becomes 12:01:05
  const outOfOrder = order(C, T0 + 66_000); // 12:01:06 >= watermark: applied to [12:01:00, 12:01:30)
  const tooLate = order(C, T0 + 10_000); // 12:00:10 < watermark: late, recorded, not applied
  sent.push(hv, nearMiss, edge, newest);
  // In event-time order: per partition, an order behind the watermark would be late.
  await s.produce([...sent].sort((a, b) => a.ms - b.ms).map(msg));
  await s.produce([msg(outOfOrder), msg(tooLate)]);

  // Keyed by IP, read directly: each IP's partition has its own watermark, as the
  // comments above count. (Through the hop, an input partition that sends nothing
  // to C's partition would hold its watermark back until the idle timeout.)
  const app = await s.startApp({ inputKeyedBy: 'ip_address' });
  await s.drained(app);

  const sus = (await pool.query('SELECT ip_address, window_start, window_end, order_count, total_spent FROM suspicious_ips')).rows;
  t.same(
    sus,
    [
      {
        ip_address: A,
        window_start: new Date(T0 + 55_000),
        window_end: new Date(T0 + 64_000),
        order_count: '10',
        total_spent: '100000',
      },
    ],
    'one burst row for A, none for B (9 orders in 60 s)',
  );

  const hvRows = (await pool.query('SELECT order_id, total_price, quantity FROM high_value_orders')).rows;
  t.same(hvRows, [{ order_id: hv.order_id, total_price: '500000', quantity: 2 }], '250,000 x 2 is high value; 499,999 x 1 is not');

  const stats = (
    await pool.query(
      "SELECT to_char(stat_time AT TIME ZONE 'UTC', 'HH24:MI:SS') AS t, total_orders::int, total_sales::bigint::int, suspicious_ip_count FROM realtime_stats ORDER BY 1",
    )
  ).rows;
  t.same(
    stats,
    [
      // [12:00:00, 12:00:30): B x5 (0,6,12,18,24 s), hv, nearMiss
      { t: '12:00:30', total_orders: 7, total_sales: 5 * 10_000 + 500_000 + 499_999, suspicious_ip_count: 0 },
      // [12:00:30, 12:01:00): B x4 (30..48 s), edge, A x5 (55..59 s): A's first 5 orders are burst members
      { t: '12:01:00', total_orders: 10, total_sales: 100_000, suspicious_ip_count: 1 },
      // [12:01:00, 12:01:30): A x5, newest, outOfOrder
      { t: '12:01:30', total_orders: 7, total_sales: 70_000, suspicious_ip_count: 1 },
    ],
    'window edges, out-of-order within lateness, burst members per window',
  );

  const late = (await pool.query('SELECT order_id, event_time FROM late_events')).rows;
  t.same(late, [{ order_id: tooLate.order_id, event_time: new Date(T0 + 10_000) }], 'the late order is recorded and not applied');

  const popular = (await pool.query(`SELECT window_start, product_name, order_count::int FROM popular_products WHERE product_name = '마우스' ORDER BY 1`)).rows;
  t.same(
    popular.map((r) => r.order_count),
    [5, 10, 7],
  );

  // The independent oracle agrees on everything (the late order excluded).
  await s.expectExact({ orders: sent.concat(outOfOrder) });
});

t.test('malformed messages go to the dead letters; the orders around them are processed', async (t) => {
  const s = await scenario(t, { partitions: 1 });
  const good = (i: number) => order('10.1.0.1', T0 + i * 7_000);
  const base = JSON.parse(good(99).json);
  const poison: [string, string | Buffer][] = [
    ['not JSON', '{"order_id": "x", '],
    ['missing field', JSON.stringify({ ...base, order_id: 'M1', user_id: undefined })],
    ['mistyped field', JSON.stringify({ ...base, order_id: 'M2', quantity: '2' })],
    ['negative price', JSON.stringify({ ...base, order_id: 'M3', price: -5 })],
    ['quantity 0', JSON.stringify({ ...base, order_id: 'M4', quantity: 0 })],
    ['bad IP', JSON.stringify({ ...base, order_id: 'M5', ip_address: '300.1.2.3' })],
    ['bad timestamp', JSON.stringify({ ...base, order_id: 'M6', timestamp: '30/12/2025 21:00' })],
    ['1 MB message', Buffer.alloc(1_000_000, 'x')],
    // PostgreSQL text cannot hold NUL: a reason or key quoting one once failed every batch.
    ['NUL in a quoted field', JSON.stringify({ ...base, order_id: 'M7', ip_address: '10.1.0.1\u0000' })],
    ['raw NUL byte', Buffer.from('{"order_id": "M8\u0000", ')],
  ];
  const messages: TestMessage[] = [];
  const goods: ReturnType<typeof order>[] = [];
  poison.forEach(([, value], i) => {
    const g = good(i);
    goods.push(g);
    messages.push(msg(g), { key: '10.1.0.1', value });
  });
  const last = good(poison.length);
  goods.push(last);
  messages.push(msg(last));
  // A valid order with NUL in its text, keyed with one: still counted and still high-value.
  const nul = order('10.1.0.1', T0 + (poison.length + 1) * 7_000, 600_000, 1, 'x\u0000y');
  goods.push(nul);
  messages.push({ key: '10.1.0.1\u0000', value: nul.json });
  await s.produce(messages);

  const app = await s.startApp();
  await s.drained(app);

  const dl = (await s.pool.query('SELECT kafka_partition, kafka_offset::int, reason, payload_bytes FROM dead_letters ORDER BY kafka_offset')).rows;
  t.equal(dl.length, poison.length, 'every poison message is a dead letter, once');
  dl.forEach((r, i) => {
    t.equal(r.kafka_offset, 2 * i + 1, `${poison[i]![0]}: original offset kept`);
    t.equal(r.kafka_partition, 0);
  });
  t.match(
    dl.map((r) => r.reason),
    [
      /not JSON/,
      /missing field "user_id"/,
      /"quantity" must be an integer/,
      /"price" must be >= 0/,
      /"quantity" must be >= 1/,
      /not an IPv4/,
      /not ISO-8601/,
      /exceeds the 65536-byte limit/,
      /not an IPv4 .*"10\.1\.0\.1\uFFFD"/,
      /not JSON/,
    ],
  );
  t.equal(dl[7].payload_bytes, 1_000_000, 'the size of the oversized message is recorded');
  const counted = await s.pool.query('SELECT sum(total_orders)::int AS n FROM realtime_stats');
  t.equal(counted.rows[0].n, goods.length, 'every valid order around the poison is counted');
  const hv = await s.pool.query('SELECT product_name FROM high_value_orders WHERE order_id = $1', [nul.order_id]);
  t.same(
    hv.rows.map((r) => r.product_name),
    ['x\uFFFDy'],
    'the NUL is stored as U+FFFD',
  );
});
