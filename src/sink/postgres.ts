/**
 * The PostgreSQL sink: migrations, and one transaction per micro-batch holding the
 * rules' results, dead letters, late events and the consumed offsets together, so
 * results and progress can never disagree (README.md, *What fraud-sql promises*).
 */
import pg from 'pg';
import { FraudSqlError } from '../errors.js';
import { redactUrl } from '../config.js';
import type { Logger } from '../log.js';
import { retrying } from '../retry.js';
import type { PartitionProgress } from '../types.js';
import { formatMicros } from '../time.js';
import { mapPgError } from './pg-errors.js';
import { MIGRATIONS } from './schema.js';
import { carriedColumns, planTables, quote, type ExistingTable, type ResultTable } from './tables.js';
import type { Columns, CommitInput, ResultQuery, SinkPort } from '../engine/ports.js';
import type { DetectionEvidence, DetectionId } from '../alerts/evidence.js';
import { storableText } from '../text.js';
import {
  ADVANCE_PROGRESS,
  INIT_PROGRESS,
  INSERT_ALERTS,
  INSERT_DEAD_LETTERS,
  INSERT_LATE_EVENTS,
  READ_PROGRESS,
  RESET_PROGRESS,
  FORGET_LATE_FROM,
  UPDATE_WATERMARKS,
  DEAD_LETTER_PAYLOAD_MAX,
  DETECTION_COLUMNS,
  EVIDENCE_COLUMNS,
  evidenceEndsSql,
  evidenceSql,
  TOTALS_COLUMNS,
  finalizeSql,
  replaceSql,
  rowsFrom,
  upsertSql,
  watermarksFrom,
} from './sql.js';

export interface SinkOptions {
  databaseUrl: string;
  /** TLS to PostgreSQL: node-postgres' `ssl` option (false, or tls.connect options). */
  ssl?: pg.PoolConfig['ssl'];
  schema: string;
  consumerGroup: string;
  topic: string;
  logger: Logger;
  signal?: AbortSignal;
  /** Told of every retry (for metrics). */
  onRetry?: () => void;
  /** The rules' result tables, created or grown after the migrations. */
  tables?: readonly ResultTable[];
  /** Webhook URLs every new alert is delivered to (a delivery row each, in the batch's transaction). */
  alertWebhooks?: readonly string[];
  /**
   * For a command that only reads: no migration, and these tables must exist in the
   * schema (a mistyped schema is an error, not a new empty one).
   */
  readOnly?: { needs: readonly string[] };
}

/** PostgreSQL type oids of result columns, by the DuckDB type name that `read` reports. */
const PG_TYPE_NAMES: Readonly<Record<number, string>> = {
  16: 'BOOLEAN',
  20: 'BIGINT',
  21: 'SMALLINT',
  23: 'INTEGER',
  700: 'FLOAT',
  701: 'DOUBLE',
  1700: 'DECIMAL',
  1114: 'TIMESTAMP',
  1184: 'TIMESTAMP WITH TIME ZONE',
};

export class PgSink implements SinkPort {
  readonly concurrentCommit = true;
  /** The result tables the rules write, by name (see ensureTables). */
  private tables = new Map<string, ResultTable>();
  private constructor(
    private readonly pool: pg.Pool,
    private readonly opts: SinkOptions,
  ) {}

  /** Connects (retrying while PostgreSQL is unreachable), migrates, and brings the rules' tables to their definition. */
  static async open(opts: SinkOptions): Promise<PgSink> {
    const pool = new pg.Pool({
      connectionString: opts.databaseUrl,
      max: 4,
      connectionTimeoutMillis: 5_000,
      ...(opts.ssl !== undefined ? { ssl: opts.ssl } : {}),
      options: `-c search_path="${opts.schema}",public -c TimeZone=UTC`,
    });
    // An idle client whose server went away must not crash the process; the next
    // query reconnects.
    pool.on('error', (err) => opts.logger.warn('PostgreSQL connection lost', { error: err.message }));
    const sink = new PgSink(pool, opts);
    try {
      if (opts.readOnly) await sink.withRetry('connect', () => sink.expectTables(opts.readOnly!.needs));
      else await sink.withRetry('connect', () => sink.migrate());
      if (opts.tables) await sink.ensureTables(opts.tables);
    } catch (err) {
      await pool.end().catch(() => {});
      throw err;
    }
    return sink;
  }

  private async withRetry<T>(what: string, fn: () => Promise<T>): Promise<T> {
    let announced = false;
    const result = await retrying(
      async () => {
        try {
          return await fn();
        } catch (err) {
          throw mapPgError(err, this.opts.databaseUrl);
        }
      },
      {
        shouldRetry: (err) => err instanceof FraudSqlError && err.retriable,
        signal: this.opts.signal,
        onRetry: (err, attempt, waitMs) => {
          announced = true;
          this.opts.onRetry?.();
          this.opts.logger.warn(`${(err as Error).message}; retrying ${what} in ${(waitMs / 1000).toFixed(1)} s`, { attempt });
        },
      },
    );
    if (announced) this.opts.logger.info(`PostgreSQL is reachable again (${what})`);
    return result;
  }

  /** One transaction on the sink's pool (the alert publisher's claims); no retry. */
  transaction<T>(fn: (c: pg.ClientBase) => Promise<T>): Promise<T> {
    return this.tx(fn);
  }

  private async tx<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    // A checked-out client without an error listener takes the process down when
    // the server restarts; the query in flight fails and is retried instead.
    const onError = (err: Error) => this.opts.logger.warn('PostgreSQL connection lost in a transaction', { error: err.message });
    client.on('error', onError);
    let broken = false;
    try {
      await client.query('BEGIN');
      const r = await fn(client);
      await client.query('COMMIT');
      return r;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {
        broken = true;
      });
      throw err;
    } finally {
      client.off('error', onError);
      client.release(broken);
    }
  }

  private async expectTables(needs: readonly string[]): Promise<void> {
    const r = await this.pool.query('SELECT table_name FROM information_schema.tables WHERE table_schema = $1', [this.opts.schema]);
    const there = new Set(r.rows.map((row) => row.table_name as string));
    const missing = needs.filter((t) => !there.has(t));
    if (missing.length > 0) {
      throw new FraudSqlError(
        'PG_SCHEMA_MISSING',
        `schema "${this.opts.schema}" of ${redactUrl(this.opts.databaseUrl)} has no ${missing.join(', ')}: check --pg-schema, or run fraud-sql migrate (fraud-sql run does it too)`,
      );
    }
  }

  async migrate(): Promise<number> {
    const schema = `"${this.opts.schema}"`;
    return this.tx(async (c) => {
      // One migrator at a time, even with several processes starting together: the
      // lock comes first, as CREATE SCHEMA IF NOT EXISTS is not safe against a
      // concurrent one (it fails on the catalog's unique index).
      await c.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`fraud-sql-migrate:${this.opts.schema}`]);
      await c.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
      await c.query(
        `CREATE TABLE IF NOT EXISTS ${schema}.schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
      );
      const done = new Set((await c.query(`SELECT version FROM ${schema}.schema_migrations`)).rows.map((r) => r.version as number));
      let applied = 0;
      for (const m of MIGRATIONS) {
        if (done.has(m.version)) continue;
        await c.query(`SET LOCAL search_path = ${schema}`);
        await c.query(m.sql);
        await c.query(`INSERT INTO ${schema}.schema_migrations (version, name) VALUES ($1, $2)`, [m.version, m.name]);
        applied++;
      }
      return applied;
    });
  }

  /**
   * Creates the rules' result tables that do not exist and adds the columns a rule
   * added; a table already as described is left alone. A destructive change is
   * refused (TABLE_CHANGE_REFUSED, one line per table) and nothing is changed.
   */
  async ensureTables(tables: readonly ResultTable[]): Promise<void> {
    const schema = this.opts.schema;
    await this.withRetry('create result tables', () =>
      this.tx(async (c) => {
        await c.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`fraud-sql-migrate:${schema}`]);
        await c.query(`SET LOCAL search_path = "${schema}"`);
        const statements = await planTables('postgres', tables, (name) => existingTable(c, schema, name));
        for (const sql of statements) {
          this.opts.logger.info(`result tables: ${sql}`);
          await c.query(sql);
        }
      }),
    );
    this.tables = new Map(tables.map((t) => [t.name, t]));
  }

  private table(name: string): ResultTable {
    const t = this.tables.get(name);
    if (!t) throw new FraudSqlError('TABLE_UNKNOWN', `no rule defines the result table ${name}`);
    return t;
  }

  /**
   * Progress of the given partitions; a partition seen for the first time starts at
   * `startOffsets` (the earliest offset still in Kafka), so no order is skipped.
   */
  async progress(startOffsets: ReadonlyMap<number, bigint>): Promise<Map<number, PartitionProgress>> {
    const { consumerGroup, topic } = this.opts;
    const parts = [...startOffsets.keys()];
    return this.withRetry('read progress', async () => {
      await this.pool.query(INIT_PROGRESS, [consumerGroup, topic, parts, parts.map((p) => startOffsets.get(p)!.toString())]);
      const r = await this.pool.query(READ_PROGRESS, [consumerGroup, topic, parts]);
      const out = new Map<number, PartitionProgress>();
      for (const row of r.rows) {
        out.set(row.kafka_partition, {
          partition: row.kafka_partition,
          nextOffset: BigInt(row.next_offset),
          restoreFrom: BigInt(row.restore_from),
          lateOffsets: new Set((row.late_offsets as string[]).map(BigInt)),
        });
      }
      return out;
    });
  }

  /**
   * The committed rows of a rule's target for the given partitions, as the rule
   * wrote them: what result_<rule> held when the batch was committed. Rows that were
   * final and behind the state horizon at the partition's last watermark are left
   * out, as the running engine trims them; without a watermark, nothing is read.
   * Timestamps come as epoch microseconds.
   */
  async openResults(q: ResultQuery, partitions: readonly number[], horizonUs: number): Promise<Columns> {
    const { consumerGroup, topic } = this.opts;
    const t = this.table(q.target);
    const carried = carriedColumns(t, q.columns);
    const names = carried.map((c) => c.name);
    const select = carried.map((c) => (c.timestamp ? `(extract(epoch FROM ${quote(c.name)}) * 1000000)::bigint::text` : `${quote(c.name)}::text`));
    // With no watermark committed (a new partition, or progress reset by resetProgress),
    // nothing is carried: the rules start from the orders alone.
    const watermark = `(SELECT cp.watermark FROM consumer_progress cp
      WHERE cp.consumer_group = $2 AND cp.topic = $3 AND cp.kafka_partition = source_partition)`;
    const recent = q.finalAfter ? `(${q.finalAfter}) >= ${watermark} - $4 * interval '1 microsecond'` : `${watermark} IS NOT NULL`;
    return this.withRetry('read results', async () => {
      const r = await this.pool.query({
        text: `SELECT ${select.join(', ')} FROM "${q.target}" WHERE source_partition = ANY($1::integer[]) AND ${recent}`,
        values: q.finalAfter ? [partitions, consumerGroup, topic, horizonUs] : [partitions, consumerGroup, topic],
        rowMode: 'array',
      });
      return { names, types: [], columns: names.map((_, i) => r.rows.map((row: unknown[]) => row[i])), rowCount: r.rows.length };
    });
  }

  /**
   * Starts a partition over at `nextOffset` (after an offset gap, and for the demo,
   * whose offsets live in its own file): nothing before it is carried.
   */
  async resetProgress(partition: number, nextOffset: bigint): Promise<void> {
    const { consumerGroup, topic } = this.opts;
    await this.withRetry('reset progress', () =>
      this.tx(async (c) => {
        await c.query(RESET_PROGRESS, [consumerGroup, topic, partition, nextOffset.toString()]);
        await c.query(FORGET_LATE_FROM, [topic, partition, nextOffset.toString()]);
      }),
    );
  }

  /** Writes one batch atomically; retries while PostgreSQL is unreachable. */
  async commit(input: CommitInput): Promise<void> {
    await this.withRetry('commit', () => this.tx((c) => this.writeBatch(c, input)));
  }

  private async writeBatch(c: pg.PoolClient, input: CommitInput): Promise<void> {
    const { consumerGroup, topic } = this.opts;
    if (input.progress.length > 0) {
      const p = input.progress;
      const r = await c.query(ADVANCE_PROGRESS, [
        consumerGroup,
        topic,
        p.map((x) => x.partition),
        p.map((x) => x.expected.toString()),
        p.map((x) => x.next.toString()),
        p.map((x) => x.restoreFrom.toString()),
        p.map((x) => (x.watermarkUs === null ? null : formatMicros(x.watermarkUs))),
      ]);
      if (r.rowCount !== p.length) {
        throw new FraudSqlError(
          'PG_FENCED',
          `another consumer advanced partitions of ${topic} (expected offsets ${p.map((x) => `${x.partition}@${x.expected}`).join(', ')}); this batch is discarded`,
        );
      }
    }
    for (const rs of input.results) {
      if (rs.rowCount === 0) continue;
      const t = this.table(rs.target);
      const from = rowsFrom(
        'postgres',
        rs.names.map((n) => t.columns.find((c) => c.name === n)!),
      );
      if (rs.replace.length > 0) await c.query(replaceSql(t, t.name, rs.replace, from), [...rs.columns]);
      await c.query(upsertSql(t, t.name, rs.names, from, `$${rs.names.length + 1}::text`, rs.grows), [...rs.columns, rs.version]);
    }
    if (input.deadLetters.length > 0) {
      const d = input.deadLetters;
      await c.query(INSERT_DEAD_LETTERS, [
        d.map((x) => x.topic),
        d.map((x) => x.partition),
        d.map((x) => x.offset.toString()),
        // Both may quote the message: a malformed one may hold any byte.
        d.map((x) => (x.key ? storableText(x.key.toString('utf8')) : null)),
        d.map((x) => (x.value ? x.value.subarray(0, DEAD_LETTER_PAYLOAD_MAX) : null)),
        d.map((x) => x.bytes ?? x.value?.length ?? 0),
        d.map((x) => storableText(x.reason)),
      ]);
    }
    if (input.late.length > 0) {
      const l = input.late;
      await c.query(INSERT_LATE_EVENTS, [
        l.map((x) => x.topic),
        l.map((x) => x.partition),
        l.map((x) => x.offset.toString()),
        l.map((x) => x.order.orderId),
        l.map((x) => formatMicros(x.order.eventUs)),
        l.map((x) => formatMicros(x.watermarkUs)),
        l.map((x) => x.order.ipAddress),
        l.map((x) => (x.order.price * BigInt(x.order.quantity)).toString()),
      ]);
    }
    if (input.alerts.length > 0) {
      const a = input.alerts;
      await c.query(INSERT_ALERTS, [
        a.map((x) => x.id),
        a.map((x) => x.rule),
        a.map((x) => x.key),
        JSON.stringify(a.map((x) => x.payload)),
        [...(this.opts.alertWebhooks ?? [])],
      ]);
    }
    if (input.evidence.length > 0) await writeEvidence(c, input.evidence);
    await this.finalizeWith(c, input.finalizers, input.watermarks);
  }

  private async finalizeWith(c: pg.ClientBase, finalizers: CommitInput['finalizers'], watermarks: ReadonlyMap<number, number>): Promise<void> {
    if (watermarks.size === 0) return;
    const parts = [...watermarks.keys()];
    const wms = parts.map((p) => formatMicros(watermarks.get(p)!));
    for (const f of finalizers) await c.query(finalizeSql(f.target, f.finalAfter, watermarksFrom('postgres', watermarks)), [parts, wms]);
  }

  /** Closes windows on the watermark alone (input idle): no offsets move. */
  async finalize(finalizers: CommitInput['finalizers'], watermarks: ReadonlyMap<number, number>): Promise<void> {
    if (watermarks.size === 0) return;
    await this.withRetry('finalize', () =>
      this.tx(async (c) => {
        const parts = [...watermarks.keys()];
        await c.query(UPDATE_WATERMARKS, [this.opts.consumerGroup, this.opts.topic, parts, parts.map((p) => formatMicros(watermarks.get(p)!))]);
        await this.finalizeWith(c, finalizers, watermarks);
      }),
    );
  }

  async evidenceEnds(detections: readonly DetectionId[]): Promise<(string | null)[]> {
    // Retried like every read on a batch's way: an outage holds the batch, it does not fail the engine.
    const r = await this.withRetry('read evidence', () =>
      this.pool.query(evidenceEndsSql('postgres', rowsFrom('postgres', DETECTION_COLUMNS)), [
        detections.map((_, i) => i),
        detections.map((d) => d.rule),
        detections.map((d) => d.keyValue),
        detections.map((d) => d.windowStart),
      ]),
    );
    const out: (string | null)[] = detections.map(() => null);
    for (const row of r.rows) out[row.i] = row.window_end;
    return out;
  }

  /**
   * A read of the result tables for the built-in page, shaped as DuckDB returns
   * one: times as ISO-8601 UTC strings, types in DuckDB's names.
   */
  async read(sql: string, params?: readonly (string | number | null)[]): Promise<Columns> {
    const r = await this.pool.query({ text: sql, values: params ? [...params] : undefined, rowMode: 'array' });
    const types = r.fields.map((f) => PG_TYPE_NAMES[f.dataTypeID] ?? 'VARCHAR');
    const columns = r.fields.map((_, j) => r.rows.map((row: unknown[]) => (row[j] instanceof Date ? (row[j] as Date).toISOString() : row[j])));
    return { names: r.fields.map((f) => f.name), types, columns, rowCount: r.rows.length };
  }

  /**
   * Calls `onChange` for each NOTIFY on `channel` whose payload is this sink's
   * schema, and once after every (re)connection, as changes may have been missed
   * meanwhile. Holds one connection; a lost one is replaced. Returns the stopper.
   */
  listen(channel: string, onChange: () => void): () => Promise<void> {
    let client: pg.PoolClient | null = null;
    let stopped = false;
    let retry: NodeJS.Timeout | null = null;
    const onNotification = (m: pg.Notification) => m.channel === channel && m.payload === this.opts.schema && onChange();
    /** Gives the connection back, once (its error and a failed LISTEN may both ask), and forgets it. */
    const release = (c: pg.PoolClient, broken: boolean) => {
      if (client !== c) return;
      client = null;
      c.off('notification', onNotification);
      c.release(broken);
    };
    const connect = async () => {
      retry = null;
      let c: pg.PoolClient | null = null;
      try {
        c = await this.pool.connect();
        if (stopped) {
          c.release();
          return;
        }
        client = c;
        const mine = c;
        c.on('notification', onNotification);
        c.on('error', (err) => {
          this.opts.logger.warn(`listening for ${channel} lost its connection; reconnecting`, { error: err.message });
          release(mine, true);
          again();
        });
        await c.query(`LISTEN ${quote(channel)}`);
        onChange();
      } catch (err) {
        this.opts.logger.warn(`cannot listen for ${channel} (${(err as Error).message}); retrying`);
        if (c) release(c, true);
        again();
      }
    };
    const again = () => {
      if (!stopped && !retry) retry = setTimeout(() => void connect(), 2_000);
    };
    void connect();
    return async () => {
      stopped = true;
      if (retry) clearTimeout(retry);
      const c = client;
      if (c) {
        await c.query(`UNLISTEN ${quote(channel)}`).catch(() => {});
        release(c, false);
      }
    };
  }

  /** For readiness: true when a trivial query succeeds within the timeout. */
  async ping(): Promise<boolean> {
    try {
      await this.pool.query('SELECT 1');
      return true;
    } catch {
      return false;
    }
  }

  async query<R extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<pg.QueryResult<R>> {
    return this.pool.query<R>(sql, params);
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

/** A table's columns (as format_type spells their types) and unique keys, or null when there is none. */
async function existingTable(c: pg.ClientBase, schema: string, table: string): Promise<ExistingTable | null> {
  const rel = `to_regclass(quote_ident($1) || '.' || quote_ident($2))`;
  const cols = await c.query(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type FROM pg_attribute a
     WHERE a.attrelid = ${rel} AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
    [schema, table],
  );
  if (cols.rows.length === 0) return null;
  const uniques = await c.query(
    `SELECT array_agg(a.attname::text) AS cols FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
     WHERE i.indrelid = ${rel} AND i.indisunique AND i.indpred IS NULL GROUP BY i.indexrelid`,
    [schema, table],
  );
  return { columns: new Map(cols.rows.map((r) => [r.name as string, r.type as string])), uniques: uniques.rows.map((r) => r.cols as string[]) };
}

/** A batch's evidence (alerts/evidence.ts) through `query`, inside the batch's transaction. */
async function writeEvidence(c: pg.ClientBase, evidence: readonly DetectionEvidence[]): Promise<void> {
  const sql = evidenceSql('postgres', rowsFrom('postgres', TOTALS_COLUMNS), rowsFrom('postgres', EVIDENCE_COLUMNS));
  const totals = [
    evidence.map((e) => e.rule),
    evidence.map((e) => e.keyValue),
    evidence.map((e) => e.windowStart),
    evidence.map((e) => e.windowEnd),
    evidence.map((e) => e.orderCount),
  ];
  for (const statement of sql.totals) await c.query(statement, totals);
  const listed = evidence.flatMap((e) => e.orderIds.map((id, i) => ({ e, id, us: e.eventUs[i]! })));
  if (listed.length === 0) return;
  const orders = [
    listed.map((o) => o.e.rule),
    listed.map((o) => o.e.keyValue),
    listed.map((o) => o.e.windowStart),
    listed.map((o) => o.id),
    listed.map((o) => formatMicros(o.us)),
    listed.map((o) => o.e.max),
  ];
  for (const statement of sql.orders) await c.query(statement, orders);
}
