/**
 * `fraud-sql explain --rule R --key K [--at TIME]`: one detection as PostgreSQL
 * holds it, and the orders that made it (detection_evidence), for the analyst who
 * must decide what to do about an IP or a user. Reads only.
 */
import type { CommandModule } from 'yargs';
import { paramOverrides, type Config } from '../config.js';
import { FraudSqlError } from '../errors.js';
import { createLogger } from '../log.js';
import { burstBookkeeping } from '../rules/burst.js';
import { loadRules } from '../rules/loader.js';
import type { Rule } from '../rules/loader.js';
import { openSink } from '../compose.js';
import { safe } from '../console.js';
import { readEvidence, type StoredEvidence } from '../alerts/evidence.js';
import { quoteIdent } from '../rules/view.js';
import { rowsOf, type Row } from '../types.js';
import { configFrom, withSettings } from './common.js';

const KEYS = ['databaseUrl', 'pgSchema', 'pgSslMode', 'pgSslCa', 'queriesDir', 'params', 'logLevel'] as const;

/** --at: a date and time with its zone, so that no one's local time is guessed. */
const AT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})$/;

/** Detections of one key listed when --at is not given, newest first. */
const LISTED = 10;

/** The rule named, or an error naming the detecting rules there are. */
function detectingRule(config: Readonly<Config>, name: string): Rule {
  const { rules } = loadRules(config.queriesDir, paramOverrides(config));
  const rule = rules.find((r) => r.name === name);
  const detecting = rules.filter((r) => r.evidence || r.alert).map((r) => r.name);
  if (!rule)
    throw new FraudSqlError('DETECTION_UNKNOWN', `no rule "${safe(name)}" in ${config.queriesDir} (detecting rules: ${detecting.join(', ') || 'none'})`);
  if (!rule.evidence && !rule.alert) {
    throw new FraudSqlError(
      'DETECTION_UNKNOWN',
      `${rule.file}: ${rule.name} records no evidence; add "-- evidence: 100" to its header (detecting rules: ${detecting.join(', ')})`,
    );
  }
  return rule;
}

/** The key columns a --key value is matched against: the detected thing, without partition and window. */
function keyColumns(rule: Rule): string[] {
  return rule.evidence?.keyColumns ?? rule.alert!.keyColumns;
}

const iso = (v: unknown) => (v === null || v === undefined ? null : v instanceof Date ? v.toISOString() : String(v));

export interface Explained {
  rule: string;
  key: { name: string; value: string };
  /** The detection's row, every column of its table. */
  detection: Row;
  /** Other detections of the key, newest first (without --at, when there are several). */
  others: { window_start: string | null; window_end: string | null }[];
  /** Null for a detection keyed by the order itself: its row is the order. */
  evidence: StoredEvidence | null;
}

/** The detection of `key` by `rule` (at `at`, or the latest) and its evidence. */
export async function explain(config: Readonly<Config>, ruleName: string, key: string, at: string | null): Promise<Explained> {
  const rule = detectingRule(config, ruleName);
  const columns = keyColumns(rule);
  const keyExpr =
    columns.length === 1 ? `${quoteIdent(columns[0]!)}::text` : `concat_ws(',', ${columns.map((c) => `coalesce(${quoteIdent(c)}::text, '')`).join(', ')})`;
  const windowed = rule.key.includes('window_start');
  const sink = await openSink(config, createLogger(config.logLevel), { readOnly: { needs: [rule.target, 'detection_totals', 'detection_evidence'] } });
  try {
    const hasEnd =
      windowed &&
      (
        await sink.query('SELECT 1 FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 AND column_name = $3', [
          config.pgSchema,
          rule.target,
          'window_end',
        ])
      ).rowCount! > 0;
    const end = hasEnd ? 'window_end' : 'window_start';
    const when = at === null || !windowed ? '' : ` AND window_start <= $2::timestamptz AND ${end} >= $2::timestamptz`;
    const order = windowed ? ' ORDER BY window_start DESC' : '';
    const r = await sink.query(
      `SELECT * FROM ${quoteIdent(rule.target)} WHERE ${keyExpr} = $1${when}${order} LIMIT ${LISTED}`,
      at === null || !windowed ? [key] : [key, at],
    );
    const rows = rowsOf({ names: r.fields.map((f) => f.name), columns: r.fields.map((f) => r.rows.map((row) => row[f.name])), rowCount: r.rows.length });
    if (rows.length === 0) {
      throw new FraudSqlError(
        'DETECTION_UNKNOWN',
        `${rule.name} has no detection of ${columns.join(',')} = ${safe(key)}${at === null ? '' : ` at ${safe(at)}`} in schema ${config.pgSchema}`,
      );
    }
    const own = burstBookkeeping(rule.burst);
    const detection = Object.fromEntries(
      Object.entries(rows[0]!)
        .filter(([k]) => !own.includes(k))
        .map(([k, v]) => [k, v instanceof Date ? v.toISOString() : v]),
    );
    const evidence = rule.evidence ? await readEvidence(sink, { rule: rule.name, keyValue: key, windowStart: iso(detection.window_start) }) : null;
    return {
      rule: rule.name,
      key: { name: columns.join(','), value: key },
      detection,
      others: rows.slice(1).map((o) => ({ window_start: iso(o.window_start), window_end: iso(o.window_end) })),
      evidence,
    };
  } finally {
    await sink.close();
  }
}

/** The human form: the detection's columns, then its orders. Every value from an order goes through safe(). */
export function formatExplained(e: Explained): string {
  const lines = [`${e.rule}: ${e.key.name} = ${safe(e.key.value)}`];
  for (const [k, v] of Object.entries(e.detection)) lines.push(`  ${k}: ${v === null || v === undefined ? '' : safe(v)}`);
  if (e.others.length > 0) {
    lines.push(`other detections of this key (pick one with --at TIME):`);
    for (const o of e.others) lines.push(`  ${o.window_start ?? ''} – ${o.window_end ?? ''}`);
  }
  if (e.evidence === null) {
    lines.push(e.detection.order_id !== undefined ? 'evidence: the detection is the order itself' : 'evidence: none recorded');
  } else {
    const { orderCount, orders } = e.evidence;
    lines.push(
      `evidence: ${orderCount} ${orderCount === 1 ? 'order' : 'orders'}${orders.length < orderCount ? `, the first ${orders.length} by event time` : ''}:`,
    );
    for (const o of orders) lines.push(`  ${o.eventTime}  ${safe(o.orderId)}`);
  }
  return lines.join('\n') + '\n';
}

export const explainCommand: CommandModule<object, { rule: string; key: string; at?: string; json?: boolean }> = {
  command: 'explain',
  describe: 'show a detection and the orders that made it (from PostgreSQL)',
  builder: (y) =>
    withSettings(y, KEYS)
      .option('rule', { type: 'string', demandOption: true, describe: 'the detecting rule, e.g. suspicious_ips' })
      .option('key', { type: 'string', demandOption: true, describe: 'what it detected: the IP, user, ... (several key columns: comma-joined)' })
      .option('at', { type: 'string', describe: 'a time inside the detection (ISO-8601); default: the latest' })
      .option('json', { type: 'boolean', default: false, describe: 'print JSON' })
      .example('$0 explain --rule suspicious_ips --key 192.168.99.99', '')
      .example('$0 explain --rule card_testing --key USER12345 --at 2026-11-26T10:15:00Z --json', ''),
  handler: async (argv) => {
    const config = configFrom(argv as unknown as Record<string, unknown>);
    if (argv.at !== undefined && (!AT.test(argv.at) || Number.isNaN(Date.parse(argv.at)))) {
      throw new FraudSqlError(
        'CONFIG_INVALID',
        `--at: "${safe(argv.at)}" is not an ISO-8601 time with its zone (e.g. 2026-11-26T10:15:00Z or 2026-11-26T19:15:00+09:00)`,
      );
    }
    const at = argv.at === undefined ? null : new Date(argv.at).toISOString();
    const e = await explain(config, argv.rule, argv.key, at);
    process.stdout.write(argv.json ? JSON.stringify(e, null, 2) + '\n' : formatExplained(e));
  },
};
