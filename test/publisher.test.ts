/**
 * The alert publisher against the real PostgreSQL and broker: alerts leave the
 * outbox in the order the batches wrote them.
 */
import t from 'tap';
import pg from 'pg';
import { Kafka, logLevel } from 'kafkajs';
import { AlertPublisher } from '../src/alerts/publisher.js';
import { silentLogger } from '../src/log.js';
import { PgSink } from '../src/sink/postgres.js';
import { openProducer } from '../src/source/kafka.js';
import { BROKERS, PG_URL, uniqueName } from './helpers.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('alerts are published in the order they were written, past seq 9', async (t) => {
  const name = uniqueName('publisher');
  const pool = new pg.Pool({ connectionString: PG_URL, max: 1, options: `-c search_path=${name}` });
  const sink = await PgSink.open({ databaseUrl: PG_URL, schema: name, consumerGroup: 'g', topic: 'orders', logger: silentLogger });
  t.teardown(async () => {
    await sink.close();
    await pool.query(`DROP SCHEMA IF EXISTS ${name} CASCADE`);
    await pool.end();
  });
  // One key, so one partition: the topic keeps the order they were sent in.
  const alerts = Array.from({ length: 25 }, (_, i) => ({ id: `alert-${i + 1}`, rule: 'r', key: 'one key', payload: JSON.stringify({ n: i + 1 }) }));
  // Two batches: seq 1..12, then 13..25.
  for (const part of [alerts.slice(0, 12), alerts.slice(12)])
    await sink.commit({ results: [], deadLetters: [], late: [], progress: [], finalizers: [], watermarks: new Map(), alerts: part, evidence: [] });

  const topic = uniqueName('alerts');
  const producer = await openProducer({ clientId: 'fraud-sql-test', brokers: BROKERS, logger: silentLogger }, topic, { partitions: 1, replicationFactor: 1 });
  t.teardown(() => producer.disconnect());
  const publisher = new AlertPublisher({
    transaction: (fn) => sink.transaction(fn),
    read: (sql) => sink.read(sql),
    producer,
    topic,
    webhooks: false,
    webhookSecret: '',
    webhookTimeoutMs: 1_000,
    webhookMaxAttempts: 1,
    webhookRetryMs: 100,
    pollMs: 100,
    logger: silentLogger,
  });
  publisher.start();
  const unpublished = async () => Number((await pool.query('SELECT count(*) AS n FROM alert_outbox WHERE published_at IS NULL')).rows[0].n);
  for (let i = 0; i < 100 && (await unpublished()) > 0; i++) await sleep(100);
  await publisher.stop();
  t.equal(await unpublished(), 0, 'every alert marked published');

  const consumer = new Kafka({ clientId: 'fraud-sql-test', brokers: BROKERS, logLevel: logLevel.NOTHING }).consumer({ groupId: `${topic}-reader` });
  await consumer.connect();
  t.teardown(() => consumer.disconnect());
  await consumer.subscribe({ topic, fromBeginning: true });
  const got: { key: string; value: string }[] = [];
  await consumer.run({ eachMessage: async ({ message }) => void got.push({ key: String(message.key), value: String(message.value) }) });
  for (let i = 0; i < 100 && got.length < alerts.length; i++) await sleep(100);
  t.same(
    got.map((m) => m.value),
    alerts.map((a) => a.payload),
    'on the topic in seq order (1, 2, ... 25), each once',
  );
  t.ok(
    got.every((m) => m.key === 'one key'),
    'keyed by the alert key',
  );
});
