/**
 * The burst form of a rule (`-- burst:` and `SELECT ... FROM burst`): what the
 * header derives, and every mistake reported at its file and line, both those the
 * loader sees and those only DuckDB sees in the author's expressions.
 */
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { parseRule } from '../src/rules/loader.js';
import { checkRules } from '../src/rules/index.js';
import { DuckState } from '../src/state/duckdb.js';
import { runInMemory } from '../src/compose.js';
import { loadConfig } from '../src/config.js';
import { rowsOf } from '../src/types.js';
import { entries, oracleOrder, recompute, type OracleOrder } from './oracle.js';

const rule = (burst: string, body: string, extra = '') => `-- name: card_testing
-- target: card_testing
-- burst: ${burst}
-- param min_methods = 3
-- param window = 10m
${extra}--
${body}`;
const GOOD_BURST = 'user_id when count(DISTINCT payment_method) >= $min_methods within $window';
const GOOD_BODY = `SELECT
  count(*)                        AS order_count,
  count(DISTINCT payment_method)  AS method_count
FROM burst
`;

const problems = (text: string) => parseRule('q/card_testing.sql', text).diagnostics.map((d) => `${d.line}: ${d.message}`);

t.test('the burst header derives the key, replace, grows, finality, state and partition key', async (t) => {
  const { rule: r, diagnostics } = parseRule('q/card_testing.sql', rule(GOOD_BURST, GOOD_BODY));
  t.same(diagnostics, []);
  t.same(r!.key, ['source_partition', 'user_id', 'window_start']);
  t.same(r!.replace, ['source_partition', 'user_id']);
  t.same(r!.grows, ['order_count', 'method_count']);
  t.equal(r!.finalAfter, "window_end + INTERVAL '600000000 microseconds'");
  t.equal(r!.stateMicros, 600_000_000, 'one window of orders');
  t.equal(r!.partitionKey, 'user_id');
  t.ok(r!.readsOwnResults, 'it carries its open bursts in its own rows');
  t.same(r!.after, []);
  t.match(r!.sql, /result_card_testing/);
  t.match(r!.sql, /count\(DISTINCT payment_method\) OVER w >= 3/, 'the condition over each order window, with the parameter');
  // The author's aggregates stay on their lines, so DuckDB's line numbers are the file's.
  const lines = r!.sql.split('\n');
  t.match(lines[7]!, /count\(event_time\) AS agg_0/);
  t.match(lines[8]!, /list\(DISTINCT CAST\(payment_method AS VARCHAR\)\)/);
  t.equal(parseRule('q/x.sql', rule(GOOD_BURST, GOOD_BODY)).rule!.partitionKey, 'user_id');
});

t.test('mistakes in the header are reported at its line', async (t) => {
  t.match(problems(rule('user_id within $window', GOOD_BODY)), ['3: a burst reads "-- burst: <key column> when <condition> within <duration>"']);
  t.equal(
    problems(rule('user_id within $window', GOOD_BODY, '-- label: card_testing\n')).length,
    1,
    'a header that does not parse is the one problem, not its label too',
  );
  t.match(problems(rule('customer when count(*) >= 3 within $window', GOOD_BODY)), [/^3: burst: "customer" is not an order column a burst can be keyed by/]);
  t.match(problems(rule('user_id when count(*) >= $nope within $window', GOOD_BODY)), ['3: burst: unknown parameter $nope']);
  t.match(problems(rule('user_id when count(*) >= 3 within $nope', GOOD_BODY)), [/^3: burst: within "\$nope": unknown parameter/]);
  t.match(problems(rule('user_id when count(*) >= 3 within 0s', GOOD_BODY)), ['3: burst: the window must be longer than 0']);
  // A condition that a later order can make false cannot be carried.
  for (const cond of ['min(price) >= 3', 'count(*) < 3', 'count(*) = 3', 'price >= 3', 'sum(*) >= 3'])
    t.match(
      problems(rule(`user_id when ${cond} within $window`, GOOD_BODY)),
      [new RegExp(`^3: burst: "${cond.replace(/[()*]/g, '\\$&')}" is not a condition fraud-sql can carry`)],
      cond,
    );
  t.same(problems(rule('ip_address when count(*) >= 10 AND sum(price * quantity) >= 1000000 within 1m', GOOD_BODY)), [], 'terms joined by AND');
  t.match(problems(rule(GOOD_BURST, GOOD_BODY, '-- key: user_id\n-- state: 20m\n')), [
    /^6: "key" follows from "-- burst:"/,
    /^7: "state" follows from "-- burst:"/,
  ]);
});

t.test('mistakes in the SELECT are reported at their line', async (t) => {
  t.match(problems(rule(GOOD_BURST, 'SELECT count(*) AS n FROM orders\n')), [
    /^7: a burst rule's SQL reads "SELECT <aggregate> AS <name>, ... FROM burst \[WHERE <condition on the order>\]"/,
  ]);
  t.match(problems(rule(GOOD_BURST, 'SELECT\n  count(*) AS n,\n  payment_method AS m\nFROM burst\n')), [
    /^9: "payment_method AS m": each column of a burst is count/,
  ]);
  t.match(problems(rule(GOOD_BURST, 'SELECT\n  count(*),\n  sum(price) AS s\nFROM burst\n')), [/^8: "count\(\*\)": each column/]);
  t.match(problems(rule(GOOD_BURST, 'SELECT\n  sum(DISTINCT price) AS s\nFROM burst\n')), [/^8: sum\(DISTINCT \.\.\.\) is sum\(\.\.\.\) over distinct values/]);
  t.match(problems(rule(GOOD_BURST, 'SELECT\n  count(*) AS window_end\nFROM burst\n')), [/^8: "window_end" is written by fraud-sql/]);
  t.match(problems(rule(GOOD_BURST, 'SELECT\n  max(*) AS m\nFROM burst\n')), [/^8: max\(\*\) is not an aggregate/]);
});

t.test('DuckDB errors in the author text point at its line', async (t) => {
  const dir = t.testdir();
  const state = await DuckState.open(':memory:');
  t.teardown(() => state.close());
  const check = async (text: string) => {
    writeFileSync(`${dir}/card_testing.sql`, text);
    return (await checkRules(state, dir)).problems.map((d) => `${d.file.slice(dir.length + 1)}:${d.line}:${d.column}: ${d.message.split('\n')[0]}`);
  };
  t.same(await check(rule(GOOD_BURST, GOOD_BODY)), [], 'the rule checks out against the card_testing table');
  t.match(await check(rule(GOOD_BURST, 'SELECT\n  count(*) AS order_count,\n  count(DISTINCT payment_methd) AS method_count\nFROM burst\n')), [
    /^card_testing\.sql:9:18: .*payment_methd/,
  ]);
  t.match(await check(rule('user_id when count(DISTINCT paymnt) >= 3 within $window', GOOD_BODY)), [/^card_testing\.sql:3:39: .*paymnt/]);
  t.match(
    await check(rule(GOOD_BURST, GOOD_BODY.replace(/FROM burst\n?$/, 'FROM burst\nWHERE\n  user_id NOT IN (SELECT user_id FROM allow_userz)\n'))),
    [/^card_testing\.sql:12:39: .*allow_userz/],
    'a mistake in the WHERE, at its line',
  );
  t.same(
    await check(rule(GOOD_BURST, GOOD_BODY.replace(/FROM burst\n?$/, "FROM burst WHERE payment_method <> 'gift_card'\n"))),
    [],
    'a WHERE on the order columns checks out',
  );
  t.same(
    await check(rule(GOOD_BURST, 'SELECT\n  count(*) AS order_count,\n  count(DISTINCT payment_method) AS methods\nFROM burst\n')),
    [],
    'a column renamed: the table follows the rule, and the rows an earlier version carried are rebuilt',
  );
});

t.test('random short windows, heavy disorder and tiny batches: bursts carried, merged and bridged equal the recomputation', async (t) => {
  // A few IPs, orders 0-3 s apart and up to 4 s out of order (inside the 5 s
  // lateness), windows of 10 s and 3 orders: bursts start, grow backwards, merge and
  // are bridged by late orders far more often than in real traffic.
  let seed = 7;
  const rnd = () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32;
  const orders: OracleOrder[] = [];
  const values: { partition: number; value: Buffer }[] = [];
  const start = Date.parse('2025-12-30T12:00:00Z');
  let clock = start;
  for (let i = 0; i < 2000; i++) {
    clock += Math.floor(rnd() * 1500);
    const ms = clock - Math.floor(rnd() * 4000);
    const ip = `10.0.0.${1 + Math.floor(rnd() * 4)}`;
    const json = {
      order_id: `R${i}`,
      timestamp: new Date(ms).toISOString(),
      user_id: `USER${1000 + Math.floor(rnd() * 8)}`,
      product_id: 'P008',
      product_name: '마우스',
      price: 1000 + Math.floor(rnd() * 9000),
      quantity: 1,
      ip_address: ip,
      payment_method: 'card',
    };
    values.push({ partition: 0, value: Buffer.from(JSON.stringify(json)) });
    orders.push(oracleOrder(json));
  }
  function* batches() {
    for (let i = 0; i < values.length;) {
      const n = 1 + Math.floor(rnd() * 12);
      yield values.slice(i, i + n);
      i += n;
    }
  }
  const config = loadConfig({ params: ['suspicious_ips.min_orders=3', 'suspicious_ips.window=10s', 'realtime_stats.burst_window=10s'] }, {});
  const { state } = await runInMemory(config, new URL('../queries', import.meta.url).pathname, batches());
  t.teardown(() => state.close());
  const expected = recompute(orders, { window: 30_000, burstWindow: 10_000, minOrders: 3, threshold: 500_000 });
  const iso = (v: unknown) => new Date(String(v)).toISOString();
  const actual = new Map(
    rowsOf(await state.query('SELECT ip_address, window_start, window_end, order_count, total_spent FROM suspicious_ips')).map((r) => [
      `${r.ip_address}|${iso(r.window_start)}`,
      { window_end: iso(r.window_end), order_count: Number(r.order_count), total_spent: Number(r.total_spent) },
    ]),
  );
  const longest = Math.max(...[...expected.suspicious.values()].map((b) => b.order_count));
  t.ok(expected.suspicious.size > 20 && longest > 30, `${expected.suspicious.size} bursts, the longest of ${longest} orders`);
  t.same(entries(actual), entries(expected.suspicious), 'suspicious_ips equals the recomputation');
});
