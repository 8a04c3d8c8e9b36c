/**
 * Rules as code under a running `fraud-sql run` (real broker and PostgreSQL): an
 * edit takes effect at the next batch with window state intact; a broken edit
 * keeps the previous rules running and is reported with file:line:column.
 */
import t from 'tap';
import { cpSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { scenario } from './helpers.js';

t.test('an edited or removed rule applies at the next batch; a broken edit keeps the old one', async (t) => {
  const dir = t.testdir();
  cpSync(new URL('../queries', import.meta.url).pathname, dir, { recursive: true });
  const s = await scenario(t, { partitions: 2, orders: 9_000, seed: 21, startMs: Date.now() - 95_000 });
  const { pool, messages, orders } = s;
  const app = await s.startApp({ queriesDir: dir });
  const reloaded = () =>
    new Promise<{ ok: boolean; problems: { file: string; line: number; column: number; message: string }[] }>((r) =>
      app.engine.events.once('rules:reloaded', r),
    );

  await s.produce(messages.slice(0, 3_000));
  await s.drained(app);
  const v1 = (await pool.query('SELECT DISTINCT rule_version FROM high_value_orders')).rows.map((r) => r.rule_version);
  t.equal(v1.length, 1);

  // Raise the high-value threshold to 1,000,000 KRW.
  const hvFile = `${dir}/high_value_orders.sql`;
  const reload1 = reloaded();
  writeFileSync(hvFile, readFileSync(hvFile, 'utf8').replace('-- param threshold = 500000', '-- param threshold = 1000000'));
  t.equal((await reload1).ok, true, 'the edit is applied');
  await s.produce(messages.slice(3_000, 6_000));
  await s.drained(app);
  const newRows = (await pool.query('SELECT total_price::int AS total, rule_version FROM high_value_orders WHERE rule_version <> $1', [v1[0]])).rows;
  t.ok(newRows.length > 0, `${newRows.length} high-value rows from the edited rule`);
  t.ok(
    newRows.every((r) => r.total >= 1_000_000),
    'every new row meets the new threshold',
  );
  const inBetween = orders
    .slice(3_000, 6_000)
    .filter((o) => o.price * o.quantity >= 500_000 && o.price * o.quantity < 1_000_000)
    .map((o) => o.order_id);
  t.ok(inBetween.length > 0, `${inBetween.length} later orders between 500,000 and 1,000,000 KRW`);
  const flagged = (await pool.query('SELECT order_id FROM high_value_orders WHERE order_id = ANY($1)', [inBetween])).rows;
  t.same(flagged, [], 'none of them is high value under the edited rule');

  // An edit that would move a rule to another engine (with state, high_value_orders
  // would leave the per-order lane for the window rules' engine, at other offsets).
  const hvEdited = readFileSync(hvFile, 'utf8');
  const reloadMove = reloaded();
  writeFileSync(hvFile, hvEdited.replace('-- state: 0s', '-- state: 5s'));
  const moved = await reloadMove;
  t.equal(moved.ok, false, 'a rule that would change engines is refused');
  t.match(moved.problems[0], {
    file: hvFile,
    message: /^high_value_orders would move from the engine of group \S+\.per-order to that of \S+: restart fraud-sql to apply$/,
  });
  const reloadBack = reloaded();
  writeFileSync(hvFile, hvEdited);
  t.equal((await reloadBack).ok, true, 'put back, it applies');

  // A broken edit: a typo in the SELECT of popular_products.
  const ppFile = `${dir}/popular_products.sql`;
  const good = readFileSync(ppFile, 'utf8');
  const reload2 = reloaded();
  writeFileSync(ppFile, good.replace('sum(o.price * o.quantity)      AS total_sales', 'sum(o.prize * o.quantity)      AS total_sales'));
  const r2 = await reload2;
  t.equal(r2.ok, false, 'the broken edit is rejected');
  const line = good.split('\n').findIndex((l) => l.includes('sum(o.price * o.quantity)      AS total_sales')) + 1;
  t.match(r2.problems[0], { file: ppFile, line, message: /prize/ }, `reported at ${ppFile}:${line}`);
  t.ok(r2.problems[0]!.column > 1, `with a column (${r2.problems[0]!.column})`);
  const status = await (await fetch(`${app.url}/status`)).json();
  t.match(status.ruleProblems[0], new RegExp(`popular_products.sql:${line}:\\d+: .*prize`), '/status shows it');
  t.match(await (await fetch(`${app.url}/metrics`)).text(), /^fraud_sql_rules_invalid 1$/m, 'and the metric');

  await s.produce(messages.slice(6_000, 7_500));
  await s.drained(app);

  // A removed rule stops at the next batch; the others go on. An edited
  // suspicious_ips (a new version) carries on from the open bursts of the old one.
  const siFile = `${dir}/suspicious_ips.sql`;
  const siVersion = (await pool.query(`SELECT rule_version FROM suspicious_ips WHERE ip_address = '192.168.99.99'`)).rows[0]?.rule_version;
  const reload3 = reloaded();
  writeFileSync(ppFile, good);
  unlinkSync(hvFile);
  writeFileSync(siFile, readFileSync(siFile, 'utf8').replace('-- severity: high', '-- severity: medium'));
  const r3 = await reload3;
  t.equal(r3.ok, true, 'fixing the typo, removing a rule and editing one is applied');
  await s.produce(messages.slice(7_500));
  await s.drained(app);
  const lastIds = orders.slice(7_500).map((o) => o.order_id);
  t.same(
    (await pool.query('SELECT order_id FROM high_value_orders WHERE order_id = ANY($1)', [lastIds])).rows,
    [],
    'no high-value rows once the rule is removed',
  );
  // Window state survived both reloads, and the old popular_products kept running:
  // everything but high-value (whose threshold changed) equals the recomputation.
  await s.expectExact({ tables: ['popular_products', 'realtime_stats', 'suspicious_ips'], context: 'across every reload' });
  const bot = (await pool.query(`SELECT rule_version FROM suspicious_ips WHERE ip_address = '192.168.99.99'`)).rows;
  t.equal(bot.length, 1, 'the bot is one burst from start to end');
  t.not(bot[0].rule_version, siVersion, 'continued by the edited version of the rule');
});
