/**
 * The real test bed: the local Kafka broker (scripts/kafka.sh) and PostgreSQL.
 * Every test gets its own topic, consumer group and PostgreSQL schema, and drops
 * them afterwards.
 */
import { randomBytes } from 'node:crypto';
import { Kafka, logLevel, type Producer } from 'kafkajs';
import pg from 'pg';
import { loadConfig, type Config } from '../src/config.js';
import { startRun, type RunningApp } from '../src/app.js';
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
