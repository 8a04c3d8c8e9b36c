/**
 * The bench's control for the CPU targets: the least a Kafka-to-PostgreSQL
 * consumer does for the same input, with no detection. One kafkajs consumer (with
 * fraud-sql's fixes of kafkajs' idle timers), each order parsed, each batch's
 * orders and the partition's next offset written in one PostgreSQL transaction,
 * the offset committed to Kafka after it. Its CPU at 15 orders/s and idle is what
 * this machine spends before any rule runs.
 * Usage (by the bench): node control-consumer.js <brokers> <topic> <schema>, the
 * database URL in BENCH_DATABASE_URL (not on the command line, where ps shows it).
 */
import { Kafka, logLevel } from 'kafkajs';
import pg from 'pg';
import { consumerConfig } from '../src/source/kafka.js';

const [brokers, topic, schema] = process.argv.slice(2) as [string, string, string];
const pool = new pg.Pool({ connectionString: process.env.BENCH_DATABASE_URL, max: 1 });
await pool.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
await pool.query(`CREATE TABLE IF NOT EXISTS "${schema}".orders (order_id text PRIMARY KEY, total_price bigint)`);
await pool.query(`CREATE TABLE IF NOT EXISTS "${schema}".progress (kafka_partition integer PRIMARY KEY, next_offset bigint)`);
const kafka = new Kafka({ clientId: 'fraud-sql-bench-control', brokers: brokers.split(','), logLevel: logLevel.NOTHING });
// Configured as fraud-sql's consumers are (fetch wait, heartbeats, sizes); importing
// src/source/kafka.ts applies its fixes of kafkajs' idle timers too.
const consumer = kafka.consumer(consumerConfig({ groupId: `control-${topic}` }));
await consumer.connect();
await consumer.subscribe({ topic, fromBeginning: true });
await consumer.run({
  autoCommit: false,
  eachBatch: async ({ batch }) => {
    const orders: { order_id: string; price: number; quantity: number }[] = [];
    for (const m of batch.messages) {
      try {
        const o = JSON.parse(m.value?.toString() ?? '') as { order_id?: unknown; price?: unknown; quantity?: unknown };
        if (typeof o.order_id === 'string') orders.push(o as (typeof orders)[number]);
      } catch {
        // Malformed: skipped, as a dead letter would be.
      }
    }
    const next = String(BigInt(batch.lastOffset()) + 1n);
    const c = await pool.connect();
    try {
      await c.query('BEGIN');
      await c.query(`INSERT INTO "${schema}".orders SELECT * FROM unnest($1::text[], $2::bigint[]) ON CONFLICT DO NOTHING`, [
        orders.map((o) => o.order_id),
        orders.map((o) => Number(o.price) * Number(o.quantity)),
      ]);
      await c.query(`INSERT INTO "${schema}".progress VALUES ($1, $2) ON CONFLICT (kafka_partition) DO UPDATE SET next_offset = excluded.next_offset`, [
        batch.partition,
        next,
      ]);
      await c.query('COMMIT');
    } catch (err) {
      // The connection goes back to the pool outside any transaction.
      await c.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      c.release();
    }
    await consumer.commitOffsets([{ topic, partition: batch.partition, offset: next }]);
  },
});
process.stderr.write('control consumer ready\n');
process.on('SIGTERM', () => {
  void consumer
    .disconnect()
    .then(() => pool.end())
    .then(() => process.exit(0));
});
