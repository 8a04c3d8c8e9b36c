/**
 * The embedded sink of `fraud-sql demo`: the same result tables, kept in the demo's
 * DuckDB file next to the window state. Rows are copied from the rules'
 * `changed_<rule>` tables inside DuckDB, with the same key, replace and finalize
 * semantics as the PostgreSQL sink.
 */
import type { Columns, CommitInput, ResultQuery, SinkPort } from '../engine/ports.js';
import type { DuckState } from '../state/duckdb.js';
import type { PartitionProgress } from '../types.js';
import { formatMicros } from '../time.js';
import { DUCK_TYPES, FINALIZABLE, TARGETS, TARGET_KEYS } from './schema.js';

export class DuckSink implements SinkPort {
  readonly concurrentCommit = false;
  private constructor(
    private readonly state: DuckState,
    private readonly topic: string,
  ) {}

  static async open(state: DuckState, topic: string): Promise<DuckSink> {
    for (const [table, cols] of Object.entries(TARGETS)) {
      const defs = Object.entries(cols).map(([c, t]) => `${c} ${DUCK_TYPES[t]} NOT NULL`);
      if (FINALIZABLE.has(table)) defs.push('is_final BOOLEAN NOT NULL DEFAULT false');
      defs.push('rule_version VARCHAR', 'created_at TIMESTAMP NOT NULL DEFAULT now()', 'updated_at TIMESTAMP NOT NULL DEFAULT now()');
      defs.push(`PRIMARY KEY (${TARGET_KEYS[table]!.join(', ')})`);
      await state.run(`CREATE TABLE IF NOT EXISTS ${table} (${defs.join(', ')})`);
    }
    await state.run(
      `CREATE TABLE IF NOT EXISTS dead_letters (topic VARCHAR, kafka_partition INTEGER, kafka_offset BIGINT, reason VARCHAR, payload VARCHAR, created_at TIMESTAMP DEFAULT now())`,
    );
    await state.run(
      `CREATE TABLE IF NOT EXISTS late_events (topic VARCHAR, kafka_partition INTEGER, kafka_offset BIGINT, order_id VARCHAR, event_time TIMESTAMP, created_at TIMESTAMP DEFAULT now())`,
    );
    await state.run(
      `CREATE TABLE IF NOT EXISTS consumer_progress (topic VARCHAR, kafka_partition INTEGER, next_offset BIGINT, watermark TIMESTAMP, PRIMARY KEY (topic, kafka_partition))`,
    );
    return new DuckSink(state, topic);
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
    const types = TARGETS[q.target]!;
    const select = q.columns.map((c) => (types[c] === 'timestamptz' ? `epoch_us(${c})` : c));
    const watermark = `(SELECT cp.watermark FROM consumer_progress cp WHERE cp.topic = '${this.topic}' AND cp.kafka_partition = source_partition)`;
    const recent = q.finalAfter ? `(${q.finalAfter}) >= ${watermark} - to_microseconds(${Math.floor(horizonUs)}::BIGINT)` : `${watermark} IS NOT NULL`;
    const r = await this.state.query(
      `SELECT ${select.join(', ')} FROM ${q.target} WHERE source_partition IN (${partitions.map(Number).join(', ')}) AND ${recent}`,
    );
    return { ...r, names: [...q.columns] };
  }

  async commit(input: CommitInput): Promise<void> {
    const s = this.state;
    await s.run('BEGIN TRANSACTION');
    try {
      for (const rs of input.results) {
        if (rs.rowCount === 0) continue;
        const changed = `changed_${rs.rule}`;
        const key = TARGET_KEYS[rs.target]!;
        if (rs.replace.length > 0) {
          const match = rs.replace.map((c) => `t.${c} = c.${c}`).join(' AND ');
          const same = key.map((c) => `t.${c} = c.${c}`).join(' AND ');
          await s.run(`DELETE FROM ${rs.target} t WHERE NOT t.is_final
            AND EXISTS (SELECT 1 FROM ${changed} c WHERE ${match})
            AND NOT EXISTS (SELECT 1 FROM ${changed} c WHERE ${same})`);
        }
        const cols = rs.names;
        const nonKey = cols.filter((c) => !key.includes(c));
        const sets = [...nonKey.map((c) => `${c} = EXCLUDED.${c}`), 'rule_version = EXCLUDED.rule_version', 'updated_at = now()'];
        if (FINALIZABLE.has(rs.target)) sets.push('is_final = false');
        const guard = rs.grows.length > 0 ? `WHERE ${rs.grows.map((g) => `EXCLUDED.${g} >= ${rs.target}.${g}`).join(' AND ')}` : '';
        await s.run(`INSERT INTO ${rs.target} (${cols.join(', ')}, rule_version)
          SELECT ${cols.join(', ')}, '${rs.version}' FROM ${changed}
          ON CONFLICT DO UPDATE SET ${sets.join(', ')} ${guard}`);
      }
      for (const d of input.deadLetters) {
        await s.conn.run('INSERT INTO dead_letters (topic, kafka_partition, kafka_offset, reason, payload) VALUES ($1, $2, $3, $4, $5)', [
          d.topic,
          d.partition,
          d.offset,
          d.reason,
          d.value ? d.value.subarray(0, 4096).toString('utf8') : null,
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
      await this.finalizeRows(input.finalizers, input.watermarks);
      await s.run('COMMIT');
    } catch (err) {
      await s.run('ROLLBACK').catch(() => {});
      throw err;
    }
  }

  async finalize(finalizers: CommitInput['finalizers'], watermarks: ReadonlyMap<number, number>): Promise<void> {
    await this.finalizeRows(finalizers, watermarks);
  }

  private async finalizeRows(finalizers: CommitInput['finalizers'], watermarks: ReadonlyMap<number, number>): Promise<void> {
    if (watermarks.size === 0) return;
    const wm = [...watermarks].map(([p, us]) => `(${p}, make_timestamp(${Math.floor(us)}::BIGINT))`).join(', ');
    for (const f of finalizers) {
      await this.state.run(`UPDATE ${f.target} SET is_final = true, updated_at = now()
        FROM (VALUES ${wm}) AS wm(wm_partition, wm_time)
        WHERE NOT ${f.target}.is_final AND ${f.target}.source_partition = wm.wm_partition AND (${f.finalAfter}) <= wm.wm_time`);
    }
  }
}
