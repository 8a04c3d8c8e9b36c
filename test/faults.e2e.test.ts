/**
 * Never lose an order: the real `fraud-sql run` process against the real broker
 * and PostgreSQL, a deterministic input, a fault, then every output table compared
 * exactly with an independent recomputation of the input.
 */
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { Kafka, logLevel } from 'kafkajs';
import { KILL_POINTS } from '../src/engine/ports.js';
import { BROKERS, readDirectly, scenario, type RunProcess, type Scenario } from './helpers.js';

const BATCH = { FRAUD_SQL_BATCH_MAX_SIZE: '2000' };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Offsets committed in PostgreSQL, of `topic` or of every topic read (the repartition topics too). */
async function committedRows(s: Scenario, topic?: string): Promise<bigint> {
  const r = await s.pool
    .query('SELECT coalesce(sum(next_offset), 0)::text AS n FROM consumer_progress WHERE $1::text IS NULL OR topic = $1', [topic ?? null])
    .catch(() => ({ rows: [{ n: '0' }] }));
  return BigInt(r.rows[0].n);
}

async function until(what: string, check: () => Promise<boolean>, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

t.test('kill -9 at every point of the batch cycle, then a restart: nothing lost, nothing twice', async (t) => {
  for (const point of KILL_POINTS) {
    await t.test(point, async (t) => {
      const started = Date.now();
      const s = await scenario(t, { partitions: 4, orders: 20_000, seed: 11 });
      await s.produce();
      const crashing = s.startCli({ ...BATCH, FRAUD_SQL_FAILPOINT: `${point}:3` });
      const exit = await crashing.exited;
      t.equal(exit.signal, 'SIGKILL', `killed at ${point}`);
      const restarted = s.startCli(BATCH);
      await s.drainedInPg();
      await s.expectExact();
      restarted.child.kill('SIGTERM');
      t.comment(`${point}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
    });
  }
});

t.test('a crash loop: three kills at different progress points, then a clean run', async (t) => {
  const s = await scenario(t, { partitions: 4, orders: 30_000, seed: 12 });
  await s.produce();
  for (const fp of ['after-ingest:2', 'before-commit:4', 'after-commit:3']) {
    const r = s.startCli({ ...BATCH, FRAUD_SQL_FAILPOINT: fp });
    t.equal((await r.exited).signal, 'SIGKILL', `killed at ${fp}`);
  }
  t.ok((await committedRows(s)) > 0n, 'the crashed runs committed some progress');
  const clean = s.startCli(BATCH);
  await s.drainedInPg();
  await s.expectExact();
  clean.child.kill('SIGTERM');
});

t.test('a restart in the middle of open windows rebuilds state and never writes a smaller count', async (t) => {
  // Event times run up to now: the last windows and bursts are open at the kill.
  const s = await scenario(t, { partitions: 4, orders: 20_000, seed: 13 });
  const { pool } = s;
  const half = s.messages.length / 2;
  await s.produce(s.messages.slice(0, half));
  const first = s.startCli(BATCH);
  await s.drainedInPg();
  const before = new Map(
    (await pool.query('SELECT source_partition, stat_time, total_orders::int, suspicious_ip_count FROM realtime_stats_partial')).rows.map((r) => [
      `${r.source_partition}|${r.stat_time.toISOString()}`,
      r,
    ]),
  );
  const burstsBefore = new Map(
    (await pool.query('SELECT ip_address, window_start, order_count::int FROM suspicious_ips')).rows.map((r) => [
      `${r.ip_address}|${r.window_start.toISOString()}`,
      r.order_count,
    ]),
  );
  first.child.kill('SIGKILL');
  await first.exited;
  await s.produce(s.messages.slice(half));
  const second = s.startCli(BATCH);
  await s.drainedInPg();
  await s.expectExact();
  const after = new Map(
    (await pool.query('SELECT source_partition, stat_time, total_orders::int, suspicious_ip_count FROM realtime_stats_partial')).rows.map((r) => [
      `${r.source_partition}|${r.stat_time.toISOString()}`,
      r,
    ]),
  );
  const shrunk = [...before].filter(
    ([k, b]) => !after.has(k) || after.get(k).total_orders < b.total_orders || after.get(k).suspicious_ip_count < b.suspicious_ip_count,
  );
  t.same(shrunk, [], 'no window lost orders or suspicious IPs across the restart');
  const bursts = (await pool.query('SELECT ip_address, window_start, order_count::int FROM suspicious_ips')).rows;
  const smaller = [...burstsBefore].filter(([k, n]) => {
    const [ip, ws] = k.split('|');
    // A burst may have merged into an earlier one; it must not have shrunk.
    return !bursts.some((b) => b.ip_address === ip && b.window_start.toISOString() <= ws! && b.order_count >= n);
  });
  t.same(smaller, [], 'no burst shrank across the restart');
  t.match(second.output(), /assigned partitions 0,1,2,3/, 'the restart resumed its partitions');
  second.child.kill('SIGTERM');
});

t.test('SIGTERM mid-stream: a clean exit within seconds, the group left, an exact resume', async (t) => {
  const s = await scenario(t, { partitions: 4, orders: 60_000, seed: 14, rate: 200 });
  await s.produce();
  const r = s.startCli({ FRAUD_SQL_BATCH_MAX_SIZE: '1000' });
  await until('first commits', async () => (await committedRows(s)) > 0n);
  const termAt = Date.now();
  r.child.kill('SIGTERM');
  const exit = await r.exited;
  const took = Date.now() - termAt;
  t.equal(exit.code, 0, 'exit code 0');
  t.ok(took < 10_000, `exited ${took} ms after SIGTERM`);
  t.match(r.output(), /SIGTERM: stopping[\s\S]*\n\S+ INFO {2}stopped\n$/, 'the last log line says it stopped');
  const admin = new Kafka({ clientId: 'fraud-sql-test', brokers: BROKERS, logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  const group = (await admin.describeGroups([s.group])).groups[0]!;
  await admin.disconnect();
  t.equal(group.members.length, 0, `the consumer group was left (state ${group.state})`);
  const resumed = s.startCli();
  await s.drainedInPg();
  await s.expectExact();
  resumed.child.kill('SIGTERM');
});

t.test('the same order delivered twice is counted once', async (t) => {
  const s = await scenario(t, { partitions: 4, orders: 10_000, seed: 15 });
  // Redeliver every 50th order right after itself (a producer retry): same key, same bytes.
  await s.produce(s.messages.flatMap((m, i) => (i % 50 === 0 ? [m, m] : [m])));
  const r = s.startCli();
  await s.drainedInPg();
  await s.expectExact();
  const metricsUrl = /metrics and health on (\S+)/.exec(r.output())![1]!;
  const metrics = await (await fetch(`${metricsUrl}/metrics`)).text();
  t.match(metrics, /^fraud_sql_duplicate_orders_total 200$/m, '200 duplicates counted and dropped');
  r.child.kill('SIGTERM');
});

t.test('poison messages: each dead-lettered once; a failing dead-letter write holds the offsets', async (t) => {
  const s = await scenario(t, { partitions: 1, orders: 3_000, seed: 16, mix: { normal: 90, bot: 5, malformed: 5 } });
  const { pool, topic } = s;
  const poisonOffsets = s.messages.flatMap((m, i) => (m.key === 'malformed' ? [i] : []));
  await s.produce();
  t.ok(poisonOffsets.length > 50, `${poisonOffsets.length} poison messages`);

  // A dead-letter topic the broker refuses: the batch must not commit past the poison.
  // Read directly, so the offsets held are the input's.
  const direct = readDirectly(t).cli;
  const failing = s.startCli({ ...direct, FRAUD_SQL_DLQ_TOPIC: 'invalid topic name!' });
  const exit = await failing.exited;
  t.not(exit.code, 0, 'the process stops when it cannot record a dead letter');
  t.match(failing.output(), /invalid topic name|INVALID_TOPIC|not a valid topic|Invalid topic/i);
  // The offsets of the engine that records dead letters (the per-order lane records none, and goes on).
  const committed = BigInt(
    (await pool.query('SELECT coalesce(sum(next_offset), 0)::text AS n FROM consumer_progress WHERE topic = $1 AND consumer_group = $2', [topic, s.group]))
      .rows[0].n,
  );
  t.ok(committed <= BigInt(poisonOffsets[0]!), `offsets held at ${committed}, not past the first poison message at ${poisonOffsets[0]}`);
  t.equal((await pool.query('SELECT count(*)::int AS n FROM dead_letters')).rows[0].n, 0);

  const ok = s.startCli(direct);
  await s.drainedInPg();
  const dl = (await pool.query('SELECT kafka_offset::int AS o FROM dead_letters ORDER BY 1')).rows.map((r) => r.o);
  t.same(dl, poisonOffsets, 'every poison message is in dead_letters exactly once, at its original offset');
  await s.expectExact({ tables: ['popular_products', 'suspicious_ips', 'high_value_orders', 'realtime_stats', 'shared_ip_accounts'] });
  // The dead-letter topic holds each of them once too.
  const kafka = new Kafka({ clientId: 'fraud-sql-test', brokers: BROKERS, logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const dlqEnd = (await admin.fetchTopicOffsets(`${topic}.dlq`)).reduce((a, o) => a + Number(o.high), 0);
  await admin.disconnect();
  t.equal(dlqEnd, poisonOffsets.length, `${topic}.dlq holds ${dlqEnd} messages`);
  ok.child.kill('SIGTERM');
});

const pgVersion = () => readdirSync('/etc/postgresql')[0]!;
const pgctl = (...args: string[]) => execFileSync('pg_ctlcluster', ['--skip-systemctl-redirect', pgVersion(), 'main', ...args], { stdio: 'ignore' });
const ensurePgUp = () => spawnSync('pg_ctlcluster', ['--skip-systemctl-redirect', pgVersion(), 'main', 'start'], { stdio: 'ignore' });

/** Produces the scenario's messages in `slices`, `gapMs` apart, calling `during[i]` after slice i. */
async function trickle(s: Scenario, slices: number, gapMs: number, during: Record<number, () => Promise<void> | void>) {
  const { messages } = s;
  const size = Math.ceil(messages.length / slices);
  for (let i = 0; i < slices; i++) {
    await s.produce(messages.slice(i * size, (i + 1) * size));
    await during[i]?.();
    await sleep(gapMs);
  }
}

t.test('PostgreSQL restarted (fast, then immediate) while orders flow', async (t) => {
  t.teardown(ensurePgUp);
  const s = await scenario(t, { partitions: 4, orders: 24_000, seed: 17 });
  const r = s.startCli(BATCH);
  await trickle(s, 12, 300, {
    3: () => {
      pgctl('restart', '-m', 'fast');
    },
    7: () => {
      pgctl('restart', '-m', 'immediate');
    },
  });
  await s.drainedInPg();
  await s.expectExact();
  t.equal(r.child.exitCode, null, 'the process rode out both restarts');
  r.child.kill('SIGTERM');
});

t.test('PostgreSQL down for a while: not ready, offsets hold, lag grows, then it catches up by itself', async (t) => {
  const downMs = Number(process.env.FAULT_PG_DOWN_MS ?? 60_000);
  t.teardown(ensurePgUp);
  const s = await scenario(t, { partitions: 2, orders: 10_000, seed: 18 });
  await s.produce(s.messages.slice(0, 5_000));
  const r = s.startCli();
  await s.drainedInPg();
  const url = /metrics and health on (\S+)/.exec(r.output())![1]!;
  // The topics the rules read through the hop (the per-order lane reads the input itself).
  const held = (await committedRows(s)) - (await committedRows(s, s.topic));
  pgctl('stop', '-m', 'fast');
  await s.produce(s.messages.slice(5_000));
  await until('readiness 503', async () => (await fetch(`${url}/readyz`)).status === 503, 15_000);
  await sleep(Math.max(0, downMs - 5_000));
  const status = await (await fetch(`${url}/status`)).json();
  const lag = status.partitions.reduce((a: number, x: { lag: number }) => a + x.lag, 0);
  t.ok(lag >= 5_000, `lag grew to ${lag} while PostgreSQL was down`);
  // The offsets committed in PostgreSQL, of the topics the rules read (the hop goes
  // on forwarding the input to them meanwhile: that needs no PostgreSQL).
  t.equal(
    status.partitions
      .filter((x: { topic: string }) => x.topic !== s.topic)
      .reduce((a: bigint, x: { committedOffset: string }) => a + BigInt(x.committedOffset), 0n),
    held,
    'offsets did not advance',
  );
  t.equal((await fetch(`${url}/readyz`)).status, 503, `still not ready after ${downMs / 1000} s`);
  pgctl('start');
  await s.drainedInPg();
  await until('ready again', async () => (await fetch(`${url}/readyz`)).status === 200, 30_000);
  await s.expectExact();
  r.child.kill('SIGTERM');
});

t.test('the Kafka broker stopped for 20 s and started again: recovery without manual action', async (t) => {
  const script = new URL('../scripts/kafka.sh', import.meta.url).pathname;
  // The broker the tests use, wherever TEST_KAFKA_BROKERS points on this machine.
  const opts = { stdio: 'ignore', env: { ...process.env, KAFKA_PORT: BROKERS[0]!.split(':').pop()! } } as const;
  t.teardown(() => {
    spawnSync(script, ['start'], opts);
  });
  const s = await scenario(t, { partitions: 4, orders: 20_000, seed: 19 });
  await s.produce(s.messages.slice(0, 10_000));
  const r = s.startCli(BATCH);
  await s.drainedInPg();
  execFileSync(script, ['stop'], opts);
  await sleep(Number(process.env.FAULT_KAFKA_DOWN_MS ?? 20_000));
  execFileSync(script, ['start'], opts);
  await s.reconnectProducer();
  await s.produce(s.messages.slice(10_000));
  await s.drainedInPg(120_000);
  await s.expectExact();
  t.equal(r.child.exitCode, null, 'the same process recovered');
  r.child.kill('SIGTERM');
});

t.test("the repartition hop's assignment check fails (a broker still loading after a restart): retried, nothing lost", async (t) => {
  const s = await scenario(t, { partitions: 4, orders: 4_000, seed: 21 });
  await s.produce();
  const r = s.startCli({ ...BATCH, FRAUD_SQL_FAILPOINT: 'repartition-check-error:1' });
  await s.drainedInPg(60_000);
  await s.expectExact();
  t.match(r.output(), /WARN {2}partition assignment failed: injected failure of the repartition assignment check .*; retrying in/, 'it failed once');
  t.equal(r.child.exitCode, null, 'and the process went on');
  r.child.kill('SIGTERM');
});

t.test('a second instance joins mid-stream, then one is killed: results stay exact', async (t) => {
  const s = await scenario(t, { partitions: 4, orders: 40_000, seed: 20 });
  const a = s.startCli(BATCH);
  let b: RunProcess | null = null;
  await trickle(s, 10, 400, {
    2: () => {
      b = s.startCli(BATCH);
    },
    6: async () => {
      await until('both instances own partitions', async () => /assigned partitions \d/.test(b!.output()), 30_000);
      a.child.kill('SIGKILL');
    },
  });
  await s.drainedInPg(180_000);
  await s.expectExact();
  t.match(b!.output(), /assigned partitions 0,1,2,3/, 'the survivor took over every partition');
  b!.child.kill('SIGTERM');
});
