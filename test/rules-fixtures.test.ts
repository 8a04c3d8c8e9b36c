/** Rules as code, offline: the built-in rules' fixtures, and `rules check` / `rules test` errors. */
import t from 'tap';
import { execFile } from 'node:child_process';
import { cpSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { promisify } from 'node:util';
import { compareRows, ORDER_DEFAULTS, runFixtures } from '../src/commands/fixtures.js';
import { loadConfig } from '../src/config.js';

const exec = promisify(execFile);
const CLI = new URL('../dist/cli.js', import.meta.url).pathname;
const QUERIES = new URL('../queries', import.meta.url).pathname;
const cli = async (...args: string[]) => {
  try {
    const r = await exec('node', [CLI, ...args]);
    return { code: 0, out: r.stdout + r.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, out: e.stdout + e.stderr };
  }
};

t.test('the built-in rules pass their fixtures', async (t) => {
  const outcomes = await runFixtures(loadConfig({ queriesDir: QUERIES }, {}));
  t.ok(outcomes.length >= 7, `${outcomes.length} fixtures`);
  for (const rule of ['high_value_orders', 'popular_products', 'suspicious_ips', 'realtime_stats'])
    t.ok(
      outcomes.some((o) => o.rule === rule),
      `${rule} has fixtures`,
    );
  for (const o of outcomes) t.ok(o.ok, `${o.rule}/${o.file.split('/').pop()}: ${o.description}${o.problem ? '\n' + o.problem : ''}`);
});

t.test('a fixture that does not match fails with the difference', async (t) => {
  const dir = t.testdir();
  cpSync(QUERIES, dir, { recursive: true });
  const f = `${dir}/fixtures/suspicious_ips/burst-across-a-minute-boundary.json`;
  const fx = JSON.parse(readFileSync(f, 'utf8'));
  fx.expect[0].order_count = 11;
  writeFileSync(f, JSON.stringify(fx));
  const r = await cli('rules', 'test', '--queries-dir', dir, 'suspicious_ips');
  t.equal(r.code, 1);
  t.match(r.out, /FAIL suspicious_ips: burst-across-a-minute-boundary/);
  t.match(
    r.out,
    /\n\s+row ip_address="10\.0\.0\.9" window_start=2025-12-30T12:00:55\.000000Z: order_count expected 11, written 10\n/,
    'the differing column, in the row named by its key',
  );
  t.notMatch(r.out, /not written|not expected/, 'the row is there, only a column differs');
  t.match(r.out, /3 passed, 1 failed/);
});

t.test('a row missing or extra as a whole is named as a whole', async (t) => {
  const row = (ip: string, n: number) => ({ ip_address: ip, order_count: n });
  t.same(compareRows([row('a', 1), row('b', 2)], [row('a', 1), row('c', 2)], ['ip_address', 'order_count'], ['source_partition', 'ip_address']), [
    '  expected, not written: ip_address="b" order_count=2',
    '  written, not expected: ip_address="c" order_count=2',
  ]);
  t.same(
    compareRows([row('a', 1), row('a', 2)], [row('a', 1), row('a', 3)], ['ip_address', 'order_count'], ['ip_address']),
    ['  row ip_address="a": order_count expected 2, written 3'],
    'the one row of a key that differs',
  );
  t.same(
    compareRows([{ order_count: 2 }], [{ order_count: 3 }], ['order_count'], ['ip_address']),
    ['  expected, not written: order_count=2', '  written, not expected: order_count=3'],
    'no key named: whole rows',
  );
});

const burst = (ips: string[]) => ips.map((ip, i) => ({ timestamp: `2025-12-30T12:00:${String(i * 5).padStart(2, '0')}Z`, ip_address: ip }));

t.test('an order in a fixture may leave out what its rule does not read', async (t) => {
  const dir = t.testdir();
  cpSync(QUERIES, dir, { recursive: true });
  writeFileSync(
    `${dir}/fixtures/suspicious_ips/defaults.json`,
    JSON.stringify({
      description: 'ten orders with a timestamp and an IP only',
      batches: [burst(Array(10).fill('10.0.0.1'))],
      // 10 x the default price x quantity
      expect: [{ ip_address: '10.0.0.1', order_count: 10, total_spent: 10 * ORDER_DEFAULTS.price * ORDER_DEFAULTS.quantity }],
    }),
  );
  const [o] = (await runFixtures(loadConfig({ queriesDir: dir }, {}), 'suspicious_ips')).filter((x) => x.file.endsWith('defaults.json'));
  t.ok(o!.ok, o!.problem ?? 'passes');
});

t.test('an order the engine rejects fails the fixture with its reason', async (t) => {
  const dir = t.testdir();
  cpSync(QUERIES, dir, { recursive: true });
  const batches = [burst(Array(10).fill('10.0.0.1'))];
  batches[0]![3] = { ...batches[0]![3]!, price: -1 } as never;
  delete (batches[0]![6] as Record<string, unknown>).timestamp;
  writeFileSync(`${dir}/fixtures/suspicious_ips/rejected.json`, JSON.stringify({ description: 'two bad orders', batches, expect: [] }));
  const [o] = (await runFixtures(loadConfig({ queriesDir: dir }, {}), 'suspicious_ips')).filter((x) => x.file.endsWith('rejected.json'));
  t.notOk(o!.ok, 'though the rule wrote what was expected (no burst of 8)');
  t.equal(
    o!.problem,
    [
      '  batch 1, order 4 (order_id "F1-4") rejected: field "price" must be >= 0, got -1',
      '  batch 1, order 7 (order_id "F1-7") rejected: missing field "timestamp"',
    ].join('\n'),
  );
});

t.test('rules check: clear errors for a missing directory, an empty rule, a rule with no header', async (t) => {
  const missing = await cli('rules', 'check', '--queries-dir', '/nonexistent/queries');
  t.equal(missing.code, 1);
  t.match(missing.out, /FAIL \/nonexistent\/queries:0:0: cannot read the rules directory/);
  const dir = t.testdir({ 'empty.sql': '', 'no_header.sql': 'SELECT 1\n' });
  const r = await cli('rules', 'check', '--queries-dir', dir);
  t.equal(r.code, 1);
  t.match(r.out, new RegExp(`FAIL ${dir}/empty.sql:1:1: the rule file is empty`));
  t.match(r.out, new RegExp(`FAIL ${dir}/no_header.sql:1:1: no header`));
  const good = await cli('rules', 'check');
  t.equal(good.code, 0, 'the built-in rules check out');
  t.match(good.out, /ok {3}suspicious_ips -> suspicious_ips .*\n {5}Macro\/bot buying: an IP with at least min_orders orders/, 'with its description');
  t.match(good.out, /ok {3}high_value_orders -> high_value_orders \(.*, per order\)/, 'a rule of the per-order lane says so');
  const unknown = await cli('rules', 'test', 'no_such_rule');
  t.equal(unknown.code, 1);
  t.match(unknown.out, /no fixtures for a rule named "no_such_rule" under /);
});

t.test('rules check reports a SQL error at its file, line and column', async (t) => {
  const dir = t.testdir();
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    `${dir}/broken.sql`,
    '-- target: high_value_orders\n-- key: order_id\n-- state: 0s\nSELECT order_id,\n       no_such_column\nFROM batch_orders\n',
  );
  const r = await cli('rules', 'check', '--queries-dir', dir);
  t.equal(r.code, 1);
  t.match(r.out, new RegExp(`FAIL ${dir}/broken.sql:5:8: .*no_such_column`));
});

t.test('rules test runs with the configured lateness, as run does', async (t) => {
  const fixture = 'late-and-out-of-order';
  const allowed = await cli('rules', 'test', 'popular_products');
  t.equal(allowed.code, 0, 'with the default 5 s lateness the out-of-order order counts');
  const strict = await cli('rules', 'test', 'popular_products', '--lateness-ms', '0');
  t.equal(strict.code, 1, 'with no lateness it is late, and the fixture no longer holds');
  t.match(strict.out, new RegExp(`FAIL popular_products: ${fixture}`));
  t.match(strict.out, /order_count expected 2, written 1/);
});
