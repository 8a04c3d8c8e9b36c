/**
 * The bench's control for the CPU targets: the least a Kafka-to-PostgreSQL
 * consumer does for the same input, with no detection. One kafkajs consumer (with
 * fraud-sql's fixes of kafkajs' idle timers), each order parsed, each batch's
 * orders and the partition's next offset written in one PostgreSQL transaction,
 * the offset committed to Kafka after it. Its CPU at 15 orders/s and idle is what
 * this machine spends before any rule runs.
 *
 * Given a rules directory, it also does the least the per-order lane's design
 * needs (see src/plan.ts): each batch appended to an in-memory DuckDB (redeliveries
 * kept out) and the per-order rules' SQL run over it, before the same transaction.
 * No retention, no result rows written, no alerts: a lower bound on the lane, whose
 * batches stay one order each at 15 orders/s so that a high-value order is committed
 * at once.
 * Usage (by the bench): node control-consumer.js <brokers> <topic> <schema> [<queries dir>],
 * the database URL in BENCH_DATABASE_URL (not on the command line, where ps shows it).
 */
import { Kafka, logLevel } from 'kafkajs';
import pg from 'pg';
import { consumerConfig } from '../src/source/kafka.js';
import { decodeOrder } from '../src/source/decode.js';
import { loadRules } from '../src/rules/loader.js';
import { RuleSet } from '../src/rules/index.js';
import { stripSemicolon } from '../src/rules/runner.js';
import { planPipelines } from '../src/plan.js';
import { DuckState } from '../src/state/duckdb.js';
import type { IngestRow } from '../src/engine/ports.js';

const [brokers, topic, schema, queriesDir] = process.argv.slice(2) as [string, string, string, string | undefined];
const lane = queriesDir ? await laneRules(queriesDir) : null;
let batchId = 0;
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
    if (lane) {
      const rows: IngestRow[] = [];
      for (const m of batch.messages) {
        const d = decodeOrder(m.value, { timeZone: 'UTC', maxMessageBytes: 1 << 20 });
        if (d.ok) rows.push({ order: d.order, partition: batch.partition, offset: BigInt(m.offset) });
      }
      await lane.state.ingest(rows, ++batchId);
      await lane.state.setBatch(batchId);
      for (const sql of lane.sql) await lane.state.query(sql);
    }
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

/** The per-order lane's rules in `dir`, loaded into a state of their own; throws when the rules make no lane. */
async function laneRules(dir: string): Promise<{ state: DuckState; sql: string[] }> {
  const { plan } = planPipelines(loadRules(dir).rules, { topic, group: 'control', inputKeyedBy: null });
  const names = plan.pipelines.find((p) => p.perOrder)?.rules ?? [];
  if (names.length === 0) throw new Error(`${dir}: no per-order rules`);
  const state = await DuckState.open(':memory:', { threads: 1 });
  const rules = await RuleSet.load(state, dir, undefined, (all) => ({ rules: all.filter((r) => names.includes(r.name)), problems: [] }));
  return { state, sql: rules.prepared().map((p) => stripSemicolon(p.rule.sql)) };
}
process.on('SIGTERM', () => {
  void consumer
    .disconnect()
    .then(() => pool.end())
    .then(() => process.exit(0));
});
