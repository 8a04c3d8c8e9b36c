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

/** An ISO-8601 UTC time (as result rows hold them) as a DuckDB TIMESTAMP literal (UTC, no zone); null as a typed NULL. */
export function duckTimestamp(iso: string | null): string {
  return iso === null ? 'NULL::TIMESTAMP' : `${sqlString(iso.replace(/Z$/, ''))}::TIMESTAMP`;
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

/** What names a detection (alerts/evidence.ts DetectionId). */
const DETECTION_ID: readonly TableColumn[] = [
  { name: 'rule', pg: 'text', duck: 'VARCHAR' },
  { name: 'key_value', pg: 'text', duck: 'VARCHAR' },
  { name: 'window_start', pg: 'timestamptz', duck: 'TIMESTAMP' },
];

/** What a batch adds to its detections' counts, as rowsFrom() takes it. */
export const TOTALS_COLUMNS: readonly TableColumn[] = [
  ...DETECTION_ID,
  { name: 'window_end', pg: 'timestamptz', duck: 'TIMESTAMP' },
  { name: 'order_count', pg: 'bigint', duck: 'BIGINT' },
];

/** The batch's evidence orders, with the most their detection keeps. */
export const EVIDENCE_COLUMNS: readonly TableColumn[] = [
  ...DETECTION_ID,
  { name: 'order_id', pg: 'text', duck: 'VARCHAR' },
  { name: 'event_time', pg: 'timestamptz', duck: 'TIMESTAMP' },
  { name: 'max_orders', pg: 'integer', duck: 'INTEGER' },
];

/** The detections asked about (SinkPort.evidenceEnds), numbered from 0. */
export const DETECTION_COLUMNS: readonly TableColumn[] = [{ name: 'i', pg: 'integer', duck: 'INTEGER' }, ...DETECTION_ID];

/** A window start where a missing one equals itself (PostgreSQL: as the detection_*_key indexes have it). */
const windowOf = (d: Dialect, rel: string) => `coalesce(${rel}.window_start, ${d === 'postgres' ? "'-infinity'::timestamptz" : "'-infinity'::TIMESTAMP"})`;

/** Ties by order_id compare bytes, as DuckDB and the engine do, whatever the database's collation. */
export const byteOrder = (d: Dialect) => (d === 'postgres' ? ' COLLATE "C"' : '');

/** Whether `a` and `b` name the same detection. */
function sameDetection(d: Dialect, a: string, b: string): string {
  return `${a}.rule = ${b}.rule AND ${a}.key_value = ${b}.key_value AND ${windowOf(d, a)} = ${windowOf(d, b)}`;
}

/** Where each detection of `detections` (DETECTION_COLUMNS) counted its evidence up to: rows (i, window_end). */
export function evidenceEndsSql(d: Dialect, detections: string): string {
  // As text to the microsecond (a Date would keep milliseconds): later orders are those after it.
  const end = d === 'postgres' ? `to_char(t.window_end AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')` : 't.window_end';
  return `SELECT u.i, ${end} AS window_end FROM ${detections} JOIN detection_totals t ON ${sameDetection(d, 't', 'u')}`;
}

/**
 * A batch's evidence (alerts/evidence.ts), in order: the counts grow by what the
 * batch adds, new detections start; a detection of the same key that now lies
 * inside another (two bursts merged) is dropped, its orders counted by the one it
 * joined; the orders are added, and each detection keeps its first `max_orders` by
 * event time. `totals` and `orders` are relations `u` of TOTALS_COLUMNS and
 * EVIDENCE_COLUMNS.
 */
export function evidenceSql(d: Dialect, totals: string, orders: string): { totals: string[]; orders: string[] } {
  const merged = (table: string) =>
    `DELETE FROM ${table} WHERE (rule, key_value, window_start) IN (
       SELECT t.rule, t.key_value, t.window_start FROM ${table} t JOIN (SELECT * FROM ${totals}) u
       ON t.rule = u.rule AND t.key_value = u.key_value AND t.window_start > u.window_start AND t.window_start <= u.window_end)`;
  return {
    totals: [
      `UPDATE detection_totals SET order_count = detection_totals.order_count + u.order_count, window_end = u.window_end, updated_at = now()
       FROM ${totals} WHERE ${sameDetection(d, 'detection_totals', 'u')}`,
      `INSERT INTO detection_totals (rule, key_value, window_start, window_end, order_count)
       SELECT u.rule, u.key_value, u.window_start, u.window_end, u.order_count FROM ${totals}
       WHERE NOT EXISTS (SELECT 1 FROM detection_totals t WHERE ${sameDetection(d, 't', 'u')})`,
      merged('detection_totals'),
      merged('detection_evidence'),
    ],
    orders: [
      `INSERT INTO detection_evidence (rule, key_value, window_start, order_id, event_time)
       SELECT u.rule, u.key_value, u.window_start, u.order_id, u.event_time FROM ${orders}
       WHERE NOT EXISTS (SELECT 1 FROM detection_evidence e WHERE ${sameDetection(d, 'e', 'u')} AND e.event_time = u.event_time AND e.order_id = u.order_id)`,
      `DELETE FROM detection_evidence WHERE (rule, key_value, ${windowOf(d, 'detection_evidence')}, event_time, order_id) IN (
         SELECT r.rule, r.key_value, ${windowOf(d, 'r')}, r.event_time, r.order_id FROM (
           SELECT e.rule, e.key_value, e.window_start, e.event_time, e.order_id, c.max_orders,
                  row_number() OVER (PARTITION BY e.rule, e.key_value, e.window_start ORDER BY e.event_time, e.order_id${byteOrder(d)}) AS rn
           FROM detection_evidence e
           JOIN (SELECT DISTINCT u.rule, u.key_value, u.window_start, u.max_orders FROM ${orders}) c ON ${sameDetection(d, 'e', 'c')}
         ) r WHERE r.rn > r.max_orders)`,
    ],
  };
}

export const INSERT_DEAD_LETTERS = `
INSERT INTO dead_letters (topic, kafka_partition, kafka_offset, message_key, payload, payload_bytes, reason)
SELECT * FROM unnest($1::text[], $2::integer[], $3::bigint[], $4::text[], $5::bytea[], $6::integer[], $7::text[])
ON CONFLICT (topic, kafka_partition, kafka_offset) DO NOTHING`;

/**
 * New alerts into the outbox, each with a delivery per webhook URL ($5). An id
 * already there (a replayed batch, a restart) adds nothing: it was sent or will be.
 * The payloads ($4) come as one JSON array of strings, not a text[]: node-postgres
 * escapes each element of an array in JavaScript, and a payload (JSON itself, about
 * 500 characters) is full of quotes; JSON.stringify escapes them natively. A payload
 * is JSON.stringify output, so it holds no lone surrogate, which PostgreSQL's JSON
 * parser would refuse.
 */
export const INSERT_ALERTS = `
WITH added AS (
  INSERT INTO alert_outbox (alert_id, rule, alert_key, payload)
  SELECT * FROM ROWS FROM (unnest($1::text[]), unnest($2::text[]), unnest($3::text[]), json_array_elements_text($4::json))
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

/**
 * Advances watermarks without moving offsets (windows closed by the clock alone).
 * Never lowers one: an instance stopping after its partition moved still finalizes
 * what it holds, and the new owner may have committed past it already.
 */
export const UPDATE_WATERMARKS = `
UPDATE consumer_progress p SET watermark = u.wm
FROM unnest($3::integer[], $4::timestamptz[]) AS u(kafka_partition, wm)
WHERE p.consumer_group = $1 AND p.topic = $2 AND p.kafka_partition = u.kafka_partition
  AND (p.watermark IS NULL OR p.watermark < u.wm)`;
