/**
 * The built-in dashboard: the same panels as the Grafana dashboard, and every
 * loaded rule's latest rows, read from the result tables: the demo's DuckDB file,
 * or PostgreSQL under `run` (one SQL for both). Served by the same Fastify server
 * at `/` with its data at `/api/dashboard`.
 */
import type { FastifyInstance } from 'fastify';
import type { Columns } from '../engine/ports.js';
import type { PreparedRule } from '../rules/runner.js';
import { recentRowsSql, shownColumns } from '../rules/view.js';
import { PAGE } from './page.js';
import { rowsOf } from '../types.js';
import { detectionRows } from '../alerts/alert.js';
import { readEvidence, type DetectionId, type StoredEvidence } from '../alerts/evidence.js';

/** Rows shown per rule: enough to see what it finds, few enough to poll every 2 s. */
export const RULE_ROWS = 20;

export type ColumnKind = 'time' | 'number' | 'text';

/** One loaded rule and its latest rows, newest first. */
export interface RuleRows {
  name: string;
  description: string;
  severity: string;
  target: string;
  key: string[];
  columns: { name: string; kind: ColumnKind }[];
  /** Row-major; times as ISO-8601 UTC strings, integers past 2^53 as decimal strings. */
  rows: unknown[][];
  /** Per row, the detection whose evidence /api/evidence gives; null when the rule records none. */
  detections: { key: string; windowStart: string | null }[] | null;
  /** Why the rows could not be read, instead of failing the whole page. */
  error?: string;
}

/** Times are ISO-8601 UTC strings throughout; the page formats them one way. */
export interface Dashboard {
  generatedAt: string;
  totals: {
    orders: number;
    sales: number;
    suspiciousIps: number;
    highValue: number;
    deadLetters: number;
    lateEvents: number;
    /** Event-time range the order and sales totals cover: the first stats window's start to the last one's end (null before any). */
    from: string | null;
    to: string | null;
    /** Stretches of consecutive windows: more than one after a restart (or a pause in traffic). */
    stretches: number;
  };
  /**
   * Per stats window (30 s by default) of the last 10 minutes, oldest first. A window
   * is partial while open, and when a neighbour is missing: the first window of a
   * stretch began before its first order, the last one ended with the run.
   */
  series: {
    start: string;
    end: string;
    orders: number;
    ordersPerSecond: number;
    sales: number;
    avgOrderValue: number;
    suspiciousIps: number;
    partial: boolean;
  }[];
  topProducts: { product: string; orders: number; sales: number }[];
  suspiciousIps: { ip: string; orders: number; spent: number; since: string; until: string; final: boolean }[];
  highValueOrders: { orderId: string; product: string; quantity: number; total: number; ip: string; time: string }[];
  rules: RuleRows[];
}

export interface DashboardSource {
  snapshot(): Promise<Dashboard>;
  evidence(d: DetectionId): Promise<StoredEvidence | null>;
  /** The loaded rules that keep evidence; `windowed`: a burst rule, whose detections are told apart by their window_start. */
  evidenceRules(): { name: string; windowed: boolean }[];
}

const num = (v: unknown) => (v === null || v === undefined ? 0 : Number(v));
const isoOrNull = (v: unknown) => (v === null || v === undefined ? null : String(v));

export function columnKind(duckType: string): ColumnKind {
  if (/^TIMESTAMP/i.test(duckType)) return 'time';
  if (/^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|UHUGEINT|FLOAT|DOUBLE|DECIMAL)/i.test(duckType)) return 'number';
  return 'text';
}

/**
 * Where the result tables are read: DuckDB (the demo) or PostgreSQL (`run`).
 * Times come back as ISO-8601 UTC strings, exact integers as numbers or decimal
 * strings, and `types` in DuckDB's names.
 */
export interface ResultReader {
  /** `sql` takes `params` as $1, $2, ... */
  read(sql: string, params?: readonly (string | number | null)[]): Promise<Columns>;
}

/** The realtime_stats rule's window in ms (its `window` parameter); null without that rule. */
export function statsWindowMs(rules: readonly PreparedRule[]): number | null {
  const w = rules.find((p) => p.rule.name === 'realtime_stats')?.rule.params.get('window');
  return w?.kind === 'duration' ? w.micros / 1000 : null;
}

/** Reads the result tables (sums over partitions, like the PostgreSQL views) in SQL that DuckDB and PostgreSQL both run. */
export class ResultsDashboard implements DashboardSource {
  constructor(
    private readonly reader: ResultReader,
    /** The loaded rules, asked on every snapshot: `run` reloads them. */
    private readonly rules: { prepared(): readonly PreparedRule[] },
  ) {}

  private async rows(sql: string): Promise<Record<string, unknown>[]> {
    return rowsOf(await this.reader.read(sql));
  }

  async snapshot(): Promise<Dashboard> {
    const rules = this.rules.prepared();
    const windowMs = statsWindowMs(rules);
    const window = `INTERVAL '${Math.round(windowMs ?? 0)} milliseconds'`;
    const [totals] = await this.rows(`WITH w AS (SELECT DISTINCT stat_time FROM realtime_stats_partial)
      SELECT
      (SELECT sum(total_orders) FROM realtime_stats_partial) AS orders,
      (SELECT sum(total_sales) FROM realtime_stats_partial) AS sales,
      (SELECT min(stat_time) - ${window} FROM w) AS first_start,
      (SELECT max(stat_time) FROM w) AS last_end,
      (SELECT count(*) FROM w WHERE stat_time - ${window} NOT IN (SELECT stat_time FROM w)) AS stretches,
      (SELECT count(DISTINCT ip_address) FROM suspicious_ips) AS suspicious,
      (SELECT count(*) FROM high_value_orders) AS high_value,
      (SELECT count(*) FROM dead_letters) AS dead_letters,
      -- Each engine records the late orders it skipped (its replay skips them again): an order counts once.
      (SELECT count(*) FROM (SELECT DISTINCT order_id, event_time FROM late_events) l) AS late_events`);
    const top = await this.rows(`
      WITH latest AS (SELECT max(window_end) AS t FROM popular_products_partial)
      SELECT product_name, sum(order_count) AS orders, sum(total_sales) AS sales
      FROM popular_products_partial, latest WHERE window_end > latest.t - INTERVAL '5 minutes'
      GROUP BY product_name ORDER BY orders DESC, product_name LIMIT 5`);
    const sus = await this.rows(`SELECT ip_address, order_count, total_spent, window_start, window_end, is_final
      FROM suspicious_ips ORDER BY window_end DESC LIMIT 20`);
    const hv = await this.rows(`SELECT order_id, product_name, quantity, total_price, ip_address, order_time
      FROM high_value_orders ORDER BY order_time DESC LIMIT 20`);
    return {
      generatedAt: new Date().toISOString(),
      totals: {
        orders: num(totals!.orders),
        sales: num(totals!.sales),
        suspiciousIps: num(totals!.suspicious),
        highValue: num(totals!.high_value),
        deadLetters: num(totals!.dead_letters),
        lateEvents: num(totals!.late_events),
        from: isoOrNull(totals!.first_start),
        to: isoOrNull(totals!.last_end),
        stretches: num(totals!.stretches),
      },
      series: windowMs ? await this.series(windowMs) : [],
      topProducts: top.map((r) => ({ product: String(r.product_name), orders: num(r.orders), sales: num(r.sales) })),
      suspiciousIps: sus.map((r) => ({
        ip: String(r.ip_address),
        orders: num(r.order_count),
        spent: num(r.total_spent),
        since: String(r.window_start),
        until: String(r.window_end),
        final: Boolean(r.is_final),
      })),
      highValueOrders: hv.map((r) => ({
        orderId: String(r.order_id),
        product: String(r.product_name),
        quantity: num(r.quantity),
        total: num(r.total_price),
        ip: String(r.ip_address),
        time: String(r.order_time),
      })),
      rules: await Promise.all(rules.map((p) => this.ruleRows(p))),
    };
  }

  /** The last 10 minutes of stats windows, read with one window more so that the oldest shown knows its neighbour. */
  private async series(windowMs: number): Promise<Dashboard['series']> {
    const rows = await this.rows(`
      WITH latest AS (SELECT max(stat_time) AS t FROM realtime_stats_partial)
      SELECT stat_time, sum(total_orders) AS orders, sum(total_sales) AS sales, sum(suspicious_ip_count) AS suspicious, bool_and(is_final) AS final
      FROM realtime_stats_partial, latest
      WHERE stat_time > latest.t - INTERVAL '10 minutes' - INTERVAL '${Math.round(windowMs)} milliseconds'
      GROUP BY stat_time ORDER BY stat_time`);
    const ends = new Set(rows.map((r) => Date.parse(String(r.stat_time))));
    const latest = Math.max(...ends);
    return rows
      .map((r) => {
        const end = Date.parse(String(r.stat_time));
        const orders = num(r.orders);
        return {
          start: new Date(end - windowMs).toISOString(),
          end: new Date(end).toISOString(),
          orders,
          ordersPerSecond: orders / (windowMs / 1000),
          sales: num(r.sales),
          avgOrderValue: orders > 0 ? Math.round(num(r.sales) / orders) : 0,
          suspiciousIps: num(r.suspicious),
          partial: !r.final || !ends.has(end - windowMs) || !ends.has(end + windowMs),
        };
      })
      .filter((s) => Date.parse(s.end) > latest - 10 * 60_000);
  }

  evidence(d: DetectionId): Promise<StoredEvidence | null> {
    return readEvidence(this.reader, d);
  }

  evidenceRules(): { name: string; windowed: boolean }[] {
    return this.rules
      .prepared()
      .filter((p) => p.rule.evidence !== null)
      .map((p) => ({ name: p.rule.name, windowed: p.rule.stateMicros > 0 }));
  }

  private async ruleRows(p: PreparedRule): Promise<RuleRows> {
    const { rule } = p;
    const head = { name: rule.name, description: rule.description, severity: rule.severity, target: rule.target, key: rule.key };
    try {
      const r = await this.reader.read(recentRowsSql(p, null, RULE_ROWS));
      const columns = r.names.map((name, i) => ({ name, kind: columnKind(r.types[i] ?? '') }));
      const rows = Array.from({ length: r.rowCount }, (_, i) => r.columns.map((c) => c[i] ?? null));
      const detections = rule.evidence ? detectionRows(r, rule.evidence.keyColumns, null).map((d) => ({ key: d.keyValue, windowStart: d.windowStart })) : null;
      return { ...head, columns, rows, detections };
    } catch (err) {
      return {
        ...head,
        columns: shownColumns(p).map((name) => ({ name, kind: 'text' as const })),
        rows: [],
        detections: null,
        error: (err as Error).message.split('\n')[0]!,
      };
    }
  }
}

/** An ISO-8601 time as result rows hold them (UTC, up to microseconds), kept as text so that it matches exactly. */
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$/;

export function mountDashboard(app: FastifyInstance, source: DashboardSource): void {
  app.get('/', async (_req, reply) => reply.type('text/html; charset=utf-8').send(PAGE));
  app.get('/api/dashboard', async () => source.snapshot());
  // One detection's orders: ?rule=suspicious_ips&key=192.168.99.99&window_start=2026-11-26T10:00:00.000Z
  app.get('/api/evidence', async (req, reply) => {
    const q = req.query as Record<string, unknown>;
    const ws = q.window_start === undefined || q.window_start === '' ? null : q.window_start;
    const usage = 'give rule, key and (for a burst rule) window_start as ISO-8601 UTC, e.g. 2026-11-26T10:00:00.000Z';
    if (typeof q.rule !== 'string' || typeof q.key !== 'string' || (ws !== null && (typeof ws !== 'string' || !ISO_TIME.test(ws)))) {
      return reply.code(400).send({ message: usage });
    }
    const kept = source.evidenceRules();
    const rule = kept.find((r) => r.name === q.rule);
    // The rule name is the caller's text: not repeated back.
    if (!rule)
      return reply.code(400).send({ message: `no loaded rule of that name keeps evidence; these do: ${kept.map((r) => r.name).join(', ') || 'none'}` });
    if (rule.windowed && ws === null) return reply.code(400).send({ message: `${usage}: a burst's detections are told apart by their start` });
    const e = await source.evidence({ rule: q.rule, keyValue: q.key, windowStart: ws as string | null });
    if (e === null) return reply.code(404).send({ message: 'no evidence is recorded for this detection' });
    return e;
  });
}
