/**
 * The built-in dashboard: the same panels as the Grafana dashboard, read from the
 * result tables. Served by the same Fastify server at `/` with its data at
 * `/api/dashboard`.
 */
import type { FastifyInstance } from 'fastify';
import type { DuckState } from '../state/duckdb.js';
import { PAGE } from './page.js';
import { rowsOf } from '../types.js';

export interface Dashboard {
  generatedAt: string;
  totals: { orders: number; sales: number; suspiciousIps: number; highValue: number; deadLetters: number; lateEvents: number };
  /** Per stats window (30 s by default), oldest first: stat_time, orders, orders/s, sales, average order value, active suspicious IPs. */
  series: { time: string; orders: number; ordersPerSecond: number; sales: number; avgOrderValue: number; suspiciousIps: number }[];
  topProducts: { product: string; orders: number; sales: number }[];
  suspiciousIps: { ip: string; orders: number; spent: number; since: string; until: string; final: boolean }[];
  highValueOrders: { orderId: string; product: string; quantity: number; total: number; ip: string; time: string }[];
}

export interface DashboardSource {
  snapshot(): Promise<Dashboard>;
}

const num = (v: unknown) => (v === null || v === undefined ? 0 : Number(v));

/** Reads the demo's DuckDB result tables (sums over partitions, like the PostgreSQL views). */
export class DuckDashboard implements DashboardSource {
  constructor(
    private readonly state: DuckState,
    /** Length of the realtime_stats window (its rule's `window` parameter); null without that rule. */
    private readonly windowSeconds: number | null,
  ) {}

  private async rows(sql: string): Promise<Record<string, unknown>[]> {
    return rowsOf(await this.state.query(sql));
  }

  async snapshot(): Promise<Dashboard> {
    const [totals] = await this.rows(`SELECT
      (SELECT sum(total_orders) FROM realtime_stats_partial) AS orders,
      (SELECT sum(total_sales) FROM realtime_stats_partial) AS sales,
      (SELECT count(DISTINCT ip_address) FROM suspicious_ips) AS suspicious,
      (SELECT count(*) FROM high_value_orders) AS high_value,
      (SELECT count(*) FROM dead_letters) AS dead_letters,
      (SELECT count(*) FROM late_events) AS late_events`);
    const series = await this.rows(`
      WITH latest AS (SELECT max(stat_time) AS t FROM realtime_stats_partial)
      SELECT stat_time, sum(total_orders) AS orders, sum(total_sales) AS sales, sum(suspicious_ip_count) AS suspicious
      FROM realtime_stats_partial, latest
      WHERE stat_time > latest.t - INTERVAL 10 MINUTE
      GROUP BY stat_time ORDER BY stat_time`);
    const top = await this.rows(`
      WITH latest AS (SELECT max(window_end) AS t FROM popular_products_partial)
      SELECT product_name, sum(order_count) AS orders, sum(total_sales) AS sales
      FROM popular_products_partial, latest WHERE window_end > latest.t - INTERVAL 5 MINUTE
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
      },
      series: series.map((r) => ({
        time: String(r.stat_time),
        orders: num(r.orders),
        ordersPerSecond: this.windowSeconds ? num(r.orders) / this.windowSeconds : 0,
        sales: num(r.sales),
        avgOrderValue: num(r.orders) > 0 ? Math.round(num(r.sales) / num(r.orders)) : 0,
        suspiciousIps: num(r.suspicious),
      })),
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
    };
  }
}

export function mountDashboard(app: FastifyInstance, source: DashboardSource): void {
  app.get('/', async (_req, reply) => reply.type('text/html; charset=utf-8').send(PAGE));
  app.get('/api/dashboard', async () => source.snapshot());
}
