/**
 * The built-in page's data (/api/dashboard) from the real engine on DuckDB: which
 * stats windows are partial, what range the totals cover after a restart, and
 * every loaded rule's latest rows, newest first.
 */
import t from 'tap';
import Fastify from 'fastify';
import { runInMemory } from '../src/compose.js';
import { loadConfig } from '../src/config.js';
import { mountDashboard, ResultsDashboard, RULE_ROWS } from '../src/http/dashboard.js';

const QUERIES = new URL('../queries', import.meta.url).pathname;
const T0 = Date.parse('2025-12-30T12:00:00Z'); // a window boundary
const at = (s: number) => new Date(T0 + s * 1000).toISOString();

const order = (n: number, s: number, extra: Record<string, unknown> = {}) => ({
  order_id: `O${n}`,
  timestamp: at(s),
  user_id: 'USER0001',
  product_id: 'P008',
  product_name: `상품${n % 3}`,
  price: 10_000,
  quantity: 1,
  ip_address: `10.0.${n % 7}.1`,
  payment_method: 'card',
  ...extra,
});

/** One order a second over [from, to) seconds after T0, cut into 10-second batches. */
function* stretch(from: number, to: number) {
  for (let s = from; s < to; s += 10) {
    yield Array.from({ length: Math.min(10, to - s) }, (_, i) => ({ partition: 0, value: Buffer.from(JSON.stringify(order(s + i, s + i))) }));
  }
}

t.test('partial windows, the range of the totals and every rule after a restart', async (t) => {
  // Two runs: orders over [10 s, 100 s), then nothing until [300 s, 400 s).
  const high = [order(1000, 50, { price: 600_000 }), order(1001, 320, { price: 700_000 })];
  const one = (o: object) => [{ partition: 0, value: Buffer.from(JSON.stringify(o)) }];
  const batches = [...stretch(10, 50), one(high[0]!), ...stretch(50, 100), ...stretch(300, 320), one(high[1]!), ...stretch(320, 400)];
  const { state, rules } = await runInMemory(loadConfig({ queriesDir: QUERIES }, {}), QUERIES, batches);
  t.teardown(() => state.close());
  const d = await new ResultsDashboard({ read: (sql) => state.query(sql) }, rules).snapshot();

  t.same(
    d.series.map((s) => [s.start, s.end, s.partial, s.orders]),
    [
      [at(0), at(30), true, 20], // the first run began 10 s into it
      [at(30), at(60), false, 31],
      [at(60), at(90), false, 30],
      [at(90), at(120), true, 10], // the run ended in it
      [at(300), at(330), true, 31], // the second run's first
      [at(330), at(360), false, 30],
      [at(360), at(390), false, 30],
      [at(390), at(420), true, 10], // still open
    ],
  );
  t.equal(d.series[1]!.ordersPerSecond, 31 / 30);
  t.match(
    d.totals,
    { orders: 192, from: at(0).replace('Z', '000Z'), to: at(420).replace('Z', '000Z'), stretches: 2 },
    'the totals say which event time they cover, over two runs',
  );

  t.same(
    d.rules.map((r) => r.name),
    rules.prepared().map((p) => p.rule.name),
    'every loaded rule',
  );
  const hv = d.rules.find((r) => r.name === 'high_value_orders')!;
  t.match(hv, { severity: 'medium', target: 'high_value_orders', key: ['order_id'] });
  t.same(
    hv.columns.map((c) => `${c.name}:${c.kind}`),
    ['source_partition:number', 'order_time:time', 'order_id:text', 'product_name:text', 'quantity:number', 'total_price:number', 'ip_address:text'],
  );
  t.same(
    hv.rows.map((r) => [r[1], r[2], r[5]]),
    [
      [at(320).replace('Z', '000Z'), 'O1001', '700000'],
      [at(50).replace('Z', '000Z'), 'O1000', '600000'],
    ],
    'newest first, times in UTC, exact integers',
  );
  // Three products in each of eight windows: more rows than a rule shows.
  const products = d.rules.find((r) => r.name === 'popular_products')!;
  t.equal(products.rows.length, RULE_ROWS, `bounded at ${RULE_ROWS}`);
  t.equal(RULE_ROWS, 20, 'as the expected windows below assume');
  t.same(
    [...new Set(products.rows.map((r) => r[2]))],
    [420, 390, 360, 330, 120, 90, 60].map((s) => at(s).replace('Z', '000Z')),
    'the newest windows first',
  );
});

t.test('a late order skipped by two engines counts once', async (t) => {
  const one = (o: object) => [{ partition: 0, value: Buffer.from(JSON.stringify(o)) }];
  // At 49 s the watermark is 44 s (5 s lateness): an order of 5 s is late.
  const { state, rules } = await runInMemory(loadConfig({ queriesDir: QUERIES }, {}), QUERIES, [...stretch(10, 50), one(order(2000, 5))]);
  t.teardown(() => state.close());
  const dashboard = new ResultsDashboard({ read: (sql) => state.query(sql) }, rules);
  t.equal((await dashboard.snapshot()).totals.lateEvents, 1);
  // As a second engine (reading a repartition topic) records it too.
  await state.run(
    `INSERT INTO late_events (topic, kafka_partition, kafka_offset, order_id, event_time) SELECT 'orders-by-ip_address', 0, 7, order_id, event_time FROM late_events`,
  );
  t.equal((await dashboard.snapshot()).totals.lateEvents, 1);
});

t.test('/api/evidence: a clear 400 for a question it cannot answer, 404 for a detection with none, the orders otherwise', async (t) => {
  // A bot: 12 orders in 12 s from one IP, a burst of suspicious_ips.
  const bot = Array.from({ length: 12 }, (_, i) => order(3000 + i, 20 + i, { ip_address: '10.6.6.6' }));
  const { state, rules } = await runInMemory(loadConfig({ queriesDir: QUERIES }, {}), QUERIES, [
    bot.map((o) => ({ partition: 0, value: Buffer.from(JSON.stringify(o)) })),
  ]);
  t.teardown(() => state.close());
  const app = Fastify();
  mountDashboard(app, new ResultsDashboard({ read: (sql, params) => state.query(sql, params) }, rules));
  const ask = async (query: string) => {
    const r = await app.inject({ method: 'GET', url: `/api/evidence?${query}` });
    return { status: r.statusCode, body: r.json() };
  };
  const unknown = await ask('rule=%3Cscript%3E&key=10.6.6.6&window_start=2025-12-30T12:00:20.000Z');
  t.equal(unknown.status, 400);
  t.match(unknown.body.message, /no loaded rule of that name keeps evidence; these do: .*suspicious_ips/);
  t.notMatch(unknown.body.message, /script/, "the caller's text is not repeated back");
  const noStart = await ask('rule=suspicious_ips&key=10.6.6.6');
  t.equal(noStart.status, 400);
  t.match(noStart.body.message, /window_start/);
  t.equal((await ask('rule=suspicious_ips&key=10.6.6.6&window_start=yesterday')).status, 400);
  t.equal((await ask('rule=suspicious_ips&key=10.6.6.7&window_start=2025-12-30T12:00:20.000Z')).status, 404, 'no such detection');
  const found = await ask('rule=suspicious_ips&key=10.6.6.6&window_start=2025-12-30T12:00:20.000Z');
  t.equal(found.status, 200);
  t.equal(found.body.orderCount, 12);
});
