/**
 * List entries operators add at run time (`fraud-sql lists add`), in PostgreSQL:
 * every process running on the schema hears of a change (NOTIFY) and applies it
 * at its next batch, as it applies an edited list file.
 */
import type { ListEntry } from '../rules/lists.js';
import type { PgSink } from './postgres.js';

/** The channel a change is announced on; its payload is the schema changed. */
export const LISTS_CHANNEL = 'fraud_sql_lists';

export async function readListEntries(sink: Pick<PgSink, 'query'>): Promise<ListEntry[]> {
  const r = await sink.query<ListEntry>('SELECT list, value, reason FROM list_entries ORDER BY list, added_at, value');
  return r.rows;
}

/** Adds (or re-reasons) an entry; true when it was not there. */
export async function addListEntry(sink: Pick<PgSink, 'transaction'>, schema: string, e: ListEntry): Promise<boolean> {
  return sink.transaction(async (c) => {
    const r = await c.query(
      `INSERT INTO list_entries (list, value, reason) VALUES ($1, $2, $3)
       ON CONFLICT (list, value) DO UPDATE SET reason = EXCLUDED.reason RETURNING (xmax = 0) AS added`,
      [e.list, e.value, e.reason],
    );
    await c.query('SELECT pg_notify($1, $2)', [LISTS_CHANNEL, schema]);
    return r.rows[0].added as boolean;
  });
}

/** Removes an entry; true when it was there. Entries of the list's file are not touched. */
export async function removeListEntry(sink: Pick<PgSink, 'transaction'>, schema: string, list: string, value: string): Promise<boolean> {
  return sink.transaction(async (c) => {
    const r = await c.query('DELETE FROM list_entries WHERE list = $1 AND value = $2', [list, value]);
    await c.query('SELECT pg_notify($1, $2)', [LISTS_CHANNEL, schema]);
    return (r.rowCount ?? 0) > 0;
  });
}
