/**
 * Domain types and the ports the engine talks through.
 *
 * Glossary
 * - order: one valid order event from the `orders` topic (README.md, *The order event*).
 * - event time: the order's own `timestamp`, in microseconds since the Unix epoch (UTC).
 * - watermark: per partition, the largest event time seen minus the allowed lateness.
 *   An order whose event time is below the watermark when it arrives is *late*.
 * - micro-batch: the messages the engine handles in one cycle: ingest into DuckDB,
 *   run the rules over the windows the batch touched, commit results and offsets to
 *   PostgreSQL in one transaction.
 * - replay: messages below a partition's committed offset, re-read after a restart only
 *   to rebuild window state; they never produce output twice.
 * - dead letter: a message that is not a valid order; kept with its reason, never dropped.
 */

/** A valid order, as the engine keeps it. Money is integer KRW (bigint end to end). */
export interface Order {
  orderId: string;
  /** Event time, microseconds since the Unix epoch (UTC); below 2^53 until the year 2255. */
  eventUs: number;
  userId: string;
  productId: string;
  productName: string;
  price: bigint;
  quantity: number;
  ipAddress: string;
  paymentMethod: string | null;
}

/** A message as the source hands it over, before decoding. */
export interface SourceMessage {
  topic: string;
  partition: number;
  /** Kafka offsets are int64; kept as bigint so they never lose precision. */
  offset: bigint;
  key: Buffer | null;
  value: Buffer | null;
  /** Broker timestamp (ms): when the order was produced. Used for end-to-end latency. */
  timestampMs: number;
  /** Read from a repartition topic: where the message was first read (dead letters name it). */
  origin?: { topic: string; partition: number; offset: bigint; /** The input topic's partition count. */ partitions: number };
  /** Read from a repartition topic: the hop already found this message not to be a valid order (value cut to what a dead letter keeps). */
  rejected?: { reason: string; bytes: number };
  /**
   * A watermark mark from the hop, not an order: its input partition (origin) has
   * sent every order up to this event time (µs) that will come before it here.
   */
  mark?: number;
  /** Beside a mark: the input partition has nothing more for now; the watermark stops waiting for it until it sends again. */
  idle?: boolean;
}

export interface DeadLetter {
  topic: string;
  partition: number;
  offset: bigint;
  key: Buffer | null;
  value: Buffer | null;
  reason: string;
  /** The message's size, when `value` is only its start (cut by the repartition hop). */
  bytes?: number;
}

export interface LateEvent {
  topic: string;
  partition: number;
  offset: bigint;
  order: Order;
  /** The partition's watermark when the order arrived (µs). */
  watermarkUs: number;
}

/** Where a partition stands in PostgreSQL: the next offset to produce output for. */
export interface PartitionProgress {
  partition: number;
  /** Next offset whose results are not yet committed. */
  nextOffset: bigint;
  /** Smallest offset whose order is still part of open window state (restart replays from here). */
  restoreFrom: bigint;
  /**
   * Offsets in [restoreFrom, nextOffset) that were recorded as late: a replay skips
   * them, so the rebuilt state is exactly the state before the restart.
   */
  lateOffsets: ReadonlySet<bigint>;
}

/** One row a rule produced, column name to value (bigint, number, string, Date, boolean or null). */
export type Row = Record<string, unknown>;

/** One rule's rows for one batch, column-major as DuckDB returned them. */
export interface RuleResult {
  rule: string;
  target: string;
  names: string[];
  columns: unknown[][];
  rowCount: number;
}

/** A result's rows as objects (for printing and tests; the sink uses columns). */
export function rowsOf(r: Pick<RuleResult, 'names' | 'columns' | 'rowCount'>): Row[] {
  const rows: Row[] = [];
  for (let i = 0; i < r.rowCount; i++) {
    const row: Row = {};
    r.names.forEach((n, j) => (row[n] = r.columns[j]![i]));
    rows.push(row);
  }
  return rows;
}
