/**
 * `fraud-sql dashboard`: the shipped Grafana dashboard is what the command makes
 * of the shipped rules, the original design's five queries are untouched, every
 * rule gets a panel from its metadata, and no table cell renders markup.
 * (test/grafana.e2e.test.ts runs every panel's SQL against real pipeline output.)
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { dashboardJson } from '../src/commands/dashboard.js';

const exec = promisify(execFile);
const root = new URL('../', import.meta.url).pathname;
const QUERIES = `${root}queries`;
const CLI = `${root}dist/cli.js`;

interface Panel {
  id: number;
  type: string;
  title: string;
  description?: string;
  targets: { rawSql?: string }[];
  fieldConfig: { defaults: { custom?: { cellOptions?: { type: string } }; links?: unknown[] }; overrides: unknown[] };
}

t.test('the shipped dashboard is the one the command generates for the shipped rules', async (t) => {
  const shipped = readFileSync(`${root}grafana/dashboards/fraud-sql.json`, 'utf8');
  t.equal(shipped, await dashboardJson(QUERIES), 'regenerate with: npx fraud-sql dashboard > grafana/dashboards/fraud-sql.json');
  const { stdout } = await exec('node', [CLI, 'dashboard']);
  t.equal(stdout, shipped, 'the CLI prints the same');
});

t.test("the original design's five queries stay exactly as they were", async (t) => {
  const panels: Panel[] = JSON.parse(await dashboardJson(QUERIES)).panels;
  t.same(
    panels.slice(0, 5).map((p) => p.targets[0]!.rawSql),
    [
      'SELECT stat_time AS time, total_orders AS "orders" FROM realtime_stats WHERE $__timeFilter(stat_time) ORDER BY stat_time',
      'SELECT stat_time AS time, total_sales / 1000000.0 AS "매출(백만원)" FROM realtime_stats WHERE $__timeFilter(stat_time) ORDER BY stat_time',
      'SELECT product_name, SUM(order_count) AS total_orders FROM popular_products WHERE $__timeFilter(window_start) GROUP BY product_name ORDER BY total_orders DESC LIMIT 5',
      'SELECT ip_address, order_count, total_spent / 1000000.0 AS "금액(백만원)", window_start AS "탐지시간", window_end AS "마지막 주문", ' +
        "CASE WHEN is_final THEN 'ended' ELSE 'active' END AS state FROM suspicious_ips WHERE window_start <= $__timeTo() AND window_end >= $__timeFrom() " +
        'ORDER BY order_count DESC LIMIT 50',
      'SELECT COUNT(*) AS count FROM high_value_orders WHERE $__timeFilter(order_time)',
    ],
  );
});

t.test('a rule added to the directory gets its own panel, built from its header and output', async (t) => {
  const dir = t.testdir();
  cpSync(QUERIES, dir, { recursive: true });
  // A rule of its own name over an existing table, with one event-time column.
  writeFileSync(
    `${dir}/flagged_orders.sql`,
    readFileSync(`${QUERIES}/high_value_orders.sql`, 'utf8')
      .replace('-- name: high_value_orders', '-- name: flagged_orders')
      .replace(/-- description: .*/, '-- description: Orders a reviewer should look at.')
      .replace('-- severity: medium', '-- severity: high'),
  );
  const panels: Panel[] = JSON.parse(await dashboardJson(dir)).panels;
  const rulePanels = panels.filter((p) => p.title.startsWith('Rule: '));
  t.same(
    rulePanels.map((p) => p.title),
    [
      'Rule: blocked_activity (high)',
      'Rule: card_testing (high)',
      'Rule: flagged_orders (high)',
      'Rule: high_value_orders (medium)',
      'Rule: popular_products (info)',
      'Rule: suspicious_ips (high)',
      'Rule: realtime_stats (info)',
      'Rule: shared_ip_accounts (medium)',
    ],
    'one panel per loaded rule, in load order',
  );
  const flagged = rulePanels.find((p) => p.title.startsWith('Rule: flagged_orders'))!;
  t.equal(
    flagged.targets[0]!.rawSql,
    'SELECT "source_partition", "order_time", "order_id", "product_name", "quantity", "total_price", "ip_address" FROM "high_value_orders" ' +
      'WHERE $__timeFilter("order_time") ORDER BY "order_time" DESC, updated_at DESC LIMIT 100',
    'its output columns from its target table, newest first, in the time range',
  );
  t.match(flagged.description, /^Orders a reviewer should look at\. Severity high\. Rows of table high_value_orders, one per order_id; newest first\./);
  const bursts = rulePanels.find((p) => p.title.startsWith('Rule: suspicious_ips'))!;
  t.match(bursts.targets[0]!.rawSql, /WHERE "window_start" <= \$__timeTo\(\) AND "window_end" >= \$__timeFrom\(\)/, 'a span overlapping the range is in it');
  t.equal(new Set(panels.map((p) => p.id)).size, panels.length, 'panel ids stay unique');
});

t.test('table cells render order fields as plain text, never as markdown or HTML', async (t) => {
  const panels: Panel[] = JSON.parse(await dashboardJson(QUERIES)).panels;
  const tables = panels.filter((p) => p.type === 'table');
  t.ok(tables.length >= 7, `${tables.length} table panels`);
  for (const p of tables) {
    t.equal(p.fieldConfig.defaults.custom?.cellOptions?.type, 'auto', `${p.title}: plain cells`);
    t.same(p.fieldConfig.overrides, [], `${p.title}: no column gets another cell type`);
    t.notOk(p.fieldConfig.defaults.links, `${p.title}: no data links`);
  }
  t.notOk(
    panels.some((p) => p.type === 'text'),
    'no text panel, the one panel that renders markdown and HTML',
  );
});

t.test('broken rules: the command names the file and line, and prints no dashboard', async (t) => {
  const dir = t.testdir({ 'broken.sql': '-- target: high_value_orders\n-- key: order_id\n-- state: 0s\nSELECT nope FROM batch_orders\n' });
  const r = await exec('node', [CLI, 'dashboard', '--queries-dir', dir]).catch((e: { code: number; stdout: string; stderr: string }) => e);
  t.equal((r as { code?: number }).code, 1);
  t.equal(r.stdout, '');
  t.match(r.stderr, new RegExp(`${dir}/broken\\.sql:4:\\d+: `));
});
