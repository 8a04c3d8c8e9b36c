/**
 * The provisioned Grafana dashboard (grafana/dashboards/fraud-sql.json), built
 * from the loaded rules: the hand-made panels (the original design's five
 * queries, unchanged, since users' Grafana relies on them; the pipeline panels),
 * then one table panel per rule, from its metadata. `fraud-sql dashboard` prints it.
 */
import path from 'node:path';
import type { PreparedRule } from '../rules/runner.js';
import { quoteIdent, recentRowsSql, timeColumns, type RuleShape } from '../rules/view.js';

const PG = { type: 'grafana-postgresql-datasource', uid: 'fraud-sql-pg' };
const PROM = { type: 'prometheus', uid: 'fraud-sql-prom' };

/**
 * Table cells as plain text. Order fields are attacker-controlled: no cell type
 * that renders markdown or HTML, no links, whatever a later Grafana defaults to.
 */
export const PLAIN_TEXT_CELLS = { custom: { cellOptions: { type: 'auto' }, inspect: false } };

/** Rows a rule panel lists: Grafana's table scrolls, PostgreSQL stops early. */
export const RULE_PANEL_ROWS = 100;
/** Panel ids of the rule panels start here, clear of the hand-made ones. */
const RULE_PANEL_ID = 100;

type Grid = { x: number; y: number; w: number; h: number };
type Json = Record<string, unknown>;

function sqlPanel(
  id: number,
  type: string,
  title: string,
  gridPos: Grid,
  format: 'time_series' | 'table',
  rawSql: string,
  o: { defaults?: Json; options?: Json; description?: string } = {},
): Json {
  const defaults = o.defaults ?? (type === 'table' ? PLAIN_TEXT_CELLS : {});
  return {
    id,
    type,
    title,
    datasource: PG,
    gridPos,
    targets: [{ refId: 'A', datasource: PG, editorMode: 'code', format, rawQuery: true, rawSql }],
    fieldConfig: { defaults, overrides: [] },
    options: o.options ?? {},
    ...(o.description ? { description: o.description } : {}),
  };
}

function promPanel(id: number, title: string, gridPos: Grid, unit: string, queries: [expr: string, legend: string][]): Json {
  return {
    id,
    type: 'timeseries',
    title,
    datasource: PROM,
    gridPos,
    targets: queries.map(([expr, legendFormat], i) => ({ refId: String.fromCharCode(65 + i), datasource: PROM, expr, legendFormat })),
    fieldConfig: { defaults: { unit }, overrides: [] },
    options: {},
  };
}

/** The hand-made panels; the first five are the original design's, their SQL as it was. */
const BASE_PANELS: Json[] = [
  sqlPanel(
    1,
    'timeseries',
    '주문 수 (Orders over time)',
    { x: 0, y: 0, w: 12, h: 8 },
    'time_series',
    'SELECT stat_time AS time, total_orders AS "orders" FROM realtime_stats WHERE $__timeFilter(stat_time) ORDER BY stat_time',
  ),
  sqlPanel(
    2,
    'timeseries',
    '매출 (Sales over time, million KRW)',
    { x: 12, y: 0, w: 12, h: 8 },
    'time_series',
    'SELECT stat_time AS time, total_sales / 1000000.0 AS "매출(백만원)" FROM realtime_stats WHERE $__timeFilter(stat_time) ORDER BY stat_time',
  ),
  sqlPanel(
    3,
    'barchart',
    '인기 상품 Top 5 (Top products)',
    { x: 0, y: 8, w: 8, h: 9 },
    'table',
    'SELECT product_name, SUM(order_count) AS total_orders FROM popular_products WHERE $__timeFilter(window_start) GROUP BY product_name ORDER BY total_orders DESC LIMIT 5',
    { options: { orientation: 'horizontal', xField: 'product_name' } },
  ),
  sqlPanel(
    4,
    'table',
    '의심 IP (Suspicious IPs)',
    { x: 8, y: 8, w: 10, h: 9 },
    'table',
    'SELECT ip_address, order_count, total_spent / 1000000.0 AS "금액(백만원)", window_start AS "탐지시간", window_end AS "마지막 주문", ' +
      "CASE WHEN is_final THEN 'ended' ELSE 'active' END AS state FROM suspicious_ips " +
      'WHERE window_start <= $__timeTo() AND window_end >= $__timeFrom() ORDER BY order_count DESC LIMIT 50',
    {
      description:
        '>= 10 orders from one IP within any 60 s; one row per burst. Every burst active at some point of the time range is listed, also one that began before it.',
    },
  ),
  sqlPanel(
    5,
    'stat',
    '고액 주문 (High-value orders)',
    { x: 18, y: 8, w: 6, h: 9 },
    'table',
    'SELECT COUNT(*) AS count FROM high_value_orders WHERE $__timeFilter(order_time)',
    { description: 'Orders with price x quantity >= 500,000 KRW in the time range.' },
  ),
  sqlPanel(
    6,
    'timeseries',
    'Average order value (KRW)',
    { x: 0, y: 17, w: 8, h: 8 },
    'time_series',
    'SELECT stat_time AS time, avg_order_value AS "average order value" FROM realtime_stats WHERE $__timeFilter(stat_time) ORDER BY stat_time',
    { defaults: { unit: 'none' } },
  ),
  sqlPanel(
    7,
    'timeseries',
    'Suspicious IPs active per window',
    { x: 8, y: 17, w: 8, h: 8 },
    'time_series',
    'SELECT stat_time AS time, suspicious_ip_count AS "suspicious IPs" FROM realtime_stats WHERE $__timeFilter(stat_time) ORDER BY stat_time',
  ),
  sqlPanel(
    8,
    'timeseries',
    'Dead letters and late events per minute',
    { x: 16, y: 17, w: 8, h: 8 },
    'time_series',
    `SELECT $__timeGroupAlias(created_at, 1m), count(*) FILTER (WHERE kind = 'dead letter') AS "dead letters", count(*) FILTER (WHERE kind = 'late') AS "late events" ` +
      `FROM (SELECT created_at, 'dead letter' AS kind FROM dead_letters UNION ALL SELECT min(created_at), 'late' FROM late_events GROUP BY order_id, event_time) e WHERE $__timeFilter(created_at) GROUP BY 1 ORDER BY 1`,
  ),
  sqlPanel(
    9,
    'table',
    'High-value orders',
    { x: 0, y: 25, w: 12, h: 10 },
    'table',
    'SELECT order_time, order_id, product_name, quantity, total_price, ip_address FROM high_value_orders WHERE $__timeFilter(order_time) ORDER BY order_time DESC LIMIT 100',
  ),
  promPanel(10, 'Pipeline: consumer lag (messages)', { x: 12, y: 25, w: 6, h: 10 }, 'short', [
    ['sum by (topic, partition) (fraud_sql_consumer_lag)', '{{topic}} {{partition}}'],
  ]),
  promPanel(11, 'Pipeline: latency', { x: 18, y: 25, w: 6, h: 10 }, 's', [
    ['histogram_quantile(0.95, sum by (le) (rate(fraud_sql_batch_duration_seconds_bucket[1m])))', 'batch p95'],
    ['histogram_quantile(0.99, sum by (le) (rate(fraud_sql_end_to_end_latency_seconds_bucket[1m])))', 'end to end p99'],
  ]),
  sqlPanel(
    12,
    'table',
    'Pipeline: watermark delay per partition',
    { x: 0, y: 35, w: 24, h: 6 },
    'table',
    'SELECT topic, kafka_partition AS partition, next_offset, watermark, now() - watermark AS "behind now", updated_at AS "last commit" FROM consumer_progress ORDER BY topic, kafka_partition',
  ),
  promPanel(13, 'Pipeline: window state (orders) and memory (MB)', { x: 0, y: 41, w: 24, h: 8 }, 'short', [
    ['sum(fraud_sql_state_orders)', 'orders in state'],
    ['sum(fraud_sql_process_resident_memory_bytes) / 1048576', 'resident memory MB'],
  ]),
];
const BASE_BOTTOM = 49;

/**
 * The rows of the time range, newest first: a row with one event time is in the
 * range when that time is; one with several (a window, a burst) when its span
 * overlaps the range, so a burst that began earlier and is still active shows.
 */
export function rulePanelSql(p: RuleShape & { rule: { target: string } }): string {
  const times = timeColumns(p).map(quoteIdent);
  const where =
    times.length === 0 ? null : times.length === 1 ? `$__timeFilter(${times[0]})` : `${times[0]} <= $__timeTo() AND ${times.at(-1)} >= $__timeFrom()`;
  return recentRowsSql(p, where, RULE_PANEL_ROWS);
}

function rulePanel(p: PreparedRule, i: number): Json {
  const { rule } = p;
  const description =
    `${rule.description ? `${rule.description} ` : ''}Severity ${rule.severity}. Rows of table ${rule.target}, one per ${rule.key.join(', ')}; ` +
    `newest first. Generated from ${path.basename(rule.file)} by \`fraud-sql dashboard\`.`;
  return sqlPanel(
    RULE_PANEL_ID + i,
    'table',
    `Rule: ${rule.name} (${rule.severity})`,
    { x: (i % 2) * 12, y: BASE_BOTTOM + Math.floor(i / 2) * 9, w: 12, h: 9 },
    'table',
    rulePanelSql(p),
    { description },
  );
}

export function grafanaDashboard(rules: readonly PreparedRule[]): Json {
  return {
    uid: 'fraud-sql',
    title: 'fraud-sql: real-time fraud detection',
    tags: ['fraud-sql'],
    timezone: 'browser',
    schemaVersion: 39,
    version: 1,
    editable: false,
    refresh: '5s',
    time: { from: 'now-15m', to: 'now' },
    timepicker: { refresh_intervals: ['5s', '10s', '30s', '1m'] },
    panels: [...BASE_PANELS, ...rules.map(rulePanel)],
    templating: { list: [] },
    annotations: { list: [] },
  };
}
