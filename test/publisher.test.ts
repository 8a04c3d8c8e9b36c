/**
 * The alert publisher against the real PostgreSQL and broker: alerts leave the
 * outbox in the order the batches wrote them, and a claim reads only what it claims.
 */
import t from 'tap';
import { Kafka, logLevel } from 'kafkajs';
import { AlertPublisher, claim, CLAIM_ALERTS, claimDeliveries } from '../src/alerts/publisher.js';
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
  // Teardowns that cannot fail: one that throws skips the rest (the sink, the schema).
  t.teardown(async () => {
    const admin = kafka.admin();
    try {
      await admin.connect();
      await admin.deleteTopics({ topics: [topic] });
    } catch {
      // the broker is gone: nothing to delete it from
    } finally {
      await admin.disconnect().catch(() => {});
    }
  });
  const producer = await openProducer({ clientId: 'fraud-sql-test', brokers: BROKERS, logger: silentLogger }, topic, { partitions: 1, replicationFactor: 1 });
  t.teardown(() => producer.disconnect().catch(() => {}));
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
  t.teardown(() => consumer.disconnect().catch(() => {}));
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

t.test('the claims walk their index, also in an outbox never analyzed', async (t) => {
  const { schema, pool } = await pgSchema(t.teardown);
  const sink = await PgSink.open({ databaseUrl: PG_URL, schema, consumerGroup: 'g', topic: 'orders', logger: silentLogger });
  t.teardown(() => sink.close());
  await pool.query(`INSERT INTO alert_outbox (alert_id, rule, alert_key, payload) SELECT 'a' || i, 'r', 'k', '{}' FROM generate_series(1, 2000) AS i`);
  await pool.query(`INSERT INTO alert_deliveries (alert_id, url) SELECT alert_id, 'http://127.0.0.1:1/' FROM alert_outbox`);
  // EXPLAIN plans a statement without running it: nothing is claimed.
  const plan = async (sql: string) =>
    (await sink.transaction((c) => claim<{ 'QUERY PLAN': string }>(c, `EXPLAIN ${sql}`))).rows.map((r) => r['QUERY PLAN']).join('\n');
  const alerts = await plan(CLAIM_ALERTS);
  t.match(alerts, /Index Scan using alert_outbox_unpublished/, 'alerts: read from the unpublished index in seq order');
  t.notMatch(alerts, /Sort|Seq Scan/, 'sorting nothing, scanning no table: it stops at its limit');
  const deliveries = await plan(claimDeliveries(60));
  t.match(deliveries, /Index Scan using alert_deliveries_due/, 'webhook deliveries: read from the due index in time order');
  // The only sort left is of the claimed rows themselves, at most 8, to match them up.
  t.notMatch(deliveries, /Sort Key: alert_deliveries\.next_attempt_at|Seq Scan/, 'sorting no due delivery, scanning no table');
});
