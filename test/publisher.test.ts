/**
 * The alert publisher against the real PostgreSQL and broker: alerts leave the
 * outbox in the order the batches wrote them, and a claim reads only what it claims.
 */
import t from 'tap';
import { Kafka, logLevel } from 'kafkajs';
import { AlertPublisher, CLAIM_ALERTS, WALK_INDEXES } from '../src/alerts/publisher.js';
import { silentLogger } from '../src/log.js';
import { PgSink } from '../src/sink/postgres.js';
import { openProducer } from '../src/source/kafka.js';
import { BROKERS, PG_URL, pgSchema, uniqueName } from './helpers.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const noCommit = { results: [], deadLetters: [], late: [], progress: [], finalizers: [], watermarks: new Map(), evidence: [] };

t.test('alerts are published in the order they were written, past seq 9', async (t) => {
  const { schema, pool } = await pgSchema(t.teardown);
  const sink = await PgSink.open({ databaseUrl: PG_URL, schema, consumerGroup: 'g', topic: 'orders', logger: silentLogger });
  t.teardown(() => sink.close());
  // One key, so one partition: the topic keeps the order they were sent in.
  const alerts = Array.from({ length: 25 }, (_, i) => ({ id: `alert-${i + 1}`, rule: 'r', key: 'one key', payload: JSON.stringify({ n: i + 1 }) }));
  // Two batches: seq 1..12, then 13..25.
  for (const part of [alerts.slice(0, 12), alerts.slice(12)]) await sink.commit({ ...noCommit, alerts: part });

  const topic = uniqueName('alerts').replace(/_/g, '-');
  const kafka = new Kafka({ clientId: 'fraud-sql-test', brokers: BROKERS, logLevel: logLevel.NOTHING });
  t.teardown(async () => {
    const admin = kafka.admin();
    await admin.connect();
    await admin.deleteTopics({ topics: [topic] }).catch(() => {});
    await admin.disconnect();
  });
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
  t.teardown(() => publisher.stop());
  const unpublished = async () => Number((await pool.query('SELECT count(*) AS n FROM alert_outbox WHERE published_at IS NULL')).rows[0].n);
  for (let i = 0; i < 300 && (await unpublished()) > 0; i++) await sleep(100);
  t.equal(await unpublished(), 0, 'every alert marked published');

  const consumer = kafka.consumer({ groupId: `${topic}-reader` });
  await consumer.connect();
  t.teardown(() => consumer.disconnect());
  await consumer.subscribe({ topic, fromBeginning: true });
  const got: { key: string; value: string }[] = [];
  await consumer.run({ eachMessage: async ({ message }) => void got.push({ key: String(message.key), value: String(message.value) }) });
  for (let i = 0; i < 300 && got.length < alerts.length; i++) await sleep(100);
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

t.test('a claim walks the unpublished index, also in an outbox never analyzed', async (t) => {
  const { schema, pool } = await pgSchema(t.teardown);
  const sink = await PgSink.open({ databaseUrl: PG_URL, schema, consumerGroup: 'g', topic: 'orders', logger: silentLogger });
  t.teardown(() => sink.close());
  await pool.query(`INSERT INTO alert_outbox (alert_id, rule, alert_key, payload) SELECT 'a' || i, 'r', 'k', '{}' FROM generate_series(1, 2000) AS i`);
  const plan = (settings: string | null) =>
    sink.transaction(async (c) => {
      if (settings) await c.query(settings);
      return (await c.query(`EXPLAIN ${CLAIM_ALERTS}`)).rows.map((r: Record<string, string>) => r['QUERY PLAN']).join('\n');
    });
  const walked = await plan(WALK_INDEXES);
  t.match(walked, /Index Scan using alert_outbox_unpublished/, 'the claim reads the index in seq order');
  t.notMatch(walked, /Sort/, 'and sorts nothing: it stops at its limit');
  t.match(await plan(null), /Sort/, 'left to its estimates, the planner would sort every unpublished alert');
});
