/**
 * Evidence: the orders behind each detection, so that an analyst (`fraud-sql
 * explain`, the built-in page) sees which orders made it. Per detection (rule, key
 * value, window start), detection_evidence keeps the first `max` of its orders by
 * event time and detection_totals counts them all, both written in the batch's own
 * transaction with its results.
 *
 * Exact for a burst longer than the orders kept. A new detection counts and lists
 * every retained order of it: none older is in it yet. After that, each batch that
 * changes it adds the orders it had not counted: those the batch brought (a late
 * order may land inside it) and those past the window end counted so far (the
 * burst grew over orders of earlier batches). Batches are committed once, with
 * their offsets; orders replayed after a restart come in batches of their own,
 * which are never output. The sink adds the counts and keeps
 * the first `max` orders of all it was given. Where a detection counted up to is
 * remembered from the batches made here, and read from the sink for a detection
 * this process has not made yet (a restart, a moved partition). Once this process
 * has listed `max` orders of a detection, a later order than all of them cannot be
 * among its first `max`: it is counted, not listed (a bot buying for hours costs
 * its count, not a row per order).
 *
 * A detection keyed by the order itself (a high-value order) is its own evidence:
 * its row is the order, so nothing more is written for it.
 */
import type { Columns, ResultSet, SinkPort, StatePort } from '../engine/ports.js';
import { PARTITION_COLUMN } from '../sink/tables.js';
import { detectionRows } from './alert.js';

/** The orders a detection keeps as evidence, when its rule does not say. */
export const EVIDENCE_DEFAULT_MAX = 100;

/** How a rule's detections record their orders. */
export interface EvidenceSpec {
  /** The key columns that name the detected thing (without the partition and the window start). */
  keyColumns: string[];
  /** The key column that is an order field: the evidence is the orders with its value in the row's window. */
  field: string;
  /** Orders kept per detection, the first by event time. */
  max: number;
}

/** What names one detection. */
export interface DetectionId {
  rule: string;
  keyValue: string;
  windowStart: string | null;
}

/** What one batch adds to one detection's evidence. */
export interface DetectionEvidence extends DetectionId {
  windowEnd: string | null;
  max: number;
  /** Orders the detection had not counted yet: all of them for a new one. */
  orderCount: number;
  /** The first `max` of those by event time. */
  orderIds: string[];
  eventUs: number[];
}

/**
 * The `-- evidence:` header: how many orders a detection keeps ("100"), or "off".
 * Returns the number (null for off) or a message.
 */
export function parseEvidenceHeader(value: string): number | null | string {
  const v = value.trim();
  if (/^off$/i.test(v)) return null;
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 10_000) return `evidence reads a number of orders from 1 to 10000 (e.g. "100"), or "off"; not "${v}"`;
  return Number(v);
}

/**
 * The spec for a rule keyed by `key`, keeping `max` orders; a message when the key
 * names no order field, null when it is keyed by the order itself.
 */
export function evidenceSpec(key: readonly string[], orderFields: readonly string[], max: number): EvidenceSpec | null | string {
  const keyColumns = key.filter((k) => k !== PARTITION_COLUMN && k !== 'window_start');
  const field = keyColumns.find((k) => orderFields.includes(k));
  if (field === undefined) return `evidence: the key (${key.join(', ')}) names no order field whose orders could be listed (one of: ${orderFields.join(', ')})`;
  if (field === 'order_id') return null;
  return { keyColumns, field, max };
}

/**
 * Identifiers seen lately, with a value: two generations of `size`, the older
 * dropped whole when the newer is full, so each call is constant time. (Evicting
 * one by one from the front of a Map makes V8 skip the deleted entries on every call.)
 */
export class RecentMap<V> {
  private newer = new Map<string, V>();
  private older = new Map<string, V>();

  constructor(private readonly size: number) {}

  get(id: string): V | undefined {
    return this.newer.get(id) ?? this.older.get(id);
  }

  has(id: string): boolean {
    return this.newer.has(id) || this.older.has(id);
  }

  set(id: string, value: V): void {
    this.newer.set(id, value);
    if (this.newer.size >= this.size) {
      this.older = this.newer;
      this.newer = new Map();
    }
  }

  clear(): void {
    this.newer.clear();
    this.older.clear();
  }
}

const identity = (d: DetectionId) => JSON.stringify([d.rule, d.keyValue, d.windowStart]);

/** What this process knows of one detection's evidence. */
interface Counted {
  /** The window end its count covers once the batches made so far commit; null: none committed. */
  end: string | null;
  /** Orders listed by this process, and the latest of them (by event time, then order_id). */
  listed: number;
  latest: { us: number; orderId: string } | null;
}

const later = (a: { us: number; orderId: string }, b: { us: number; orderId: string }) => a.us > b.us || (a.us === b.us && a.orderId > b.orderId);

/** The engine's evidence step, run after the rules while the batch's orders are in the state. */
export class EvidenceStage {
  /** Per detection, as the batches made so far leave it once committed (they commit in order; a failed one resets the engine). */
  private counted = new RecentMap<Counted>(50_000);

  constructor(
    private readonly state: Pick<StatePort, 'evidence'>,
    private readonly sink: Pick<SinkPort, 'evidenceEnds'>,
  ) {}

  async evidence(results: readonly ResultSet[]): Promise<DetectionEvidence[]> {
    const out: DetectionEvidence[] = [];
    for (const rs of results) {
      const spec = rs.evidence;
      if (!spec || rs.rowCount === 0) continue;
      const rows = detectionRows(rs, spec.keyColumns, spec.field).filter((d) => d.evidenceValue !== null);
      const ids = rows.map((d) => identity({ rule: rs.rule, ...d }));
      // Read here, not from the map after filling it: a batch of many new detections may evict its own.
      const known = ids.map((id) => this.counted.get(id));
      const unknown = rows.flatMap((d, i) => (known[i] ? [] : [{ i, rule: rs.rule, keyValue: d.keyValue, windowStart: d.windowStart }]));
      if (unknown.length > 0) {
        const ends = await this.sink.evidenceEnds(unknown);
        unknown.forEach((d, j) => (known[d.i] = { end: ends[j]!, listed: 0, latest: null }));
      }
      const found = await this.state.evidence(
        spec.field,
        rows.map((d, i) => ({
          value: d.evidenceValue!,
          from: d.windowStart,
          to: d.windowEnd,
          after: known[i]!.end,
          listBefore: known[i]!.listed >= spec.max ? known[i]!.latest : null,
        })),
        spec.max,
      );
      rows.forEach((d, i) => {
        const { keyValue, windowStart, windowEnd } = d;
        const f = found[i]!;
        out.push({ rule: rs.rule, keyValue, windowStart, windowEnd, max: spec.max, ...f });
        const k = known[i]!;
        const last = f.orderIds.length > 0 ? { us: f.eventUs.at(-1)!, orderId: f.orderIds.at(-1)! } : null;
        this.counted.set(ids[i]!, {
          end: windowEnd,
          listed: k.listed + f.orderIds.length,
          latest: last && (k.latest === null || later(last, k.latest)) ? last : k.latest,
        });
      });
    }
    return out;
  }

  /** After the partitions change or a batch fails: what was counted is read from the sink again. */
  forget(): void {
    this.counted.clear();
  }
}

/** One detection's evidence as a sink holds it. */
export interface StoredEvidence {
  /** Every order of the detection. */
  orderCount: number;
  /** The first of them by event time, as many as the rule keeps. */
  orders: { orderId: string; eventTime: string }[];
}

/**
 * Reads one detection's evidence from the sink's tables (PostgreSQL, or the demo's
 * DuckDB: the same SQL); null when none was recorded. Times are ISO-8601 UTC.
 */
export async function readEvidence(
  reader: { read(sql: string, params?: readonly (string | number | null)[]): Promise<Columns> },
  d: DetectionId,
): Promise<StoredEvidence | null> {
  // To the millisecond: a time read back through node-postgres (a Date) has no more.
  const where =
    "rule = $1 AND key_value = $2 AND date_trunc('milliseconds', window_start) IS NOT DISTINCT FROM date_trunc('milliseconds', CAST($3 AS TIMESTAMP))";
  const params = [d.rule, d.keyValue, d.windowStart === null ? null : d.windowStart.replace(/Z$/, '')];
  const total = await reader.read(`SELECT order_count FROM detection_totals WHERE ${where}`, params);
  if (total.rowCount === 0) return null;
  const orders = await reader.read(`SELECT order_id, event_time FROM detection_evidence WHERE ${where}`, params);
  const listed = orders.columns[0]!.map((id, i) => ({ orderId: String(id), eventTime: String(orders.columns[1]![i]) }));
  // Ties by order_id in byte order, as the engine keeps them, whatever the database's collation.
  listed.sort(
    (a, b) =>
      Date.parse(a.eventTime) - Date.parse(b.eventTime) ||
      (a.eventTime < b.eventTime ? -1 : a.eventTime > b.eventTime ? 1 : 0) ||
      (a.orderId < b.orderId ? -1 : a.orderId > b.orderId ? 1 : 0),
  );
  return { orderCount: Number(total.columns[0]![0]), orders: listed };
}
