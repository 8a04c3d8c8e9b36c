/**
 * Results do not depend on how the input topic is keyed (README.md, *Scale out*):
 * the same generated orders, produced keyed by order_id, by user_id or with no key
 * at all, into a 3-partition topic, give exactly the recomputation's rows, with one
 * process and with several sharing the group, through a kill -9 and a rebalance.
 */
import t from 'tap';
import { Kafka, logLevel } from 'kafkajs';
import { BROKERS, scenario, type KeyBy, type RunProcess, type Scenario, type TestMessage } from './helpers.js';
import { ORDER_DEFAULTS } from '../src/commands/fixtures.js';
import { oracleOrder, type OracleOrder } from './oracle.js';

const BATCH = { FRAUD_SQL_BATCH_MAX_SIZE: '2000' };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves once some of the input is committed in PostgreSQL (progress of the repartition topic). */
async function someCommitted(s: Scenario, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const r = await s.pool
      .query("SELECT coalesce(sum(next_offset), 0)::int AS n FROM consumer_progress WHERE topic LIKE '%-by-%'")
      .catch(() => ({ rows: [{ n: 0 }] }));
    if (r.rows[0].n > 0) return;
    if (Date.now() > deadline) throw new Error('nothing committed');
    await sleep(200);
  }
}

const stopAll = async (ps: RunProcess[]) => {
  for (const p of ps) p.child.kill('SIGTERM');
  await Promise.all(ps.map((p) => p.exited));
};

for (const keyBy of ['order_id', 'user_id', 'none'] as const satisfies readonly KeyBy[]) {
  t.test(`input keyed by ${keyBy}: one process gives exactly the recomputation`, async (t) => {
    const s = await scenario(t, { partitions: 3, orders: 15_000, seed: 31, keyBy });
    await s.produce();
    const app = await s.startApp();
    await s.drained(app);
    t.same(
      app.pipelines.map((p) => [p.plan.key, p.plan.repartitioned, p.plan.rules.includes('high_value_orders')]),
      [
        ['ip_address', true, false],
        ['user_id', true, false],
        [null, false, true],
      ],
      'the IP rules read the topic repartitioned by ip_address, the user rules the one by user_id, the per-order rule the input',
    );
    await s.expectExact({ context: `(input keyed by ${keyBy})` });
  });
}

t.test('the input already keyed by ip_address: the IP rules read it directly with --input-keyed-by, same rows', async (t) => {
  const s = await scenario(t, { partitions: 3, orders: 15_000, seed: 31, keyBy: 'ip_address' });
  await s.produce();
  const app = await s.startApp({ inputKeyedBy: 'ip_address' });
  await s.drained(app);
  t.same(
    app.pipelines.map((p) => [p.plan.key, p.plan.topic]),
    [
      ['ip_address', s.topic],
      ['user_id', `${s.group}.${s.topic}-by-user_id`],
      [null, s.topic],
    ],
    'the IP rules and the per-order lane read the input itself; only the user rules go through a repartition topic',
  );
  await s.expectExact();
  const admin = new Kafka({ clientId: 'fraud-sql-test', brokers: BROKERS, logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  t.same(
    (await admin.listTopics()).filter((x) => x.startsWith(`${s.group}.`)),
    [`${s.group}.${s.topic}-by-user_id`],
    'no repartition topic by ip_address',
  );
  await admin.disconnect();
});

for (const keyBy of ['order_id', 'user_id', 'none'] as const satisfies readonly KeyBy[]) {
  t.test(`three processes on a topic keyed by ${keyBy}, one killed with -9 mid-stream and restarted`, async (t) => {
    const s = await scenario(t, { partitions: 3, orders: 30_000, seed: 32, keyBy });
    const half = s.messages.length / 2;
    await s.produce(s.messages.slice(0, half));
    const procs = [s.startCli(BATCH), s.startCli(BATCH), s.startCli(BATCH)];
    await someCommitted(s);
    procs[1]!.child.kill('SIGKILL');
    t.equal((await procs[1]!.exited).signal, 'SIGKILL', 'one process killed with -9');
    await s.produce(s.messages.slice(half));
    const restarted = s.startCli(BATCH);
    await s.drainedInPg(180_000);
    await s.expectExact({ context: `(keyed by ${keyBy}, 3 processes, one killed and restarted)` });
    t.same(
      [procs[0]!, procs[2]!, restarted].map((p) => p.child.exitCode),
      [null, null, null],
      'the others ran throughout: three starting at once on a new schema all came up',
    );
    await stopAll([procs[0]!, procs[2]!, restarted]);
  });
}

t.test('a process added mid-stream while windows and bursts are open', async (t) => {
  // Event times run up to now: the last windows and bursts are still open when the second process joins.
  const s = await scenario(t, { partitions: 3, orders: 20_000, seed: 33, keyBy: 'none' });
  const half = s.messages.length / 2;
  await s.produce(s.messages.slice(0, half));
  const first = s.startCli(BATCH);
  await s.drainedInPg(180_000);
  const second = s.startCli(BATCH);
  await s.produce(s.messages.slice(half));
  await s.drainedInPg(180_000);
  await s.expectExact({ context: '(a process joined mid-stream)' });
  await stopAll([first, second]);
});

t.test('kill -9 after the hop produced copies, before it committed the input offsets', async (t) => {
  const s = await scenario(t, { partitions: 3, orders: 15_000, seed: 34, keyBy: 'order_id' });
  await s.produce();
  const crashing = s.startCli({ ...BATCH, FRAUD_SQL_FAILPOINT: 'after-repartition-produce:2' });
  t.equal((await crashing.exited).signal, 'SIGKILL', 'killed between the copies and the input commit');
  const restarted = s.startCli(BATCH);
  await s.drainedInPg(180_000);
  await s.expectExact({ context: '(after a kill inside the hop)' });
  await stopAll([restarted]);
});

t.test('--input-keyed-by ip_address on an order-keyed topic: one warning that says so', async (t) => {
  const s = await scenario(t, { partitions: 3, orders: 3_000, seed: 35, keyBy: 'order_id' });
  await s.produce();
  const run = s.startCli({ FRAUD_SQL_INPUT_KEYED_BY: 'ip_address' });
  const deadline = Date.now() + 60_000;
  while (!/--input-keyed-by ip_address: /.test(run.output()) && Date.now() < deadline) await sleep(200);
  t.match(
    run.output(),
    /WARN .*--input-keyed-by ip_address: 1000 of the first 1000 orders have a message key other than their ip_address.*Leave --input-keyed-by out/,
  );
  await stopAll([run]);
});

t.test('input after a quiet spell, read one input partition after the other: no order is late', async (t) => {
  const s = await scenario(t, { partitions: 2 });
  // The hop announces an input partition idle after half of this without input.
  const app = await s.startApp({ idleTimeoutMs: 10_000 });
  const start = Date.now() - 600_000;
  const orders: OracleOrder[] = [];
  let seq = 0;
  /** `n` orders to `partition`, one every 500 ms of event time from `fromMs`, from two IPs. */
  const to = (partition: number, fromMs: number, n: number): TestMessage[] =>
    Array.from({ length: n }, (_, i) => {
      const json = { ...ORDER_DEFAULTS, order_id: `Q${++seq}`, timestamp: new Date(fromMs + i * 500).toISOString(), ip_address: `10.1.${partition}.${i % 2}` };
      orders.push(oracleOrder(json));
      return { key: json.ip_address, value: JSON.stringify(json), partition };
    });
  await s.produce([...to(0, start, 10), ...to(1, start, 10)]);
  await s.drained(app);
  // Both input partitions quiet: announced idle, neither holds the watermark back.
  await sleep(7_000);
  // A minute of event time arrives on both (a backlog, as producers flush after an
  // outage); partition 1's is read first. Had partition 0 stayed idle, the watermark
  // would pass its orders before they were read, and they would all be late.
  await s.produce(to(1, start + 10_000, 120));
  await s.drained(app);
  await s.produce(to(0, start + 10_000, 120));
  await s.drained(app);
  const late = await s.pool.query('SELECT count(*)::int AS n FROM late_events');
  t.equal(late.rows[0].n, 0, 'no order is late');
  await s.expectExact({ orders, context: '(after a quiet spell)' });

  // From here on partition 0 stays quiet: once woken, it is announced idle again and holds nothing back,
  // and the windows before partition 1's latest order become final within seconds
  // (the engines' own idle timeout would close them on the wall clock only much
  // later, at a second of event time per second).
  await sleep(7_000); // announced idle again, then woken by partition 1's input
  await s.produce([...to(1, start + 100_000, 60), ...to(1, start + 200_000, 1)]);
  await s.drained(app);
  const before = new Date(start + 190_000).toISOString();
  const open = async () =>
    (await s.pool.query('SELECT count(*)::int AS n FROM realtime_stats_partial WHERE NOT is_final AND stat_time <= $1', [before])).rows[0].n as number;
  for (const deadline = Date.now() + 15_000; (await open()) > 0 && Date.now() < deadline;) await sleep(500);
  t.equal(await open(), 0, 'the windows a quiet partition would have held open are final');
});
