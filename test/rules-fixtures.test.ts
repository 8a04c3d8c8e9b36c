/** Rules as code, offline: the built-in rules' fixtures, and `rules check` / `rules test` errors. */
import t from 'tap';
import { execFile } from 'node:child_process';
import { cpSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { promisify } from 'node:util';
import { runFixtures } from '../src/commands/fixtures.js';
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
  for (const rule of ['high_value_orders', 'popular_products', 'suspicious_ips', 'realtime_stats']) t.ok(outcomes.some((o) => o.rule === rule), `${rule} has fixtures`);
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
  t.match(r.out, /expected, not written: .*order_count=11/);
  t.match(r.out, /written, not expected: .*order_count=10/);
  t.match(r.out, /2 passed, 1 failed/);
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
  t.match(good.out, /ok {3}suspicious_ips -> suspicious_ips/);
});

t.test('rules check reports a SQL error at its file, line and column', async (t) => {
  const dir = t.testdir();
  mkdirSync(dir, { recursive: true });
  writeFileSync(`${dir}/broken.sql`, '-- target: high_value_orders\n-- key: order_id\n-- state: 0s\nSELECT order_id,\n       no_such_column\nFROM batch_orders\n');
  const r = await cli('rules', 'check', '--queries-dir', dir);
  t.equal(r.code, 1);
  t.match(r.out, new RegExp(`FAIL ${dir}/broken.sql:5:8: .*no_such_column`));
});
