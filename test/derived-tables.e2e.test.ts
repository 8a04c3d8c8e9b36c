/**
 * A rule added as a SQL file alone, as a user meets it: the built CLI checks it,
 * runs its fixture and backtests it into CSV; `fraud-sql run` (real broker and
 * PostgreSQL) gives it its table on start, and its rows equal a plain
 * recomputation of the orders produced.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { scenario } from './helpers.js';

const CLI = new URL('../dist/cli.js', import.meta.url).pathname;
const cli = promisify(execFile);

const WINDOW_MS = 10 * 60_000;
const MIN_METHODS = 3;

t.test('run writes a rule that only its SQL file defines', async (t) => {
  const dir = t.testdir();
  cpSync(new URL('../queries', import.meta.url).pathname, dir, { recursive: true });
  cpSync(new URL('./rules/user_methods', import.meta.url).pathname, dir, { recursive: true });
  const s = await scenario(t, {
    partitions: 1,
    orders: 3_000,
    seed: 33,
    rate: 20,
    startMs: Date.UTC(2025, 11, 30, 12, 0, 0),
    mix: { normal: 90, card_testing: 10 },
  });

  const check = await cli('node', [CLI, 'rules', 'check', '--queries-dir', dir]);
  t.match(check.stdout, /^ok {3}user_methods -> user_methods \(.*, partitioned by user_id\)$/m, 'rules check accepts it');
  const fixtures = await cli('node', [CLI, 'rules', 'test', 'user_methods', '--queries-dir', dir]);
  t.match(fixtures.stdout, /^ok {3}user_methods: three-methods .*\n1 passed, 0 failed$/m, 'rules test runs its fixture');
  const input = `${dir}/orders.jsonl`;
  writeFileSync(input, s.messages.map((m) => m.value.toString()).join('\n') + '\n');
  await cli('node', [CLI, 'backtest', '--queries-dir', dir, '--input', input, '--output', `${dir}/out`]);
  // RFC 4180: lines end in CRLF.
  const csv = readFileSync(`${dir}/out/user_methods.csv`, 'utf8').split('\r\n');
  t.equal(csv[0], 'source_partition,user_id,window_start,window_end,order_count,method_count', 'backtest --output writes its rows under its columns');

  await s.produce();
  const app = await s.startApp({ queriesDir: dir });
  await s.drained(app);

  // The recomputation: per user and 10-minute window (aligned to the epoch), the
  // orders and distinct payment methods, kept from 3 methods on.
  const windows = new Map<string, { orders: number; methods: Set<string> }>();
  const seen = new Set<string>();
  for (const m of s.messages) {
    const o = JSON.parse(m.value.toString()) as { order_id: string; timestamp: string; user_id: string; payment_method?: string };
    if (seen.has(o.order_id)) continue;
    seen.add(o.order_id);
    const ms = Date.parse(o.timestamp);
    const key = `${o.user_id} ${new Date(ms - (ms % WINDOW_MS)).toISOString()}`;
    const w = windows.get(key) ?? { orders: 0, methods: new Set<string>() };
    windows.set(key, w);
    w.orders++;
    if (o.payment_method !== undefined) w.methods.add(o.payment_method);
  }
  const expected = [...windows]
    .filter(([, w]) => w.methods.size >= MIN_METHODS)
    .map(([k, w]) => `${k} ${w.orders} ${w.methods.size}`)
    .sort();
  t.ok(expected.length > 0, `${expected.length} card-testing windows in the input`);

  const rows = (await s.pool.query(`SELECT user_id, window_start, order_count, method_count FROM user_methods`)).rows.map(
    (r) => `${r.user_id} ${(r.window_start as Date).toISOString()} ${r.order_count} ${r.method_count}`,
  );
  t.same(rows.sort(), expected, 'user_methods equals the recomputation');
  t.equal(csv.filter((l) => l !== '').length - 1, expected.length, 'as many rows from backtest as from run');
});
