/** `fraud-sql backtest`: recorded generator output through the rules, in memory. */
import t from 'tap';
import { execFile } from 'node:child_process';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';

const exec = promisify(execFile);
const CLI = new URL('../dist/cli.js', import.meta.url).pathname;
const QUERIES = new URL('../queries', import.meta.url).pathname;

t.test('100 % recall on bot bursts and high-value orders at default parameters; --compare shows what a change adds and removes', async (t) => {
  const dir = t.testdir();
  await exec('node', [CLI, 'generate', '--seed', '5', '--count', '20000', '--fast', '--start', '2025-12-30T12:00:00Z',
    '--mix', 'normal=84,bot=10,burst=2,near_miss=2,high_value=1,late=1', '--output', `${dir}/orders.jsonl`]);
  const { stdout } = await exec('node', [CLI, 'backtest', '--input', `${dir}/orders.jsonl`]);
  t.match(stdout, /20,000 orders from/);
  t.match(stdout, /suspicious_ips\s+\d+ rows in suspicious_ips/);
  t.match(stdout, /late_events\s+[1-9]\d*/, 'late orders are recorded, not applied');
  t.match(stdout, /bot bursts\s+recall 100\.0% \([1-9]\d* expected\)\s+precision 100\.0%/);
  t.match(stdout, /high-value orders\s+recall 100\.0% \([1-9]\d* expected\)\s+precision 100\.0%/);

  // A stricter rule (12 orders instead of 10) against the same recording.
  cpSync(QUERIES, `${dir}/strict`, { recursive: true });
  const f = `${dir}/strict/suspicious_ips.sql`;
  writeFileSync(f, readFileSync(f, 'utf8').replace('-- param min_orders = 10', '-- param min_orders = 13'));
  const cmp = await exec('node', [CLI, 'backtest', '--input', `${dir}/orders.jsonl`, '--compare', `${dir}/strict`]);
  const line = /suspicious_ips: (\d+) rows only with .*strict, (\d+) rows only with .*queries, (\d+) rows with other values/.exec(cmp.stdout);
  t.ok(line, 'a comparison line for suspicious_ips');
  t.equal(Number(line![1]), 0, 'a stricter rule adds no burst');
  t.ok(Number(line![2]) > 0, `it drops ${line![2]} bursts of 10-12 orders`);
  t.match(cmp.stdout, /high_value_orders: 0 rows only with .*, 0 rows only with .*, 0 rows with other values/, 'other rules are unaffected');
});

t.test('a missing input file is one clear error', async (t) => {
  try {
    await exec('node', [CLI, 'backtest', '--input', '/nonexistent/orders.jsonl']);
    t.fail('should fail');
  } catch (err) {
    const e = err as { code: number; stderr: string };
    t.equal(e.code, 1);
    t.match(e.stderr, /^fraud-sql: cannot read \/nonexistent\/orders.jsonl: ENOENT/);
    t.notMatch(e.stderr, /\n\s+at /, 'no stack trace');
  }
});
