/**
 * The built-in page under `fraud-sql run`: the same page and data as the demo's,
 * read from PostgreSQL, checked against the independent recomputation of the input.
 */
import t from 'tap';
import { cpSync, writeFileSync } from 'node:fs';
import type { Dashboard } from '../src/http/dashboard.js';
import { scenario } from './helpers.js';

t.test("run serves the page: totals, windows and every rule's latest rows from PostgreSQL", async (t) => {
  const s = await scenario(t, { partitions: 2, orders: 3_000, seed: 11, rate: 4 });
  await s.produce();
  // The macro bot's address on the block list, so that blocked_activity has rows to show too.
  const dir = t.testdir();
  cpSync(new URL('../queries', import.meta.url).pathname, dir, { recursive: true });
  writeFileSync(`${dir}/lists/block_ips.csv`, 'ip_address,reason\n192.168.99.99,macro bot\n');
  const app = await s.startApp({ queriesDir: dir });
  await s.drained(app);

  const page = await app.http.inject({ url: '/' });
  t.equal(page.statusCode, 200);
  t.match(page.headers['content-type'], /^text\/html/);
  const read = async () => (await app.http.inject({ url: '/api/dashboard' })).json() as Dashboard;
  // Rows are marked final at most once a second, so the last batch's may still be
  // open: the idle ticker marks them within about two seconds.
  let d = await read();
  for (const deadline = Date.now() + 5_000; d.series[0]?.partial !== false && Date.now() < deadline; d = await read()) {
    await new Promise((r) => setTimeout(r, 200));
  }

  const stats = [...s.expected.stats].sort(([a], [b]) => (a < b ? -1 : 1));
  t.equal(
    d.totals.orders,
    stats.reduce((n, [, v]) => n + v.total_orders, 0),
    'orders: every valid order once',
  );
  t.equal(
    d.totals.sales,
    stats.reduce((n, [, v]) => n + v.total_sales, 0),
  );
  t.equal(Date.parse(d.totals.from!), Date.parse(stats[0]![0]) - 30_000, 'from the first window start');
  t.equal(Date.parse(d.totals.to!), Date.parse(stats.at(-1)![0]), 'to the last window end');
  t.equal(d.totals.stretches, 1);
  t.same(
    d.series.map((w) => [Date.parse(w.end), w.orders]),
    stats.slice(-d.series.length).map(([end, v]) => [Date.parse(end), v.total_orders]),
    'the last windows, oldest first',
  );
  t.equal(d.series.length, 20, 'the last 10 minutes of 30 s windows (12.5 minutes of orders)');
  t.equal(d.series[0]!.partial, false, 'an earlier window exists: the oldest shown is complete');
  t.equal(d.series.at(-1)!.partial, true, 'the newest window is still open');

  t.same(
    d.rules.map((r) => r.name),
    ['popular_products', 'suspicious_ips', 'realtime_stats', 'shared_ip_accounts', 'card_testing', 'blocked_activity', 'high_value_orders'],
    'every rule of every pipeline, in pipeline order (the per-order lane last)',
  );
  const hv = d.rules.find((r) => r.name === 'high_value_orders')!;
  const expected = [...s.expected.highValue].sort(([, a], [, b]) => (a.order_time < b.order_time ? 1 : -1)).slice(0, 20);
  const col = (name: string) => hv.columns.findIndex((c) => c.name === name);
  t.same(
    hv.rows.map((r) => [Date.parse(String(r[col('order_time')])), Number(r[col('total_price')])]),
    expected.map(([, v]) => [Date.parse(v.order_time), v.total_price]),
    'the newest 20 high-value orders, newest first',
  );
  t.same(
    hv.columns.map((c) => c.kind),
    ['number', 'time', 'text', 'text', 'number', 'number', 'text'],
  );
  for (const r of d.rules) t.ok(r.rows.length > 0 && !r.error, `${r.name}: ${r.rows.length} rows`);
});
