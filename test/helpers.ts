/**
 * The real test bed: the local Kafka broker (scripts/kafka.sh) and PostgreSQL.
 * Every test gets its own topic, consumer group and PostgreSQL schema, and drops
 * them afterwards.
 */
import { randomBytes } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import type { Test } from 'tap';
import { generateOrders } from '../src/generator/orders.js';
import { entries, readTables, recompute, type OracleOrder } from './oracle.js';
import { Kafka, logLevel, type Producer } from 'kafkajs';
import pg from 'pg';
import { loadConfig, type Config } from '../src/config.js';
import { startRun, type RunningApp } from '../src/commands/run.js';
import { createLogger, silentLogger, type Logger } from '../src/log.js';

export const BROKERS = (process.env.TEST_KAFKA_BROKERS ?? '127.0.0.1:9092').split(',');
export const PG_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export const uniqueName = (prefix: string) => `${prefix}_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;

type Teardown = (fn: () => Promise<void> | void) => void;

export async function kafkaTopic(teardown: Teardown, partitions = 4): Promise<string> {
  const topic = uniqueName('orders').replace(/_/g, '-');
  const admin = new Kafka({ clientId: 'fraud-sql-test', brokers: BROKERS, logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: partitions }, { topic: `${topic}.dlq`, numPartitions: 1 }], waitForLeaders: true });
  await admin.disconnect();
  teardown(async () => {
    const a = new Kafka({ clientId: 'fraud-sql-test', brokers: BROKERS, logLevel: logLevel.NOTHING }).admin();
    await a.connect();
    await a.deleteTopics({ topics: [topic, `${topic}.dlq`] }).catch(() => {});
    await a.disconnect();
  });
  return topic;
}

export async function pgSchema(teardown: Teardown): Promise<{ schema: string; pool: pg.Pool }> {
  const schema = uniqueName('t');
  const pool = new pg.Pool({ connectionString: PG_URL, max: 2, options: `-c search_path=${schema} -c TimeZone=UTC` });
  // Some tests restart PostgreSQL: idle connections then fail, and are replaced.
  pool.on('error', () => {});
  teardown(async () => {
    await pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await pool.end();
  });
  return { schema, pool };
}

export async function producer(teardown: Teardown): Promise<Producer> {
  const p = new Kafka({ clientId: 'fraud-sql-test', brokers: BROKERS, logLevel: logLevel.NOTHING }).producer();
  await p.connect();
  teardown(() => p.disconnect());
  return p;
}

export interface TestMessage {
  key: string;
  value: string | Buffer;
}

/** Produces in chunks, in order (one in-flight request, so per-partition order is kept). */
export async function produce(p: Producer, topic: string, messages: readonly TestMessage[], chunk = 5_000): Promise<void> {
  for (let i = 0; i < messages.length; i += chunk) {
    await p.send({ topic, messages: messages.slice(i, i + chunk).map((m) => ({ key: m.key, value: m.value })) });
  }
}

export function testConfig(topic: string, schema: string, extra: Partial<Config> = {}): Readonly<Config> {
  return loadConfig({}, {}, {
    brokers: BROKERS,
    topic,
    dlqTopic: `${topic}.dlq`,
    groupId: `g-${topic}`,
    databaseUrl: PG_URL,
    pgSchema: schema,
    httpPort: 0,
    ...extra,
  });
}

export const testLogger = (): Logger => (process.env.TEST_LOG ? createLogger('debug') : silentLogger);

export async function runApp(teardown: Teardown, config: Readonly<Config>): Promise<RunningApp> {
  const app = await startRun(config, testLogger());
  teardown(() => app.stop());
  return app;
}

/** Waits until every message produced so far to `topic` is committed by the app. */
export async function drained(app: RunningApp, topic: string, timeoutMs = Number(process.env.TEST_DRAIN_MS ?? 120_000)): Promise<void> {
  const admin = new Kafka({ clientId: 'fraud-sql-test', brokers: BROKERS, logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  let failed: unknown = null;
  app.done.catch((err) => (failed = err));
  try {
    const ends = new Map((await admin.fetchTopicOffsets(topic)).map((o) => [o.partition, BigInt(o.high)]));
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const committed = app.engine.committedOffsets();
      const behind = [...ends].filter(([p, end]) => end > 0n && (committed.get(p) ?? -1n) < end);
      if (behind.length === 0 && committed.size === ends.size) return;
      if (failed) throw failed;
      if (Date.now() > deadline) throw new Error(`not drained after ${timeoutMs} ms: ${behind.map(([p, e]) => `${p}: ${committed.get(p)}/${e}`).join(', ')}`);
      await new Promise<void>((r) => {
        const done = () => r();
        app.engine.events.once('batch:end', done);
        setTimeout(() => {
          app.engine.events.off('batch:end', done);
          r();
        }, 200);
      });
    }
  } finally {
    await admin.disconnect();
  }
}

/** A deterministic labelled dataset: the messages to produce and the oracle's view of them. */
export function dataset(opts: { seed: number; count: number; rate: number; startMs: number; mix?: Parameters<typeof generateOrders>[0]['mix'] }): { messages: TestMessage[]; orders: OracleOrder[] } {
  const gen = generateOrders({ seed: opts.seed, rate: opts.rate, startMs: opts.startMs, mix: opts.mix ?? { normal: 85, bot: 10, burst: 2, near_miss: 2, high_value: 1 } });
  const messages: TestMessage[] = [];
  const orders: OracleOrder[] = [];
  for (let i = 0; i < opts.count; i++) {
    const o = gen.next().value!;
    messages.push({ key: o.key, value: o.value });
    if (o.label === 'malformed') continue;
    const j = JSON.parse(o.value);
    orders.push({ order_id: j.order_id, ms: Date.parse(j.timestamp), product_name: j.product_name, price: j.price, quantity: j.quantity, ip_address: j.ip_address });
  }
  return { messages, orders };
}

/** Every output table equals the independent recomputation, exactly. */
export async function assertMatchesOracle(t: Pick<Test, 'same'>, pool: pg.Pool, orders: readonly OracleOrder[]): Promise<void> {
  const expected = recompute(orders);
  const actual = await readTables(pool);
  t.same(entries(actual.popular), entries(expected.popular), 'popular_products equals the recomputation');
  t.same(entries(actual.suspicious), entries(expected.suspicious), 'suspicious_ips equals the recomputation');
  t.same(entries(actual.highValue), entries(expected.highValue), 'high_value_orders equals the recomputation');
  t.same(entries(actual.stats), entries(expected.stats), 'realtime_stats equals the recomputation');
}

const CLI = new URL('../dist/cli.js', import.meta.url).pathname;

export interface RunProcess {
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output: () => string;
}

/** Starts `fraud-sql run` as its own process (the built CLI), as an operator would. */
export function spawnRun(teardown: Teardown, topic: string, schema: string, env: Record<string, string> = {}): RunProcess {
  const child = spawn('node', [CLI, 'run'], {
    env: {
      ...process.env,
      FRAUD_SQL_BROKERS: BROKERS.join(','),
      FRAUD_SQL_TOPIC: topic,
      FRAUD_SQL_DLQ_TOPIC: `${topic}.dlq`,
      FRAUD_SQL_GROUP: `g-${topic}`,
      FRAUD_SQL_DATABASE_URL: PG_URL,
      FRAUD_SQL_PG_SCHEMA: schema,
      FRAUD_SQL_HTTP_PORT: '0',
      // The broker's minimum: a killed instance's partitions move on sooner.
      FRAUD_SQL_KAFKA_SESSION_TIMEOUT_MS: '6000',
      FRAUD_SQL_LOG_LEVEL: process.env.TEST_LOG ? 'debug' : 'info',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => {
    out += d;
    if (process.env.TEST_LOG) process.stderr.write(d);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  return { child, exited, output: () => out };
}

/** Waits until PostgreSQL's committed offsets reach the end of every partition. */
export async function drainedInPg(pool: pg.Pool, topic: string, timeoutMs = 120_000): Promise<void> {
  const admin = new Kafka({ clientId: 'fraud-sql-test', brokers: BROKERS, logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    const ends = (await admin.fetchTopicOffsets(topic)).map((o) => [o.partition, BigInt(o.high)] as const);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const rows = await pool.query('SELECT kafka_partition, next_offset::text FROM consumer_progress WHERE topic = $1', [topic]).catch(() => ({ rows: [] as { kafka_partition: number; next_offset: string }[] }));
      const committed = new Map(rows.rows.map((r) => [r.kafka_partition as number, BigInt(r.next_offset as string)]));
      if (ends.every(([p, end]) => end === 0n || (committed.get(p) ?? -1n) >= end)) return;
      if (Date.now() > deadline) throw new Error(`not drained after ${timeoutMs} ms: ${ends.map(([p, e]) => `${p}: ${committed.get(p)}/${e}`).join(', ')}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    await admin.disconnect();
  }
}
