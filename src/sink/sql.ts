/**
 * Pure SQL builders. The result semantics (upsert, replace, grows, finalize) are
 * written once here, for both dialects: the PostgreSQL sink, the DuckDB sink and the
 * rules' mirrors (result_<rule>) run these same statements, so `rules test` and
 * `backtest` certify what `run` writes. They differ only in where the batch's rows
 * come from: PostgreSQL unpacks arrays passed as parameters with unnest() (one
 * round trip however many rows), DuckDB reads them from the rule's changed_<rule>
 * table. The operational statements below them are PostgreSQL's.
 */
import { quote as q, type Dialect, type ResultTable, type TableColumn } from './tables.js';

/** The most of a dead letter's payload that is kept, in both sinks. */
export const DEAD_LETTER_PAYLOAD_MAX = 65_536;

/** A string as an SQL literal (DuckDB; PostgreSQL takes parameters). */
export function sqlString(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

/**
 * The batch's rows of `columns` as a relation `u`: for PostgreSQL, unnest() of one
 * array parameter per column ($1, $2, ... in this order); for DuckDB, the table named.
 */
export function rowsFrom(d: Dialect, columns: readonly TableColumn[], duckTable?: string): string {
  if (d === 'duckdb') return `${q(duckTable!)} AS u`;
  return `unnest(${columns.map((c, i) => `$${i + 1}::${c.pg}[]`).join(', ')}) AS u(${columns.map((c) => q(c.name)).join(', ')})`;
}

/**
 * Upsert on the key. A row that is already identical is not touched, so replaying
 * a batch leaves the table exactly as it was (updated_at included). A changed row
 * is open again until the finalize step says otherwise. With `grows`, a row of the
 * same rule version is only replaced by one that has seen at least as much: a replay
 * or a restart that has seen fewer orders so far never overwrites a correct row.
 * `version` is an SQL expression (a parameter or a literal).
 */
export function upsertSql(t: ResultTable, into: string, columns: readonly string[], from: string, version: string, grows: readonly string[]): string {
  const names = columns.map(q);
  const compared = [...columns.filter((c) => !t.key.includes(c)).map(q), '"rule_version"'];
  const sets = [...compared.map((c) => `${c} = EXCLUDED.${c}`), '"updated_at" = now()'];
  if (t.finalizable) sets.push('"is_final" = false');
  const table = q(into);
  return [
    `INSERT INTO ${table} (${[...names, '"rule_version"'].join(', ')})`,
    `SELECT ${names.map((n) => `u.${n}`).join(', ')}, ${version} FROM ${from}`,
    `ON CONFLICT (${t.key.map(q).join(', ')}) DO UPDATE SET ${sets.join(', ')}`,
    `WHERE (${compared.map((c) => `${table}.${c}`).join(', ')}) IS DISTINCT FROM (${compared.map((c) => `EXCLUDED.${c}`).join(', ')})`,
    ...(grows.length > 0
      ? [
          `AND (${table}."rule_version" IS DISTINCT FROM EXCLUDED."rule_version" OR (${grows.map((g) => `EXCLUDED.${q(g)} >= ${table}.${q(g)}`).join(' AND ')}))`,
        ]
      : []),
  ].join('\n');
}

/**
 * For each value of the replace columns in a result, removes the open rows that the
 * result no longer has (for example two bursts of one IP that merged into one).
 * Final rows stay: they are history.
 */
export function replaceSql(t: ResultTable, into: string, replace: readonly string[], from: string): string {
  const cols = (names: readonly string[]) => names.map(q).join(', ');
  return [
    `DELETE FROM ${q(into)} WHERE ${t.finalizable ? 'NOT "is_final" AND ' : ''}(${cols(replace)}) IN (SELECT ${cols(replace)} FROM ${from})`,
    `AND (${cols(t.key)}) NOT IN (SELECT ${cols(t.key)} FROM ${from})`,
  ].join('\n');
}

/**
 * The watermark of each partition as a relation `wm(wm_partition, wm_time)`: for
 * PostgreSQL from the parameters $1 (partitions) and $2 (timestamps); for DuckDB
 * as literal rows.
 */
export function watermarksFrom(d: Dialect, watermarks: ReadonlyMap<number, number>): string {
  if (d === 'postgres') return 'unnest($1::integer[], $2::timestamptz[]) AS wm(wm_partition, wm_time)';
  const rows = [...watermarks].map(([p, us]) => `(${Number(p)}, make_timestamp(${Math.floor(us)}::BIGINT))`);
  return `(VALUES ${rows.join(', ')}) AS wm(wm_partition, wm_time)`;
}

/** Marks rows final once their partition's watermark passed `finalAfter`. */
export function finalizeSql(into: string, finalAfter: string, watermarks: string): string {
  return [
    `UPDATE ${q(into)} SET "is_final" = true, "updated_at" = now()`,
    `FROM ${watermarks}`,
    `WHERE NOT ${q(into)}."is_final" AND ${q(into)}."source_partition" = wm.wm_partition AND (${finalAfter}) <= wm.wm_time`,
  ].join('\n');
}

export const INSERT_DEAD_LETTERS = `
INSERT INTO dead_letters (topic, kafka_partition, kafka_offset, message_key, payload, payload_bytes, reason)
SELECT * FROM unnest($1::text[], $2::integer[], $3::bigint[], $4::text[], $5::bytea[], $6::integer[], $7::text[])
ON CONFLICT (topic, kafka_partition, kafka_offset) DO NOTHING`;

/**
 * New alerts into the outbox, each with a delivery per webhook URL ($5). An id
 * already there (a replayed batch, a restart) adds nothing: it was sent or will be.
 */
export const INSERT_ALERTS = `
WITH added AS (
  INSERT INTO alert_outbox (alert_id, rule, alert_key, payload)
  SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
  ON CONFLICT (alert_id) DO NOTHING
  RETURNING alert_id
)
INSERT INTO alert_deliveries (alert_id, url)
SELECT added.alert_id, u.url FROM added CROSS JOIN unnest($5::text[]) AS u(url)`;

export const INSERT_LATE_EVENTS = `
INSERT INTO late_events (topic, kafka_partition, kafka_offset, order_id, event_time, watermark, ip_address, total_price)
SELECT * FROM unnest($1::text[], $2::integer[], $3::bigint[], $4::text[], $5::timestamptz[], $6::timestamptz[], $7::text[], $8::bigint[])
ON CONFLICT (topic, kafka_partition, kafka_offset) DO NOTHING`;

/**
 * Advances each partition's offsets only from the offset this process expects: if
 * another process moved it (a rebalance this one has not seen yet), fewer rows
 * match and the whole batch rolls back.
 */
export const ADVANCE_PROGRESS = `
UPDATE consumer_progress p
SET next_offset = u.next_offset, restore_from = u.restore_from, watermark = u.watermark, updated_at = now()
FROM unnest($3::integer[], $4::bigint[], $5::bigint[], $6::bigint[], $7::timestamptz[])
  AS u(kafka_partition, expected, next_offset, restore_from, watermark)
WHERE p.consumer_group = $1 AND p.topic = $2 AND p.kafka_partition = u.kafka_partition AND p.next_offset = u.expected`;

export const INIT_PROGRESS = `
INSERT INTO consumer_progress (consumer_group, topic, kafka_partition, next_offset, restore_from)
SELECT $1, $2, p, o, o FROM unnest($3::integer[], $4::bigint[]) AS u(p, o)
ON CONFLICT DO NOTHING`;

/**
 * A partition starts over at $4: no watermark (so no results are carried), and the
 * late events recorded at or after $4 no longer describe the orders there (a
 * recreated topic reuses its offsets), so a replay must not skip those offsets.
 */
export const RESET_PROGRESS = `
INSERT INTO consumer_progress (consumer_group, topic, kafka_partition, next_offset, restore_from) VALUES ($1, $2, $3, $4, $4)
ON CONFLICT (consumer_group, topic, kafka_partition) DO UPDATE SET next_offset = $4, restore_from = $4, watermark = NULL, updated_at = now()`;

export const FORGET_LATE_FROM = `DELETE FROM late_events WHERE topic = $1 AND kafka_partition = $2 AND kafka_offset >= $3`;

export const READ_PROGRESS = `
SELECT p.kafka_partition, p.next_offset::text, p.restore_from::text,
       coalesce((SELECT array_agg(l.kafka_offset::text) FROM late_events l
                 WHERE l.topic = p.topic AND l.kafka_partition = p.kafka_partition
                   AND l.kafka_offset >= p.restore_from AND l.kafka_offset < p.next_offset), '{}') AS late_offsets
FROM consumer_progress p
WHERE p.consumer_group = $1 AND p.topic = $2 AND p.kafka_partition = ANY($3::integer[])`;

export const UPDATE_WATERMARKS = `
UPDATE consumer_progress p SET watermark = u.wm
FROM unnest($3::integer[], $4::timestamptz[]) AS u(kafka_partition, wm)
WHERE p.consumer_group = $1 AND p.topic = $2 AND p.kafka_partition = u.kafka_partition
  AND p.watermark IS DISTINCT FROM u.wm`;
