/**
 * Pure SQL builders for the PostgreSQL sink: one statement per table per batch,
 * with the rows passed as arrays and unpacked by unnest() (one round trip however
 * many rows). Executed by sink/postgres.ts.
 */

export interface Column {
  name: string;
  pgType: string;
}

const q = (ident: string) => `"${ident.replace(/"/g, '""')}"`;

/**
 * Upsert on the key. A row that is already identical is not touched, so replaying
 * a batch leaves the table exactly as it was (updated_at included). A changed row
 * is open again until the finalize step says otherwise. With `grows`, a row of the
 * same rule version is only replaced by one that has seen at least as much.
 */
export function upsertSql(table: string, columns: readonly Column[], key: readonly string[], finalizable: boolean, grows: readonly string[] = []): string {
  const names = columns.map((c) => q(c.name));
  const arrays = columns.map((c, i) => `$${i + 1}::${c.pgType}[]`);
  const versionParam = `$${columns.length + 1}`;
  const nonKey = columns.filter((c) => !key.includes(c.name)).map((c) => q(c.name));
  const compared = [...nonKey, '"rule_version"'];
  const sets = [...compared.map((c) => `${c} = EXCLUDED.${c}`), '"updated_at" = now()'];
  if (finalizable) sets.push('"is_final" = false');
  return [
    `INSERT INTO ${q(table)} (${[...names, '"rule_version"'].join(', ')})`,
    `SELECT u.*, ${versionParam}::text FROM unnest(${arrays.join(', ')}) AS u(${names.join(', ')})`,
    `ON CONFLICT (${key.map(q).join(', ')}) DO UPDATE SET ${sets.join(', ')}`,
    `WHERE (${compared.map((c) => `${q(table)}.${c}`).join(', ')}) IS DISTINCT FROM (${compared.map((c) => `EXCLUDED.${c}`).join(', ')})`,
    ...(grows.length > 0
      ? [
          `AND (${q(table)}."rule_version" IS DISTINCT FROM EXCLUDED."rule_version" OR (${grows.map((g) => `EXCLUDED.${q(g)} >= ${q(table)}.${q(g)}`).join(' AND ')}))`,
        ]
      : []),
  ].join('\n');
}

/**
 * For each value of the replace columns in a result, removes the open rows that the
 * result no longer has (for example two bursts of one IP that merged into one).
 * Parameters: the replace columns' arrays, then the key columns' arrays.
 */
export function replaceSql(table: string, replace: readonly Column[], key: readonly Column[]): string {
  const r = replace.map((c, i) => `$${i + 1}::${c.pgType}[]`);
  const k = key.map((c, i) => `$${replace.length + i + 1}::${c.pgType}[]`);
  return [
    `DELETE FROM ${q(table)} WHERE NOT "is_final"`,
    `AND (${replace.map((c) => q(c.name)).join(', ')}) IN (SELECT * FROM unnest(${r.join(', ')}))`,
    `AND (${key.map((c) => q(c.name)).join(', ')}) NOT IN (SELECT * FROM unnest(${k.join(', ')}))`,
  ].join('\n');
}

/** Marks rows final once their partition's watermark passed `finalAfter`. Params: partitions, watermarks. */
export function finalizeSql(table: string, finalAfter: string): string {
  return [
    `UPDATE ${q(table)} SET "is_final" = true, "updated_at" = now()`,
    `FROM unnest($1::integer[], $2::timestamptz[]) AS wm(wm_partition, wm_time)`,
    `WHERE NOT ${q(table)}."is_final" AND ${q(table)}."source_partition" = wm.wm_partition AND (${finalAfter}) <= wm.wm_time`,
  ].join('\n');
}

export const INSERT_DEAD_LETTERS = `
INSERT INTO dead_letters (topic, kafka_partition, kafka_offset, message_key, payload, payload_bytes, reason)
SELECT * FROM unnest($1::text[], $2::integer[], $3::bigint[], $4::text[], $5::bytea[], $6::integer[], $7::text[])
ON CONFLICT (topic, kafka_partition, kafka_offset) DO NOTHING`;

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
