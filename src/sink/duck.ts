/**
 * The embedded sink of `fraud-sql demo` and of the in-memory runs (`rules test`,
 * `backtest`): the rules' result tables, kept in DuckDB next to the window state.
 * Rows are copied from the rules' `changed_<rule>` tables inside DuckDB by the same
 * upsert, replace and finalize statements as the PostgreSQL sink's (sink/sql.ts).
 */
import type { Columns, CommitInput, ResultQuery, SinkPort } from '../engine/ports.js';
import { FraudSqlError } from '../errors.js';
import type { DuckState } from '../state/duckdb.js';
import type { PartitionProgress } from '../types.js';
import { formatMicros } from '../time.js';
import type { DetectionEvidence, DetectionId } from '../alerts/evidence.js';
import {
  DEAD_LETTER_PAYLOAD_MAX,
  duckTimestamp,
  DETECTION_COLUMNS,
  EVIDENCE_COLUMNS,
  evidenceEndsSql,
  evidenceSql,
  TOTALS_COLUMNS,
  finalizeSql,
  replaceSql,
  rowsFrom,
  sqlString,
  upsertSql,
  watermarksFrom,
} from './sql.js';
import { carriedColumns, planTables, quote, type ExistingTable, type ResultTable } from './tables.js';

export class DuckSink implements SinkPort {
  readonly concurrentCommit = false;
  readonly copiesRuleTables = true;
  private tables = new Map<string, ResultTable>();
  private constructor(
    private readonly state: DuckState,
    private readonly topic: string,
  ) {}

  /** Opens the sink over `state`, with the rules' result tables (see ensureTables). */
  static async open(state: DuckState, topic: string, tables: readonly ResultTable[]): Promise<DuckSink> {
    await state.run(
      `CREATE TABLE IF NOT EXISTS dead_letters (topic VARCHAR, kafka_partition INTEGER, kafka_offset BIGINT, reason VARCHAR, payload VARCHAR, created_at TIMESTAMP DEFAULT now())`,
    );
    await state.run(
      `CREATE TABLE IF NOT EXISTS late_events (topic VARCHAR, kafka_partition INTEGER, kafka_offset BIGINT, order_id VARCHAR, event_time TIMESTAMP, created_at TIMESTAMP DEFAULT now())`,
    );
    await state.run(
      `CREATE TABLE IF NOT EXISTS consumer_progress (topic VARCHAR, kafka_partition INTEGER, next_offset BIGINT, watermark TIMESTAMP, PRIMARY KEY (topic, kafka_partition))`,
    );
    await state.run(
      `CREATE TABLE IF NOT EXISTS detection_evidence (rule VARCHAR, key_value VARCHAR, window_start TIMESTAMP, order_id VARCHAR, event_time TIMESTAMP, created_at TIMESTAMP DEFAULT now())`,
    );
    await state.run(
      `CREATE TABLE IF NOT EXISTS detection_totals (rule VARCHAR, key_value VARCHAR, window_start TIMESTAMP, window_end TIMESTAMP, order_count BIGINT, created_at TIMESTAMP DEFAULT now(), updated_at TIMESTAMP DEFAULT now())`,
    );
    const sink = new DuckSink(state, topic);
    await sink.ensureTables(tables);
    return sink;
  }

  /** As PgSink.ensureTables, in the DuckDB file. */
  async ensureTables(tables: readonly ResultTable[]): Promise<void> {
    const statements = await planTables('duckdb', tables, (name) => duckTable(this.state, name));
    for (const sql of statements) await this.state.run(sql);
    this.tables = new Map(tables.map((t) => [t.name, t]));
  }

  private table(name: string): ResultTable {
    const t = this.tables.get(name);
    if (!t) throw new FraudSqlError('TABLE_UNKNOWN', `no rule defines the result table ${name}`);
    return t;
  }

  async progress(startOffsets: ReadonlyMap<number, bigint>): Promise<Map<number, PartitionProgress>> {
    const out = new Map<number, PartitionProgress>();
    for (const [p, start] of startOffsets) {
      await this.state.run(`INSERT OR IGNORE INTO consumer_progress VALUES ('${this.topic}', ${p}, ${start}, NULL)`);
      const r = await this.state.query(`SELECT next_offset FROM consumer_progress WHERE topic = '${this.topic}' AND kafka_partition = ${p}`);
      const next = BigInt(r.columns[0]![0] as string);
      // The demo's window state starts empty: there is nothing to replay.
      out.set(p, { partition: p, nextOffset: next, restoreFrom: next, lateOffsets: new Set() });
    }
    return out;
  }

  async resetProgress(partition: number, nextOffset: bigint): Promise<void> {
    await this.state.run(
      `UPDATE consumer_progress SET next_offset = ${nextOffset}, watermark = NULL WHERE topic = '${this.topic}' AND kafka_partition = ${partition}`,
    );
    await this.state.run(`DELETE FROM late_events WHERE topic = '${this.topic}' AND kafka_partition = ${partition} AND kafka_offset >= ${nextOffset}`);
  }

  /** As PgSink.openResults, from the demo's own tables. */
  async openResults(q: ResultQuery, partitions: readonly number[], horizonUs: number): Promise<Columns> {
    const t = this.table(q.target);
    const carried = carriedColumns(t, q.columns);
    const select = carried.map((c) => (c.timestamp ? `epoch_us(${quote(c.name)})` : quote(c.name)));
    const watermark = `(SELECT cp.watermark FROM consumer_progress cp WHERE cp.topic = '${this.topic}' AND cp.kafka_partition = source_partition)`;
    const recent = q.finalAfter ? `(${q.finalAfter}) >= ${watermark} - to_microseconds(${Math.floor(horizonUs)}::BIGINT)` : `${watermark} IS NOT NULL`;
    const r = await this.state.query(
      `SELECT ${select.join(', ')} FROM ${q.target} WHERE source_partition IN (${partitions.map(Number).join(', ')}) AND ${recent}`,
    );
    return { ...r, names: carried.map((c) => c.name) };
  }

  async commit(input: CommitInput): Promise<void> {
    const s = this.state;
    await s.run('BEGIN TRANSACTION');
    try {
      for (const rs of input.results) {
        if (rs.rowCount === 0) continue;
        const t = this.table(rs.target);
        const from = rowsFrom('duckdb', t.columns, `changed_${rs.rule}`);
        if (rs.replace.length > 0) await s.run(replaceSql(t, t.name, rs.replace, from));
        await s.run(upsertSql(t, t.name, rs.names, from, sqlString(rs.version), rs.grows));
      }
      for (const d of input.deadLetters) {
        await s.conn.run('INSERT INTO dead_letters (topic, kafka_partition, kafka_offset, reason, payload) VALUES ($1, $2, $3, $4, $5)', [
          d.topic,
          d.partition,
          d.offset,
          d.reason,
          d.value ? d.value.subarray(0, DEAD_LETTER_PAYLOAD_MAX).toString('utf8') : null,
        ]);
      }
      for (const l of input.late) {
        await s.conn.run('INSERT INTO late_events (topic, kafka_partition, kafka_offset, order_id, event_time) VALUES ($1, $2, $3, $4, $5::TIMESTAMP)', [
          l.topic,
          l.partition,
          l.offset,
          l.order.orderId,
          formatMicros(l.order.eventUs).replace('Z', ''),
        ]);
      }
      for (const p of input.progress) {
        const wm = p.watermarkUs === null ? 'NULL' : `make_timestamp(${Math.floor(p.watermarkUs)}::BIGINT)`;
        await s.run(
          `UPDATE consumer_progress SET next_offset = ${p.next}, watermark = ${wm} WHERE topic = '${this.topic}' AND kafka_partition = ${p.partition}`,
        );
      }
      if (input.evidence.length > 0) await this.writeEvidence(input.evidence);
      await this.finalizeRows(input.finalizers, input.watermarks);
      await s.run('COMMIT');
    } catch (err) {
      await s.run('ROLLBACK').catch(() => {});
      throw err;
    }
  }

  async evidenceEnds(detections: readonly DetectionId[]): Promise<(string | null)[]> {
    const out: (string | null)[] = detections.map(() => null);
    if (detections.length === 0) return out;
    const rows = detections.map((d, i) => `(${i}, ${head(d)})`);
    const r = await this.state.query(evidenceEndsSql('duckdb', relation(rows, DETECTION_COLUMNS)));
    for (let j = 0; j < r.rowCount; j++) out[Number(r.columns[0]![j])] = (r.columns[1]![j] as string | null) ?? null;
    return out;
  }

  /** The same statements as the PostgreSQL sink's, over the batch's evidence as literal rows. */
  private async writeEvidence(evidence: readonly DetectionEvidence[]): Promise<void> {
    const totals = relation(
      evidence.map((e) => `(${head(e)}, ${duckTimestamp(e.windowEnd)}, ${e.orderCount}::BIGINT)`),
      TOTALS_COLUMNS,
    );
    const listed = evidence.flatMap((e) =>
      e.orderIds.map((id, i) => `(${head(e)}, ${sqlString(id)}, make_timestamp(${Math.floor(e.eventUs[i]!)}::BIGINT), ${e.max}::INTEGER)`),
    );
    const sql = evidenceSql('duckdb', totals, listed.length > 0 ? relation(listed, EVIDENCE_COLUMNS) : '');
    for (const statement of sql.totals) await this.state.run(statement);
    if (listed.length > 0) for (const statement of sql.orders) await this.state.run(statement);
  }

  async finalize(finalizers: CommitInput['finalizers'], watermarks: ReadonlyMap<number, number>): Promise<void> {
    await this.finalizeRows(finalizers, watermarks);
  }

  private async finalizeRows(finalizers: CommitInput['finalizers'], watermarks: ReadonlyMap<number, number>): Promise<void> {
    if (watermarks.size === 0) return;
    for (const f of finalizers) await this.state.run(finalizeSql(f.target, f.finalAfter, watermarksFrom('duckdb', watermarks)));
  }
}

/** Literal rows as a relation `u` of `columns`. */
function relation(rows: readonly string[], columns: readonly { name: string }[]): string {
  return `(VALUES ${rows.join(', ')}) AS u(${columns.map((c) => c.name).join(', ')})`;
}

const head = (e: DetectionId) => `${sqlString(e.rule)}, ${sqlString(e.keyValue)}, ${duckTimestamp(e.windowStart)}`;

/** As PostgreSQL's catalog answers for PgSink: a DuckDB table's columns and unique keys, or null. */
export async function duckTable(state: DuckState, table: string): Promise<ExistingTable | null> {
  const name = sqlString(table);
  const cols = await state.query(
    `SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ${name} AND schema_name = current_schema() ORDER BY column_index`,
  );
  if (cols.rowCount === 0) return null;
  const uniques = await state.query(
    `SELECT to_json(constraint_column_names)::VARCHAR FROM duckdb_constraints() WHERE table_name = ${name} AND schema_name = current_schema() AND constraint_type IN ('PRIMARY KEY', 'UNIQUE')`,
  );
  return {
    columns: new Map((cols.columns[0] as string[]).map((c, i) => [c, cols.columns[1]![i] as string])),
    uniques: (uniques.columns[0] as string[]).map((u) => JSON.parse(u) as string[]),
  };
}
