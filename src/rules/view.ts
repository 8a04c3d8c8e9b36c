/**
 * How a rule's rows are listed wherever they are shown (the built-in page, the
 * generated Grafana panels), so both read them the same way: the rule's output
 * columns but fraud-sql's own (shownColumns), newest first, from its target table.
 */
import { burstBookkeeping } from './burst.js';
import type { Rule } from './loader.js';
import type { PreparedRule } from './runner.js';

export type RuleShape = Pick<PreparedRule, 'columns' | 'types'> & { rule: Pick<Rule, 'burst'> };

/** The output columns a reader is shown: all but those fraud-sql keeps for itself (see burstBookkeeping). */
export function shownColumns(p: RuleShape): string[] {
  const own = burstBookkeeping(p.rule.burst);
  return p.columns.filter((c) => !own.includes(c));
}

/** An SQL identifier, quoted for DuckDB and PostgreSQL alike (a column may be named like a keyword). */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** The output columns that hold event times (DuckDB TIMESTAMP types), in output order. */
export function timeColumns(p: RuleShape): string[] {
  return p.columns.filter((_, i) => /^TIMESTAMP/i.test(p.types[i] ?? ''));
}

/**
 * ORDER BY for newest first: the last event-time column (a window's or a burst's
 * end, an order's time), then the row's last update, which every result table has.
 */
export function newestFirst(p: RuleShape): string {
  const last = timeColumns(p).at(-1);
  return last ? `${quoteIdent(last)} DESC, updated_at DESC` : 'updated_at DESC';
}

/** SELECT of a rule's most recent rows in its target table. */
export function recentRowsSql(p: RuleShape & { rule: { target: string } }, where: string | null, limit: number): string {
  return (
    `SELECT ${shownColumns(p).map(quoteIdent).join(', ')} FROM ${quoteIdent(p.rule.target)}` +
    (where ? ` WHERE ${where}` : '') +
    ` ORDER BY ${newestFirst(p)} LIMIT ${Math.floor(limit)}`
  );
}
