/**
 * `--console`: a detection log. A line is printed when something is detected, not
 * for every batch, so that a shop at 15 orders/s with a bot running reads as a
 * handful of lines a minute:
 *
 * - a high-value order: one line per order (any rule writing high_value_orders),
 *   the first HIGH_VALUE_LINES between two window summaries: with the shop's
 *   catalogue about 40% of orders reach 500,000 KRW, so beyond those the summary
 *   counts the rest (all of them are in high_value_orders);
 * - a burst (any rule writing suspicious_ips): one line when it is first seen, one
 *   each time its order count passes a step of 10, 20, 50, 100, 200, 500, 1000, ...
 *   (1-2-5 per power of ten: a bot that never stops prints about three lines per
 *   tenfold growth), and one when it ends: BURST_QUIET of event time without a hot
 *   order, the moment the built-in rule's row becomes final with its default window;
 * - a window (realtime_stats_partial rows, 30 s by default): one summary line once every
 *   partition's watermark has passed its end, summed over partitions as the
 *   realtime_stats view does, with the high-value orders not listed, dead letters
 *   and late events since the previous summary.
 *
 * Everything comes from engine events: rule rows from 'batch:end', watermarks from
 * 'batch:end' and 'finalized' (windows closed while input is idle), assignments
 * from 'assigned'. Order fields are the producer's: everything printed goes
 * through `safe`.
 */
import type { BatchStats, EngineEmitter } from './engine/events.js';
import { parseEventTime } from './time.js';
import { rowsOf, type Row } from './types.js';

const SECOND_US = 1_000_000;
/** A burst without a hot order for this long (event time) is reported as ended. */
const BURST_QUIET_US = 60 * SECOND_US;
/**
 * An ended burst is remembered this long after its last order, so that a rule
 * re-emitting it unchanged (a burst rule does while its key stays busy and the row
 * is in its state, about 3 minutes for the built-in ones) is not announced again.
 */
const BURST_MEMORY_US = 10 * 60 * SECOND_US;

/** High-value orders listed one by one between two window summaries. */
const HIGH_VALUE_LINES = 10;

/**
 * Control characters (an escape sequence can clear, retitle or redraw the
 * terminal; a line break forges a line), Unicode line separators and bidi
 * overrides (text that reads other than it is) are written as \u{..}; a backslash
 * as \\, so what is printed reads back unambiguously.
 */
const UNSAFE = /[\\\p{Cc}\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/gu;

export function safe(v: unknown): string {
  return String(v).replace(UNSAFE, (c) => (c === '\\' ? '\\\\' : `\\u{${c.codePointAt(0)!.toString(16)}}`));
}

/** Free text (names, ids) in quotes, so spaces and quotes in it cannot blur the fields. */
const quoted = (v: unknown) => `"${safe(v).replace(/"/g, '\\"')}"`;

/** Money arrives as an exact decimal string (BIGINT); it stays exact. */
const won = (v: unknown) => `${BigInt(String(v)).toLocaleString('en-US')} KRW`;

const micros = (v: unknown): number => {
  const us = parseEventTime(String(v), 'UTC');
  if (typeof us !== 'number') throw new Error(us);
  return us;
};

const dateTime = (us: number) => new Date(us / 1000).toISOString().slice(0, 19).split('T') as [string, string];

/** `2025-12-30 12:00:40 UTC` */
function at(us: number): string {
  return `${dateTime(us).join(' ')} UTC`;
}

/** `2025-12-30 12:00:05 to 12:01:04 UTC` (the date once when both ends share it). */
function span(fromUs: number, toUs: number): string {
  const [fromDate, fromTime] = dateTime(fromUs);
  const [toDate, toTime] = dateTime(toUs);
  return `${fromDate} ${fromTime} to ${toDate === fromDate ? '' : toDate + ' '}${toTime} UTC`;
}

/** `1 order`, `1,250 orders` */
const plural = (n: number | bigint, noun: string) => `${n.toLocaleString('en-US')} ${noun}${n === 1 || n === 1n ? '' : 's'}`;

/** The largest of 10, 20, 50, 100, 200, 500, ... not above `n` (0 below 10). */
export function step(n: number): number {
  let s = 0;
  for (let p = 10; p <= n; p *= 10) for (const m of [1, 2, 5]) if (m * p <= n) s = m * p;
  return s;
}

interface Burst {
  rule: string;
  partition: number;
  ip: string;
  startUs: number;
  endUs: number;
  count: number;
  spent: string;
  printed: number;
  ended: boolean;
}

/**
 * What a window summary reports since the previous one, shared by every engine of
 * a process: the per-order lane's high-value orders and the input's dead letters
 * are counted where the windows are not.
 */
class SinceSummary {
  deadLetters = 0;
  late = 0;
  highValueListed = 0;
  highValueUnlisted = 0;
}

class DetectionLog {
  private readonly watermarks = new Map<number, number>();
  private readonly bursts = new Map<string, Burst>();
  /** stat_time (µs) -> the rule and, per partition, its latest row for the window. */
  private readonly windows = new Map<number, { rule: string; rows: Map<number, Row> }>();
  /** Windows up to here are printed; a later update of one (a recount) is not news. */
  private closedThrough = -Infinity;
  /** The engine's partitions; null until it says (then the ones heard from). */
  private assignment: ReadonlySet<number> | null = null;

  constructor(
    private readonly write: (line: string) => void,
    private readonly since: SinceSummary,
    private readonly countsInput: boolean,
  ) {}

  batch(b: BatchStats): void {
    for (const p of b.partitions) if (p.watermarkUs !== null) this.watermarks.set(p.partition, p.watermarkUs);
    this.since.deadLetters += b.deadLetters;
    // Every engine skips a late order; the one reading the input counts it.
    if (this.countsInput) this.since.late += b.late;
    for (const r of b.results) {
      const rows = rowsOf(r);
      if (r.target === 'high_value_orders') for (const row of rows) this.highValue(r.rule, row);
      else if (r.target === 'suspicious_ips') this.burstRows(r.rule, rows);
      else if (r.target === 'realtime_stats_partial') for (const row of rows) this.windowRow(r.rule, row);
      // popular_products_partial is a ranking, not a detection: the dashboard shows it.
    }
    this.close();
  }

  finalized(watermarks: ReadonlyMap<number, number>): void {
    for (const [p, w] of watermarks) this.watermarks.set(p, w);
    this.close();
  }

  /** Partitions that moved to another process are its business now. */
  assigned(partitions: readonly number[]): void {
    const kept = new Set(partitions);
    this.assignment = kept;
    for (const p of this.watermarks.keys()) if (!kept.has(p)) this.watermarks.delete(p);
    for (const [k, b] of this.bursts) if (!kept.has(b.partition)) this.bursts.delete(k);
    for (const [t, w] of this.windows) {
      for (const p of w.rows.keys()) if (!kept.has(p)) w.rows.delete(p);
      if (w.rows.size === 0) this.windows.delete(t);
    }
  }

  private highValue(rule: string, row: Row): void {
    if (this.since.highValueListed === HIGH_VALUE_LINES) {
      this.since.highValueUnlisted++;
      return;
    }
    this.since.highValueListed++;
    this.write(
      `[${safe(rule)}] order ${quoted(row.order_id)} ${quoted(row.product_name)} x${safe(row.quantity)} = ${won(row.total_price)}` +
        ` from ${safe(row.ip_address)} at ${at(micros(row.order_time))}`,
    );
  }

  /**
   * A burst rule returns every open row of each IP it touched: one of those IPs'
   * rows missing from the result was merged into another (the rule's `replace`).
   */
  private burstRows(rule: string, rows: Row[]): void {
    const seen = new Set<string>();
    const ips = new Set<string>();
    for (const row of rows) {
      const partition = Number(row.source_partition);
      const ip = String(row.ip_address);
      const key = JSON.stringify([rule, partition, ip, String(row.window_start)]);
      seen.add(key);
      ips.add(JSON.stringify([rule, partition, ip]));
      const orders = Number(row.order_count);
      const now: Burst = {
        rule,
        partition,
        ip,
        startUs: micros(row.window_start),
        endUs: micros(row.window_end),
        count: orders,
        spent: String(row.total_spent),
        printed: orders,
        ended: false,
      };
      const before = this.bursts.get(key);
      if (!before) {
        this.bursts.set(key, now);
        this.burstLine(now, 'new burst');
      } else if (orders > before.count && (before.ended || step(orders) > step(before.printed))) {
        this.bursts.set(key, now);
        this.burstLine(now, before.ended ? 'burst resumed' : `burst passed ${step(orders)} orders`);
      } else {
        this.bursts.set(key, { ...now, printed: before.printed, ended: before.ended });
      }
    }
    for (const [key, b] of this.bursts) {
      if (!seen.has(key) && ips.has(JSON.stringify([b.rule, b.partition, b.ip]))) this.bursts.delete(key);
    }
  }

  private burstLine(b: Burst, what: string): void {
    this.write(`[${safe(b.rule)}] ${safe(b.ip)} ${what}: ${plural(b.count, 'order')}, ${won(b.spent)}, ${span(b.startUs, b.endUs)}`);
  }

  private windowRow(rule: string, row: Row): void {
    const t = micros(row.stat_time);
    if (t <= this.closedThrough) return;
    let w = this.windows.get(t);
    if (!w) this.windows.set(t, (w = { rule, rows: new Map() }));
    w.rows.set(Number(row.source_partition), row);
  }

  private close(): void {
    for (const [key, b] of this.bursts) {
      const wm = this.watermarks.get(b.partition);
      if (wm === undefined) continue;
      if (!b.ended && wm >= b.endUs + BURST_QUIET_US) {
        b.ended = true;
        this.burstLine(b, 'burst ended');
      }
      if (b.ended && wm >= b.endUs + BURST_MEMORY_US) this.bursts.delete(key);
    }
    if (this.watermarks.size === 0) return;
    // A window closes when every partition is past it. Catching up, one partition's
    // batches come before the others': its watermark alone printed their windows
    // early, with only its own share of the orders.
    const partitions = [...(this.assignment ?? this.watermarks.keys())];
    if (partitions.some((p) => !this.watermarks.has(p))) return;
    const low = Math.min(...partitions.map((p) => this.watermarks.get(p)!));
    for (const t of [...this.windows.keys()].sort((a, b) => a - b)) {
      if (t > low) break;
      this.summary(t, this.windows.get(t)!);
      this.windows.delete(t);
      this.closedThrough = t;
    }
  }

  private summary(statUs: number, w: { rule: string; rows: Map<number, Row> }): void {
    let orders = 0n;
    let sales = 0n;
    let suspicious = 0;
    for (const r of w.rows.values()) {
      orders += BigInt(String(r.total_orders));
      sales += BigInt(String(r.total_sales));
      suspicious += Number(r.suspicious_ip_count);
    }
    const avg = orders > 0n ? (sales + orders / 2n) / orders : 0n;
    const since = this.since;
    const input = [
      since.highValueUnlisted > 0 ? `${plural(since.highValueUnlisted, 'more high-value order')} not listed` : '',
      since.deadLetters > 0 ? plural(since.deadLetters, 'dead letter') : '',
      since.late > 0 ? plural(since.late, 'late order') : '',
    ].filter(Boolean);
    Object.assign(since, new SinceSummary());
    this.write(
      `[${safe(w.rule)}] window ending ${at(statUs)}: ${plural(orders, 'order')}, ${won(sales)}, avg ${won(avg)}, ` +
        `${plural(suspicious, 'suspicious IP')}${input.length > 0 ? `; ${input.join(', ')} since the last window` : ''}`,
    );
  }
}

/** Prints the detections of every engine it is given, with one count of what each window summary reports. */
export function detectionPrinter(write: (line: string) => void): (events: EngineEmitter, countsInput?: boolean) => void {
  const since = new SinceSummary();
  return (events, countsInput = true) => {
    // Each engine has its own partitions and watermarks (its own topic).
    const log = new DetectionLog(write, since, countsInput);
    events.on('batch:end', (b) => log.batch(b));
    events.on('finalized', ({ watermarks }) => log.finalized(watermarks));
    events.on('assigned', ({ partitions }) => log.assigned(partitions));
  };
}
