/**
 * Allow and block lists under a running `fraud-sql run` (real broker and
 * PostgreSQL): an allow-listed IP is never reported by suspicious_ips, a block-listed
 * one is reported by blocked_activity from its first order, an edited list applies
 * at the next batch, and a broken one keeps the previous version, named at its line.
 */
import t from 'tap';
import { cpSync, writeFileSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { CLI, PG_URL, scenario, type TestMessage } from './helpers.js';
import { ORDER_DEFAULTS } from '../src/commands/fixtures.js';

let seq = 0;
const order = (ip: string, atMs: number): TestMessage => ({
  key: ip,
  value: JSON.stringify({ ...ORDER_DEFAULTS, order_id: `L${++seq}`, timestamp: new Date(atMs).toISOString(), ip_address: ip, user_id: `U-${ip}` }),
});

t.test('lists: allow, block, edit at the next batch, a broken edit keeps the previous version', async (t) => {
  const dir = t.testdir();
  cpSync(new URL('../queries', import.meta.url).pathname, dir, { recursive: true });
  writeFileSync(`${dir}/lists/allow_ips.csv`, 'ip_address,reason\n10.9.9.9,office NAT\n');
  const s = await scenario(t, { partitions: 2 });
  const app = await s.startApp({ queriesDir: dir });
  const reloaded = () =>
    new Promise<{ ok: boolean; problems: { file: string; line: number; message: string }[] }>((r) => app.engine.events.once('rules:reloaded', r));
  const start = Date.now() - 60_000;

  // Twelve orders in 24 s from each of two IPs: a bot burst, but one IP is allow-listed.
  await s.produce(Array.from({ length: 12 }, (_, i) => [order('10.9.9.9', start + i * 2_000), order('10.8.8.8', start + i * 2_000 + 500)]).flat());
  await s.drained(app);
  const suspicious = (await s.pool.query('SELECT ip_address, order_count::int AS n FROM suspicious_ips ORDER BY ip_address')).rows;
  t.same(suspicious, [{ ip_address: '10.8.8.8', n: 12 }], 'the allow-listed IP is not reported, the other is');
  t.same((await s.pool.query('SELECT * FROM blocked_activity')).rows, [], 'nothing is blocked yet');

  // Block an IP while running: its next order is reported.
  const edit = reloaded();
  writeFileSync(`${dir}/lists/block_ips.csv`, 'ip_address,reason\n10.7.7.7,chargebacks\n');
  t.equal((await edit).ok, true, 'the list edit is applied');
  await s.produce([order('10.7.7.7', start + 30_000), order('10.6.6.6', start + 30_500), order('10.7.7.7', start + 31_000)]);
  await s.drained(app);
  const blocked = async () => (await s.pool.query('SELECT order_id, ip_address, blocked_by FROM blocked_activity ORDER BY order_id')).rows;
  t.same(
    await blocked(),
    [
      { order_id: `L${seq - 2}`, ip_address: '10.7.7.7', blocked_by: 'ip_address' },
      { order_id: `L${seq}`, ip_address: '10.7.7.7', blocked_by: 'ip_address' },
    ],
    'both orders of the blocked IP, from its first, and nothing else',
  );

  // A broken edit: the previous list keeps running, and the problem is named at its line.
  const broken = reloaded();
  writeFileSync(`${dir}/lists/block_ips.csv`, 'ip_address,reason\n10.7.7.7,chargebacks\n10.5.5.5\n');
  const r = await broken;
  t.equal(r.ok, false, 'the broken list is rejected');
  t.match(r.problems[0], { file: `${dir}/lists/block_ips.csv`, line: 3, message: /1 values where the header names 2 columns/ });
  await s.produce([order('10.7.7.7', start + 40_000), order('10.5.5.5', start + 40_500)]);
  await s.drained(app);
  const after = await blocked();
  t.equal(after.length, 3, 'the blocked IP is still reported under the previous list');
  t.notOk(
    after.some((b) => b.ip_address === '10.5.5.5'),
    'the IP only the broken version names is not',
  );
});

t.test('lists add and remove while running: applied at the next batch; bad input refused', async (t) => {
  const dir = t.testdir();
  cpSync(new URL('../queries', import.meta.url).pathname, dir, { recursive: true });
  const s = await scenario(t, { partitions: 2 });
  const app = await s.startApp({ queriesDir: dir });
  const reloaded = () => new Promise<{ ok: boolean }>((r) => app.engine.events.once('rules:reloaded', r));
  const lists = (...args: string[]) =>
    promisify(execFile)('node', [CLI, 'lists', ...args], {
      env: { ...process.env, FRAUD_SQL_DATABASE_URL: PG_URL, FRAUD_SQL_PG_SCHEMA: s.schema, FRAUD_SQL_QUERIES: dir },
    });
  const start = Date.now() - 60_000;
  const blocked = async () => (await s.pool.query('SELECT order_id, ip_address FROM blocked_activity ORDER BY order_id')).rows;

  let edit = reloaded();
  const added = await lists('add', 'block_ips', '10.4.4.4', '--reason', 'card fraud ring');
  t.match(added.stdout, /^added: block_ips 10\.4\.4\.4/);
  t.equal((await edit).ok, true, 'the running process applied the entry');
  await s.produce([order('10.4.4.4', start), order('10.3.3.3', start + 500)]);
  await s.drained(app);
  t.same(await blocked(), [{ order_id: `L${seq - 1}`, ip_address: '10.4.4.4' }], 'the address added at run time is blocked from its next order');
  t.match((await lists('show', 'block_ips')).stdout, /10\.4\.4\.4 {2}card fraud ring {2}\[lists add\]/);

  edit = reloaded();
  t.match((await lists('remove', 'block_ips', '10.4.4.4')).stdout, /^removed: block_ips 10\.4\.4\.4/);
  t.equal((await edit).ok, true, 'the removal is applied');
  await s.produce([order('10.4.4.4', start + 1_000)]);
  await s.drained(app);
  t.equal((await blocked()).length, 1, 'its next order is no longer blocked');

  // Refused with one line that says what is wrong; nothing written.
  const refusal = (run: Promise<unknown>) =>
    run.then(
      () => 'exited 0',
      (err: { stderr: string }) => err.stderr,
    );
  t.match(await refusal(lists('add', 'block_ipz', '10.4.4.4')), /no list "block_ipz" in .*lists \(lists: allow_ips, block_ips, block_users\)/);
  t.match(await refusal(lists('add', 'block_ips', '10.4.4.400')), /block_ips: "10\.4\.4\.400" is not an IPv4 or IPv6 address/);
  t.match(await refusal(lists('remove', 'block_ips', '10.4.4.4')), /was not added with lists add/);
  t.same((await s.pool.query('SELECT * FROM list_entries')).rows, [], 'no entry left behind');
});

t.test('lists show only reads: a mistyped schema is an error, not a new empty schema', async (t) => {
  const schema = `nosuch_${Date.now().toString(36)}`;
  const err = await promisify(execFile)('node', [CLI, 'lists', 'show'], {
    env: { ...process.env, FRAUD_SQL_DATABASE_URL: PG_URL, FRAUD_SQL_PG_SCHEMA: schema },
  }).then(
    () => null,
    (e: { code: number; stderr: string }) => e,
  );
  t.equal(err?.code, 1, 'exits 1');
  t.match(err?.stderr, `schema "${schema}" of ${PG_URL} has no list_entries: check --pg-schema, or run fraud-sql migrate`);
  const pg = (await import('pg')).default;
  const pool = new pg.Pool({ connectionString: PG_URL });
  t.teardown(() => pool.end());
  const r = await pool.query('SELECT count(*)::int AS n FROM information_schema.schemata WHERE schema_name = $1', [schema]);
  t.equal(r.rows[0].n, 0, 'and creates nothing');
});
