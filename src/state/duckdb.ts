/**
 * Window state in an in-process DuckDB: the retained orders that open windows still
 * need, and the current results of rules that other rules read. Rules run here.
 *
 * Tables
 * - orders: every retained order, with its Kafka partition/offset and the batch that
 *   brought it (orders replayed to rebuild state after a restart come in batches
 *   of their own, which no rule runs on).
 * - batch_orders (view): the orders of the current micro-batch.
 * - variable batch_from: no order of the current micro-batch is earlier (see setBatch).
 * - result_<rule>: current rows of a rule that another rule reads.
 */
import { DuckDBConnection, DuckDBInstance, DuckDBTimestampValue, LIST, listValue, VARCHAR, type DuckDBValue } from '@duckdb/node-api';
import { FraudSqlError } from '../errors.js';
import type { Columns, EvidenceFound, EvidenceRequest, IngestRow } from '../engine/ports.js';
import { duckTimestamp, sqlString } from '../sink/sql.js';
import { quote } from '../sink/tables.js';
import { formatMicros } from '../time.js';
import type { Precedence } from '../engine/precedence.js';

/** The columns of the retained orders' table, and of the staging table of large batches (see ingestStaged). */
const ORDER_COLUMNS = `(
  order_id        VARCHAR NOT NULL,
  event_time      TIMESTAMP NOT NULL,   -- UTC
  user_id         VARCHAR NOT NULL,
  product_id      VARCHAR NOT NULL,
  product_name    VARCHAR NOT NULL,
  price           BIGINT NOT NULL,      -- KRW
  quantity        INTEGER NOT NULL,
  ip_address      VARCHAR NOT NULL,
  payment_method  VARCHAR,
  kafka_partition INTEGER NOT NULL,
  kafka_offset    BIGINT NOT NULL,
  batch_id        BIGINT NOT NULL
)`;

/**
 * From this many orders a batch is checked for redeliveries in DuckDB, below it in
 * JavaScript: the check in DuckDB costs one more statement to plan (a few ms) and a
 * staging copy; the check in JavaScript costs the JavaScript thread per retained
 * order it reads back, and a backlog's batches of thousands keep that thread busy.
 */
const STAGED_FROM = 1_000;

/**
 * Deleted rows after which an in-memory state is checkpointed (see retain). With an
 * engine per repartition topic, each holds at most this many: together about what
 * one engine held at 250,000.
 */
const CHECKPOINT_AFTER_DELETED = 125_000;

export class DuckState {
  private deletedSinceCheckpoint = 0;
  /** See read(). */
  private readerTurn: Promise<unknown> = Promise.resolve();
  /** The last batch ingested and its earliest event time (µs), for setBatch. */
  private ingested: { batchId: number; fromUs: number } | null = null;
  /**
   * No retained order is later than this (µs): the latest event time ever ingested,
   * or found in the file at open. Retention only removes orders, so it stays a bound.
   */
  private newestUs = -Infinity;

  private constructor(
    private readonly instance: DuckDBInstance,
    readonly conn: DuckDBConnection,
    private readonly readerConn: DuckDBConnection,
    private readonly inMemory: boolean,
    /** Whose work goes before this state's statements (the per-order lane's; see Precedence). */
    private readonly yieldTo: Precedence | null,
    /** Batches of at least this many orders are checked for redeliveries in DuckDB (see ingest). */
    private readonly stagedFrom: number,
  ) {}

  /**
   * Opens the state database: `:memory:` for `run` (state is rebuilt from Kafka on
   * start), a file for `demo`. A file held by another process is named in the error.
   */
  static async open(file = ':memory:', opts: { threads?: number; yieldTo?: Precedence | null; stagedFrom?: number } = {}): Promise<DuckState> {
    let instance: DuckDBInstance;
    try {
      instance = await DuckDBInstance.create(file, {
        threads: String(opts.threads ?? 2),
        // Automatic checkpoints stall a batch for the whole write-out: checkpoint
        // only when this much WAL has built up (and on close).
        checkpoint_threshold: '1GB',
        // Memory a batch's queries freed goes back to the system past this much
        // (DuckDB's default keeps 128 MB cached per database, and run has one per engine).
        allocator_flush_threshold: '16MB',
      });
    } catch (err) {
      const msg = (err as Error).message;
      if (/lock/i.test(msg)) {
        throw new FraudSqlError('STATE_LOCKED', `the DuckDB file ${file} is in use by another process (${msg.split('\n')[0]})`, { cause: err });
      }
      throw err;
    }
    const conn = await instance.connect();
    const s = new DuckState(instance, conn, await instance.connect(), file === ':memory:', opts.yieldTo ?? null, opts.stagedFrom ?? STAGED_FROM);
    await conn.run(`CREATE TABLE IF NOT EXISTS orders ${ORDER_COLUMNS}`);
    // Earlier versions kept the staging table in the file: a crash could leave a batch in it.
    await conn.run('DROP TABLE IF EXISTS main.incoming_orders');
    const newest = (await conn.runAndReadAll('SELECT epoch_us(max(event_time)) FROM orders')).getColumns()[0]![0];
    if (newest !== null && newest !== undefined) s.newestUs = Number(newest);
    await conn.run('SET VARIABLE batch_id = 0');
    // Batch -1 stands for every retained order: a changed rule rebuilds its results from all of them.
    await conn.run("CREATE OR REPLACE VIEW batch_orders AS SELECT * FROM orders WHERE batch_id = getvariable('batch_id') OR getvariable('batch_id') = -1");
    await conn.run(`SET VARIABLE batch_from = ${EVERY_ORDER}`);
    return s;
  }

  /**
   * Appends orders and keeps the first delivery of each order: an order_id with the
   * same event time already retained, or repeated in the batch, is a redelivery and
   * is counted once. Returns how many were new.
   */
  async ingest(rows: readonly IngestRow[], batchId: number): Promise<{ inserted: number; duplicates: number }> {
    if (rows.length === 0) return { inserted: 0, duplicates: 0 };
    const range = eventTimeRange(rows);
    this.ingested = { batchId, fromUs: range.lo };
    const newest = this.newestUs;
    // Raised before the rows are in: a bound that is too high only costs a query.
    this.newestUs = Math.max(newest, range.hi);
    if (rows.length >= this.stagedFrom) return this.ingestStaged(rows, batchId, range);
    // A batch later than every retained order (a live order that came in event-time
    // order) has none of them to be a redelivery of: it skips the query, 0.5 ms of
    // DuckDB alone and 1.5-2 ms in a process fed 15 orders/s. The generator shuffles
    // each second's orders, so there only about one batch in five skips it.
    const retained = range.lo > newest ? undefined : await this.retainedDeliveries(rows, range);
    const { fresh } = firstDeliveries(rows, retained);
    // The Appender is orders of magnitude faster than INSERT statements, and planning
    // a statement costs more than appending a small batch.
    if (fresh.length > 0) await this.append('orders', fresh, batchId);
    return { inserted: fresh.length, duplicates: rows.length - fresh.length };
  }

  /**
   * ingest() for a large batch (a backlog being caught up on): the same rule, applied
   * by DuckDB. The batch is appended to a staging table and copied over without its
   * redeliveries, so the retained orders of its time range never come back to
   * JavaScript as strings: reading them costs the JavaScript thread, which a backlog
   * keeps busy, per retained order.
   */
  private async ingestStaged(rows: readonly IngestRow[], batchId: number, { lo, hi }: TimeRange): Promise<{ inserted: number; duplicates: number }> {
    // A redelivery within the batch, same id and time, is dropped here, which costs
    // JavaScript less than DuckDB's ranking of the whole batch by id (5-17 ms of a
    // 2,500-order batch). Only an id repeated with another time needs the ranking:
    // which of its deliveries is first depends on which are retained.
    const { fresh, ranked } = firstDeliveries(rows);
    const staged = ranked ? rows : fresh;
    let inserted: number;
    // A temporary table, created for the batch and dropped after it: a dropped table's
    // memory goes back at once, where deleted rows hold theirs until a checkpoint (in
    // bench:rules at 5,000 orders/s in batches of 17,647, the staged rows alone made
    // every eighth batch checkpoint: retention's p90 was 301-543 ms), and a file's WAL
    // does not write the batch twice. Replaced, not created: a table a failed DROP left
    // would otherwise fail every later batch.
    await this.turn();
    await this.conn.run(`CREATE OR REPLACE TEMP TABLE incoming_orders ${ORDER_COLUMNS}`);
    try {
      await this.append('incoming_orders', staged, batchId);
      await this.turn();
      const res = await this.conn.run(`
      INSERT INTO orders
      SELECT i.* FROM temp.incoming_orders i
      WHERE NOT EXISTS (
        SELECT 1 FROM orders o
        WHERE o.event_time BETWEEN make_timestamp(${lo}::BIGINT) AND make_timestamp(${hi}::BIGINT)
          AND o.order_id = i.order_id AND o.event_time = i.event_time)
      ${ranked ? 'QUALIFY row_number() OVER (PARTITION BY i.order_id ORDER BY i.kafka_partition, i.kafka_offset) = 1' : ''}`);
      inserted = Number(res.rowsChanged);
    } finally {
      // Dropped even when the copy failed: left there, the batch would come with the next one.
      await this.conn.run('DROP TABLE temp.incoming_orders');
    }
    return { inserted, duplicates: rows.length - inserted };
  }

  private async append(table: 'orders' | 'incoming_orders', rows: readonly IngestRow[], batchId: number): Promise<void> {
    await this.turn();
    const app = await this.conn.createAppender(table, null, table === 'incoming_orders' ? 'temp' : null);
    const batch = BigInt(batchId);
    for (const r of rows) {
      const o = r.order;
      app.appendVarchar(o.orderId);
      app.appendTimestamp(new DuckDBTimestampValue(BigInt(o.eventUs)));
      app.appendVarchar(o.userId);
      app.appendVarchar(o.productId);
      app.appendVarchar(o.productName);
      app.appendBigInt(o.price);
      app.appendInteger(o.quantity);
      app.appendVarchar(o.ipAddress);
      if (o.paymentMethod === null) app.appendNull();
      else app.appendVarchar(o.paymentMethod);
      app.appendInteger(r.partition);
      app.appendBigInt(r.offset);
      app.appendBigInt(batch);
      app.endRow();
    }
    app.flushSync();
    app.closeSync();
  }

  /**
   * Which of these orders are retained already, as "<event µs> <order_id>". A
   * redelivered order carries its original timestamp, so only retained orders in the
   * batch's event-time range can be its first delivery. The range as literals lets
   * DuckDB skip row groups by their min/max (orders arrive roughly in time order),
   * so the check does not scan the whole retained history.
   */
  private async retainedDeliveries(rows: readonly IngestRow[], { lo, hi }: TimeRange): Promise<Set<string>> {
    const sql = `SELECT epoch_us(event_time) || ' ' || order_id FROM orders
       WHERE event_time BETWEEN make_timestamp(${lo}::BIGINT) AND make_timestamp(${hi}::BIGINT)`;
    await this.turn();
    // A batch most often spans a moment of event time, which holds few retained
    // orders: all of them are read, which costs DuckDB less than matching the batch's
    // ids against them (a semi-join on a list parameter). A range holding many more
    // orders than the batch (one late order widens it) is matched by id instead, so
    // the rows read stay about the batch's.
    const most = 4 * rows.length + 100;
    const near = await this.conn.runAndReadAll(`${sql} LIMIT ${most + 1}`);
    if (near.currentRowCount <= most) return new Set(near.getColumns()[0] as string[]);
    // The ids as one list parameter, never in the SQL text: they are the producer's.
    const ids = [...new Set(rows.map((r) => r.order.orderId))];
    await this.turn();
    const r = await this.conn.runAndReadAll(`${sql} AND order_id IN (SELECT unnest($1))`, [listValue(ids)], [LIST(VARCHAR)]);
    return new Set(r.getColumns()[0] as string[]);
  }

  /**
   * The batch that batch_orders shows; -1 shows every retained order. Also sets
   * batch_from, the batch's earliest event time as ingested (redeliveries included,
   * so never later than its orders'): a constant DuckDB folds into a scan's filter,
   * so that a rule reading the retained orders near the batch (a burst's last window)
   * skips the row groups before it instead of scanning all of them.
   */
  async setBatch(batchId: number): Promise<void> {
    const from = this.ingested?.batchId === batchId && batchId !== -1 ? `make_timestamp(${Math.floor(this.ingested.fromUs)}::BIGINT)` : EVERY_ORDER;
    await this.turn();
    await this.conn.run(`SET VARIABLE batch_id = ${batchId}`);
    await this.turn();
    await this.conn.run(`SET VARIABLE batch_from = ${from}`);
  }

  /** Before each of the engine's statements: the work that goes first, if any, starts first. */
  private async turn(): Promise<void> {
    const wait = this.yieldTo?.turn();
    if (wait) await wait;
  }

  /** Runs a query ($1, $2, ... take `params`) and returns its result column-major, converted to plain values. */
  async query(sql: string, params?: readonly (string | number | null)[]): Promise<Columns> {
    await this.turn();
    const reader = await this.conn.runAndReadAll(sql, params ? [...params] : undefined);
    const names = reader.columnNames();
    const types = reader.columnTypes().map(String);
    const columns = reader.getColumns().map((col) => col.map(toPlain));
    return { names, types, columns, rowCount: reader.currentRowCount };
  }

  async run(sql: string): Promise<number> {
    await this.turn();
    const r = await this.conn.run(sql);
    return Number(r.rowsChanged);
  }

  /**
   * Drops orders no open window needs: those more than `horizonUs` behind their
   * partition's watermark. Returns how many orders are left. Orders arrive roughly in event-time order, so whole row
   * groups empty out.
   */
  async retain(watermarks: ReadonlyMap<number, number>, horizonUs: number): Promise<number> {
    if (watermarks.size === 0) return 0;
    const wm = [...watermarks].map(([p, us]) => `(${p}, make_timestamp(${Math.floor(us)}::BIGINT))`).join(', ');
    const deleted = await this.run(`WITH wm(kafka_partition, watermark) AS (VALUES ${wm})
      DELETE FROM orders o USING wm
      WHERE o.kafka_partition = wm.kafka_partition AND o.event_time < wm.watermark - to_microseconds(${horizonUs}::BIGINT)`);
    // An in-memory database only hands the memory of deleted rows back (row groups
    // of orders, the rules' result tables rewritten every batch) at a checkpoint;
    // without one, memory grows with everything ever ingested. A checkpoint takes
    // about as long as a batch, so it runs once this much has been deleted, which
    // bounds the memory held by deleted rows. For a file, the automatic checkpoint
    // does it.
    this.deletedSinceCheckpoint += deleted;
    if (this.inMemory && this.deletedSinceCheckpoint >= CHECKPOINT_AFTER_DELETED) {
      await this.turn();
      await this.conn.run('CHECKPOINT');
      this.deletedSinceCheckpoint = 0;
    }
    return this.count();
  }

  /** Per partition, the smallest offset still retained: where a restart replays from. */
  async retainedFrom(): Promise<Map<number, bigint>> {
    const r = await this.query('SELECT kafka_partition, min(kafka_offset) FROM orders GROUP BY ALL');
    const out = new Map<number, bigint>();
    for (let i = 0; i < r.rowCount; i++) out.set(Number(r.columns[0]![i]), BigInt(r.columns[1]![i] as string));
    return out;
  }

  async dropPartitions(partitions: readonly number[]): Promise<void> {
    if (partitions.length === 0) return;
    await this.run(`DELETE FROM orders WHERE kafka_partition IN (${partitions.map(Number).join(',')})`);
  }

  /** See StatePort.evidence. One query for every request; values are literals, escaped. */
  async evidence(field: string, requests: readonly EvidenceRequest[], limit: number): Promise<EvidenceFound[]> {
    const out = requests.map((): EvidenceFound => ({ orderIds: [], eventUs: [], orderCount: 0 }));
    if (requests.length === 0) return out;
    const ts = duckTimestamp;
    const rows = requests.map((r, i) => {
      const before = r.listBefore ? `${Math.floor(r.listBefore.us)}::BIGINT, ${sqlString(r.listBefore.orderId)}` : 'NULL::BIGINT, NULL::VARCHAR';
      return `(${i}, ${sqlString(r.value)}, ${ts(r.from)}, ${ts(r.to)}, ${ts(r.after ?? null)}, ${before})`;
    });
    // The same bounds as literals too, so that DuckDB skips the row groups outside them.
    const froms = requests.map((r) => r.from);
    const tos = requests.map((r) => r.to);
    const bounds = [
      `o.${quote(field)} IN (${[...new Set(requests.map((r) => sqlString(r.value)))].join(', ')})`,
      ...(froms.includes(null) ? [] : [`o.event_time >= ${ts(froms.reduce((a, b) => (a! < b! ? a : b)))}`]),
      ...(tos.includes(null) ? [] : [`o.event_time <= ${ts(tos.reduce((a, b) => (a! > b! ? a : b)))}`]),
    ];
    // Counted: every match; listed: the first `limit` of those before the request's bound.
    const r = await this.query(`
      WITH m AS (
        SELECT q.i, o.order_id, o.event_time, q.before_us, q.before_id
        FROM (VALUES ${rows.join(', ')}) AS q(i, v, t0, t1, after, before_us, before_id)
        JOIN (SELECT * FROM orders o WHERE ${bounds.join(' AND ')}) o
          ON o.${quote(field)} = q.v AND (q.t0 IS NULL OR o.event_time >= q.t0) AND (q.t1 IS NULL OR o.event_time <= q.t1)
         AND (q.after IS NULL OR o.batch_id = getvariable('batch_id') OR o.event_time > q.after)),
      counted AS (SELECT i, count(*) AS n FROM m GROUP BY i),
      listed AS (
        SELECT i, order_id, epoch_us(event_time) AS us FROM m
        WHERE before_us IS NULL OR epoch_us(event_time) < before_us OR (epoch_us(event_time) = before_us AND order_id < before_id)
        QUALIFY row_number() OVER (PARTITION BY i ORDER BY event_time, order_id) <= ${Math.max(0, Math.floor(limit))})
      SELECT c.i, c.n, l.order_id, l.us FROM counted c LEFT JOIN listed l ON l.i = c.i
      ORDER BY c.i, l.us, l.order_id`);
    for (let j = 0; j < r.rowCount; j++) {
      const e = out[Number(r.columns[0]![j])]!;
      e.orderCount = Number(r.columns[1]![j]);
      if (r.columns[2]![j] === null) continue;
      e.orderIds.push(String(r.columns[2]![j]));
      e.eventUs.push(Number(r.columns[3]![j]));
    }
    return out;
  }

  /**
   * Reads for others than the engine (the built-in page, /metrics), on a connection
   * of their own, one query at a time: a DuckDB connection runs one query at a time,
   * and a read that met the engine's query on its connection failed both (and
   * stopped the demo). They see what the batches have committed.
   */
  read(sql: string, params?: readonly (string | number | null)[]): Promise<Columns> {
    const next = this.readerTurn.then(async () => {
      const reader = await this.readerConn.runAndReadAll(sql, params ? [...params] : undefined);
      return {
        names: reader.columnNames(),
        types: reader.columnTypes().map(String),
        columns: reader.getColumns().map((col) => col.map(toPlain)),
        rowCount: reader.currentRowCount,
      };
    });
    this.readerTurn = next.catch(() => {});
    return next;
  }

  /** What DuckDB holds in memory: tables, and the buffers of queries running. */
  async memoryBytes(): Promise<number> {
    const r = await this.read('SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory()');
    return Number(r.columns[0]![0]);
  }

  async count(): Promise<number> {
    const r = await this.query('SELECT count(*) FROM orders');
    return Number(r.columns[0]![0]);
  }

  close(): void {
    this.readerConn.closeSync();
    this.conn.closeSync();
    this.instance.closeSync();
  }
}

/**
 * Of the rows whose "<event µs> <order_id>" is not `retained`, the first delivery of
 * each id by partition and offset; `ranked`: an id came at two event times, so that
 * which of its deliveries is first depends on which are retained (see ingestStaged).
 */
function firstDeliveries(rows: readonly IngestRow[], retained?: ReadonlySet<string>): { fresh: IngestRow[]; ranked: boolean } {
  const first = new Map<string, IngestRow>();
  let ranked = false;
  for (const r of rows) {
    const id = storedText(r.order.orderId);
    if (retained?.has(`${r.order.eventUs} ${id}`)) continue;
    const seen = first.get(id);
    if (seen && seen.order.eventUs !== r.order.eventUs) ranked = true;
    if (!seen || r.partition < seen.partition || (r.partition === seen.partition && r.offset < seen.offset)) first.set(id, r);
  }
  return { fresh: [...first.values()], ranked };
}

/** batch_from when the batch is every retained order (or not known). */
const EVERY_ORDER = "'-infinity'::TIMESTAMP";

interface TimeRange {
  lo: number;
  hi: number;
}

/** The earliest and the latest event time of the rows (µs). */
function eventTimeRange(rows: readonly IngestRow[]): TimeRange {
  let lo = Infinity;
  let hi = -Infinity;
  for (const r of rows) {
    if (r.order.eventUs < lo) lo = r.order.eventUs;
    if (r.order.eventUs > hi) hi = r.order.eventUs;
  }
  return { lo, hi };
}

/**
 * Text as DuckDB stores it (UTF-8): a lone UTF-16 surrogate, which JSON allows,
 * becomes U+FFFD. Ids are compared as stored, so that a redelivery of such an
 * order is still recognised.
 */
function storedText(s: string): string {
  return (s as string & { toWellFormed(): string }).toWellFormed();
}

/**
 * DuckDB values to what PostgreSQL parameters take: BIGINT/HUGEINT as decimal
 * strings (exact), timestamps as ISO-8601 UTC strings, everything else as is.
 */
export function toPlain(v: DuckDBValue): unknown {
  if (v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return v;
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof DuckDBTimestampValue) return formatMicros(v.micros);
  if (typeof v === 'object' && 'micros' in v && typeof (v as { micros: unknown }).micros === 'bigint') {
    return formatMicros((v as { micros: bigint }).micros);
  }
  return String(v);
}
