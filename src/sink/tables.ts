/**
 * The result table of a rule, derived from the rule file alone: its header (target,
 * key, final_after) and the output columns and DuckDB types of its SELECT (as
 * DESCRIBE reports them). One description serves the PostgreSQL sink, the DuckDB
 * sink of `demo` and of the in-memory runs, and the rules' mirrors (result_<rule>),
 * so a new rule needs no code: its tables are created from this, and grown by
 * added columns only. A destructive change (a column dropped or retyped, another
 * key) is refused with one line that says what to do.
 */
import type { RuleOutput } from '../engine/ports.js';
import { FraudSqlError } from '../errors.js';

export type Dialect = 'postgres' | 'duckdb';

export interface TableColumn {
  name: string;
  /** As PostgreSQL's format_type() spells it, so that an existing table compares equal. */
  pg: string;
  /** As DuckDB's duckdb_columns() spells it. */
  duck: string;
}

export interface ResultTable {
  name: string;
  /** The rule that defines it, for messages. */
  rule: string;
  file: string;
  /** The rule's output columns, in its order. */
  columns: TableColumn[];
  key: string[];
  /** Whether rows become final (the rule has final_after): the table has is_final. */
  finalizable: boolean;
}

/** Columns fraud-sql adds to every result table; a rule never outputs them. */
export const MANAGED_COLUMNS: readonly string[] = ['id', 'is_final', 'rule_version', 'created_at', 'updated_at'];

/** Every rule outputs the Kafka partition of its rows: finalizing and restoring go by it. */
export const PARTITION_COLUMN = 'source_partition';

/** fraud-sql's own tables and views, in PostgreSQL or in the DuckDB state, which no rule may target. */
const RESERVED =
  /^(orders|batch_orders|incoming_orders|dead_letters|late_events|consumer_progress|schema_migrations|popular_products|realtime_stats|(result|changed)_.*)$/;

const INTEGER: Omit<TableColumn, 'name'> = { pg: 'integer', duck: 'INTEGER' };
const BIGINT: Omit<TableColumn, 'name'> = { pg: 'bigint', duck: 'BIGINT' };

/**
 * The column type that holds a DuckDB result type, or null. Integers keep their
 * width up to bigint; a HUGEINT (DuckDB's sum of BIGINTs) is written as bigint, as
 * KRW amounts stay far below 2^63. Timestamps are UTC instants.
 */
export function columnType(duckType: string): Omit<TableColumn, 'name'> | null {
  const d = duckType.toUpperCase();
  if (/^(TINYINT|SMALLINT|INTEGER|UTINYINT|USMALLINT)$/.test(d)) return INTEGER;
  if (/^(BIGINT|HUGEINT|UINTEGER|UBIGINT|UHUGEINT)$/.test(d) || /^DECIMAL\(\d+,0\)$/.test(d)) return BIGINT;
  if (d === 'VARCHAR') return { pg: 'text', duck: 'VARCHAR' };
  if (d === 'BOOLEAN') return { pg: 'boolean', duck: 'BOOLEAN' };
  if (d === 'DOUBLE' || d === 'FLOAT') return { pg: 'double precision', duck: 'DOUBLE' };
  if (d.startsWith('TIMESTAMP')) return { pg: 'timestamp with time zone', duck: 'TIMESTAMP' };
  return null;
}

/** The table a rule's output defines, or the problems that stop it (as messages). */
export function deriveTable(
  rule: Pick<RuleOutput, 'name' | 'file' | 'target' | 'key' | 'grows' | 'finalAfter'> & Partial<Pick<RuleOutput, 'alert'>>,
  names: readonly string[],
  duckTypes: readonly string[],
): ResultTable | string[] {
  const problems: string[] = [];
  const columns: TableColumn[] = [];
  names.forEach((name, i) => {
    const type = columnType(duckTypes[i]!);
    if (MANAGED_COLUMNS.includes(name)) problems.push(`column "${name}" is managed by fraud-sql; the rule must not output it`);
    else if (!type)
      problems.push(`column "${name}" is ${duckTypes[i]}, which a result table cannot hold: cast it to BIGINT, DOUBLE, VARCHAR, BOOLEAN or TIMESTAMP`);
    else columns.push({ name, ...type });
  });
  if (new Set(names).size !== names.length) problems.push('the rule outputs a column name twice');
  if (!names.includes(PARTITION_COLUMN))
    problems.push(`the rule does not output "${PARTITION_COLUMN}" (the Kafka partition of its rows, kafka_partition of the orders)`);
  for (const k of rule.key) if (!names.includes(k)) problems.push(`key column "${k}" is not in the rule's output`);
  for (const g of rule.grows) if (!names.includes(g)) problems.push(`grows column "${g}" is not in the rule's output`);
  const step = rule.alert?.step?.column;
  const stepType = step ? columns.find((c) => c.name === step)?.pg : undefined;
  if (step && !names.includes(step)) problems.push(`alert step column "${step}" is not in the rule's output`);
  else if (step && stepType !== undefined && stepType !== 'bigint' && stepType !== 'integer')
    problems.push(`alert step column "${step}" is ${stepType}: steps count whole numbers (cast it to BIGINT)`);
  if (RESERVED.test(rule.target)) problems.push(`target "${rule.target}" is a table of fraud-sql itself; name the rule's own table`);
  if (problems.length > 0) return problems;
  return { name: rule.target, rule: rule.name, file: rule.file, columns, key: [...rule.key], finalizable: rule.finalAfter !== null };
}

/** Whether two rules' tables are the same table (two rules may write one table only if so). */
export function sameTable(a: ResultTable, b: ResultTable): boolean {
  const shape = (t: ResultTable) => JSON.stringify([t.columns.map((c) => [c.name, c.pg]), [...t.key].sort(), t.finalizable]);
  return shape(a) === shape(b);
}

export const quote = (ident: string) => `"${ident.replace(/"/g, '""')}"`;

const typeIn = (d: Dialect, c: Pick<TableColumn, 'pg' | 'duck'>) => (d === 'postgres' ? c.pg : c.duck);

/** The columns fraud-sql manages, as each dialect declares them. */
function managedDefs(d: Dialect, t: ResultTable): [string, string][] {
  const ts = d === 'postgres' ? 'timestamptz' : 'TIMESTAMP';
  return [
    ...(t.finalizable ? [['is_final', `${d === 'postgres' ? 'boolean' : 'BOOLEAN'} NOT NULL DEFAULT false`] as [string, string]] : []),
    ['rule_version', d === 'postgres' ? 'text' : 'VARCHAR'],
    ['created_at', `${ts} NOT NULL DEFAULT now()`],
    ['updated_at', `${ts} NOT NULL DEFAULT now()`],
  ];
}

/**
 * CREATE TABLE for a result table under `name` (the table's own, or result_<rule>
 * for a mirror). Key columns are NOT NULL; the others may be null. PostgreSQL
 * tables get an id, as the original design's do, and the indexes the sink's
 * statements and the dashboard use.
 */
export function createTableSql(d: Dialect, t: ResultTable, name = t.name, opts: { replace?: boolean } = {}): string[] {
  const defs = [
    ...(d === 'postgres' ? ['"id" bigserial PRIMARY KEY'] : []),
    ...t.columns.map((c) => `${quote(c.name)} ${typeIn(d, c)}${t.key.includes(c.name) ? ' NOT NULL' : ''}`),
    ...managedDefs(d, t).map(([c, def]) => `${quote(c)} ${def}`),
    `${d === 'postgres' ? 'UNIQUE' : 'PRIMARY KEY'} (${t.key.map(quote).join(', ')})`,
  ];
  const create = opts.replace ? 'CREATE OR REPLACE TABLE' : 'CREATE TABLE';
  const out = [`${create} ${quote(name)} (${defs.join(', ')})`];
  if (d === 'postgres') {
    out.push(`CREATE INDEX ON ${quote(name)} ("created_at")`);
    if (t.finalizable) out.push(`CREATE INDEX ON ${quote(name)} (${quote(PARTITION_COLUMN)}) WHERE NOT "is_final"`);
  }
  return out;
}

/** What a dialect's catalog says of an existing table. */
export interface ExistingTable {
  /** Column name to type, spelled as TableColumn.pg or .duck. */
  columns: Map<string, string>;
  /** The column sets of its unique constraints (and primary key). */
  uniques: string[][];
}

/**
 * The statements that bring an existing table (null: none) to the description:
 * create it, add the columns a rule added, or nothing when it is already so. A
 * change that would lose or reinterpret rows is refused with one line naming the
 * rule, the table, the column and what to do.
 */
export function planTable(d: Dialect, t: ResultTable, existing: ExistingTable | null): { statements: string[] } | { refusal: string } {
  if (!existing) return { statements: createTableSql(d, t) };
  const where = `rule ${t.rule} (${t.file}) writes table ${t.name}`;
  const remedy = `write to a new table (change "-- target:"), or drop table ${t.name} to have it recreated`;
  const sameKey = existing.uniques.some((u) => u.length === t.key.length && t.key.every((k) => u.includes(k)));
  if (!sameKey) {
    const had = existing.uniques.filter((u) => !u.includes('id') || u.length > 1).map((u) => `(${u.join(', ')})`);
    return { refusal: `${where} with key (${t.key.join(', ')}), but the table's key is ${had.join(' or ') || 'none'}: ${remedy}` };
  }
  const statements: string[] = [];
  for (const c of t.columns) {
    const has = existing.columns.get(c.name);
    if (has === undefined) statements.push(`ALTER TABLE ${quote(t.name)} ADD COLUMN ${quote(c.name)} ${typeIn(d, c)}`);
    else if (has !== typeIn(d, c)) {
      return { refusal: `${where}: column "${c.name}" is ${has} in the table, the rule now outputs ${typeIn(d, c)}: cast it back in the rule, or ${remedy}` };
    }
  }
  const ruleColumns = new Set(t.columns.map((c) => c.name));
  for (const name of existing.columns.keys()) {
    if (!ruleColumns.has(name) && !MANAGED_COLUMNS.includes(name)) {
      return { refusal: `${where}: column "${name}" of the table is no longer in the rule's output: output it again, or ${remedy}` };
    }
  }
  for (const [c, def] of managedDefs(d, t)) if (!existing.columns.has(c)) statements.push(`ALTER TABLE ${quote(t.name)} ADD COLUMN ${quote(c)} ${def}`);
  return { statements };
}

/**
 * The statements that bring every table to its description, reading what exists
 * through `existing`; throws TableChangeRefused (one line per refused table)
 * before anything is changed.
 */
export async function planTables(d: Dialect, tables: readonly ResultTable[], existing: (table: string) => Promise<ExistingTable | null>): Promise<string[]> {
  const refusals: { file: string; message: string }[] = [];
  const statements: string[] = [];
  for (const t of tables) {
    const plan = planTable(d, t, await existing(t.name));
    if ('refusal' in plan) refusals.push({ file: t.file, message: plan.refusal });
    else statements.push(...plan.statements);
  }
  if (refusals.length > 0) throw new TableChangeRefused(refusals);
  return statements;
}

/** Destructive changes to result tables, one per table, each naming the rule file that asks for it. */
export class TableChangeRefused extends FraudSqlError {
  constructor(readonly refusals: readonly { file: string; message: string }[]) {
    super('TABLE_CHANGE_REFUSED', refusals.map((r) => r.message).join('\n'));
  }
}

/**
 * The columns of a table that carry a rule's rows over a restart (see
 * SinkPort.openResults): the rule's, with is_final and rule_version, so that
 * result_<rule> is restored as the table holds it. `timestamp`: read as epoch µs.
 */
export function carriedColumns(t: ResultTable, columns: readonly string[]): { name: string; timestamp: boolean }[] {
  const timestamps = new Set(t.columns.filter((c) => c.duck === 'TIMESTAMP').map((c) => c.name));
  return [...columns, ...(t.finalizable ? ['is_final'] : []), 'rule_version'].map((name) => ({ name, timestamp: timestamps.has(name) }));
}
