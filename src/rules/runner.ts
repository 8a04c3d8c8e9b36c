/**
 * Runs the rules inside DuckDB. `prepare` checks every rule against the state
 * schema without running it (DESCRIBE): output columns, key, target types. A
 * rule that fails is reported with file:line:column and skipped; the others go on.
 */
import type { DuckState } from '../state/duckdb.js';
import type { Columns, Diagnostic, RuleRun } from '../engine/ports.js';
import { DUCK_TYPES, MANAGED_COLUMNS, TARGETS, FINALIZABLE, compatible } from '../sink/schema.js';
import type { Rule } from './loader.js';
import { originalColumn } from './params.js';
import { burstColumns } from './burst.js';

/** A DuckDB error's "LINE n:" and caret mapped back to the rule file. */
export function duckErrorToDiagnostic(rule: Pick<Rule, 'file' | 'substitutions' | 'burst'>, err: unknown, lineOffset = 0): Diagnostic {
  const message = (err as Error).message ?? String(err);
  const first = message.split('\n')[0]!;
  const m = /\nLINE (\d+): (.*)\n( *)\^/.exec(message);
  if (!m) return { file: rule.file, line: 1, column: 1, message: first };
  const line = Number(m[1]) - lineOffset;
  // A burst rule's SQL is generated around the author's text: the line is the file's, the column is not.
  if (rule.burst) return { file: rule.file, line, column: 1, message: first };
  const caretColumn = m[3]!.length - `LINE ${m[1]}: `.length + 1;
  // DuckDB shows a window of long lines starting with "..."; columns are then approximate.
  return { file: rule.file, line, column: Math.max(1, originalColumn(line, caretColumn, rule.substitutions)), message: first };
}

function stripSemicolon(sql: string): string {
  return sql.replace(/;\s*$/, '');
}

export interface PreparedRule {
  rule: Rule;
  columns: string[];
  /** Whether this rule's results are read, by another rule or itself (kept in result_<name>). */
  mirrored: boolean;
  /** Whether result_<name> was created empty by this preparation (not kept from before). */
  emptyMirror: boolean;
}

/**
 * Checks every rule in dependency order, creating result_<name> tables for rules
 * others read. Returns the rules that passed and diagnostics for those that did not.
 */
export async function prepareRules(
  state: DuckState,
  rules: readonly Rule[],
  /** Mirrored rules whose result_<name> already holds this version's rows: left as they are. */
  keepMirrors: ReadonlySet<string> = new Set(),
): Promise<{ prepared: PreparedRule[]; diagnostics: Diagnostic[] }> {
  const diagnostics: Diagnostic[] = [];
  const prepared: PreparedRule[] = [];
  const read = new Set(rules.flatMap((r) => r.after));
  const failed = new Set<string>();
  for (const rule of rules) {
    const blocked = rule.after.filter((a) => failed.has(a));
    if (blocked.length > 0) {
      diagnostics.push({ file: rule.file, line: 1, column: 1, message: `not loaded: it reads result_${blocked[0]}, whose rule is invalid` });
      failed.add(rule.name);
      continue;
    }
    const problems: Diagnostic[] = [];
    const mirror = `result_${rule.name}`;
    // A burst rule's SQL reads its carried bursts from result_<name>, in the target's
    // shape: a column the target lacks is told as such, not as a failure of that SQL.
    const strange = rule.burst && TARGETS[rule.target] ? burstColumns(rule.burst).filter((c) => !(c in TARGETS[rule.target]!)) : [];
    if (strange.length > 0) {
      const columns = Object.keys(TARGETS[rule.target]!).join(', ');
      for (const c of strange)
        diagnostics.push({ file: rule.file, line: 1, column: 1, message: `column "${c}" is not a column of ${rule.target} (${columns})` });
      failed.add(rule.name);
      continue;
    }
    // A rule that reads its own rows needs them to exist before it can be checked:
    // until its first check they take the shape of its target table.
    if (rule.readsOwnResults && TARGETS[rule.target] && !(await tableExists(state, mirror))) {
      const defs = Object.entries(TARGETS[rule.target]!).map(([c, t]) => `${c} ${DUCK_TYPES[t]}`);
      await state.run(`CREATE TABLE ${mirror} (${defs.join(', ')})`);
    }
    let desc: Columns;
    try {
      desc = await state.query('DESCRIBE ' + stripSemicolon(rule.sql));
    } catch (err) {
      diagnostics.push(duckErrorToDiagnostic(rule, err));
      failed.add(rule.name);
      continue;
    }
    const columns = desc.columns[0]! as string[];
    const types = desc.columns[1]! as string[];
    const target = TARGETS[rule.target];
    const at = (message: string): Diagnostic => ({ file: rule.file, line: 1, column: 1, message });
    if (!target) {
      problems.push(at(`target "${rule.target}" is not a result table (one of: ${Object.keys(TARGETS).join(', ')})`));
    } else {
      columns.forEach((c, i) => {
        if (MANAGED_COLUMNS.has(c)) problems.push(at(`column "${c}" is managed by fraud-sql; the rule must not output it`));
        else if (!(c in target)) problems.push(at(`column "${c}" is not a column of ${rule.target} (${Object.keys(target).join(', ')})`));
        else if (!compatible(target[c]!, types[i]!)) problems.push(at(`column "${c}" is ${types[i]}, but ${rule.target}.${c} is ${target[c]}`));
      });
      for (const c of Object.keys(target)) if (!columns.includes(c)) problems.push(at(`the rule does not output "${c}", which ${rule.target} requires`));
      if (FINALIZABLE.has(rule.target) && !rule.finalAfter) problems.push(at(`${rule.target} rows become final: add "-- final_after: <column or expression>"`));
    }
    for (const k of rule.key) if (!columns.includes(k)) problems.push(at(`key column "${k}" is not in the rule's output`));
    for (const g of rule.grows) if (!columns.includes(g)) problems.push(at(`grows column "${g}" is not in the rule's output`));
    if (new Set(columns).size !== columns.length) problems.push(at('the rule outputs a column name twice'));
    if (problems.length > 0) {
      diagnostics.push(...problems);
      failed.add(rule.name);
      continue;
    }
    const mirrored = read.has(rule.name) || rule.readsOwnResults;
    const kept = mirrored && keepMirrors.has(rule.name) && sameColumns(await state.query(`DESCRIBE ${mirror}`), desc);
    if (mirrored && !kept) {
      await state.run(`CREATE OR REPLACE TABLE ${mirror} AS SELECT * FROM (${stripSemicolon(rule.sql)}\n) WHERE false`);
      await state.run(`CREATE OR REPLACE TEMP TABLE changed_${rule.name} AS SELECT * FROM ${mirror}`);
    }
    prepared.push({ rule, columns, mirrored, emptyMirror: mirrored && !kept });
  }
  return { prepared, diagnostics };
}

async function tableExists(state: DuckState, table: string): Promise<boolean> {
  const r = await state.query(`SELECT count(*) FROM duckdb_tables() WHERE table_name = '${table}'`);
  return Number(r.columns[0]![0]) > 0;
}

/** Whether two DESCRIBE results list the same columns with the same types. */
function sameColumns(a: Columns, b: Columns): boolean {
  const shape = (d: Columns) => JSON.stringify([d.columns[0], d.columns[1]]);
  return shape(a) === shape(b);
}

/** Runs every prepared rule over the current batch, in order. */
export async function runRules(state: DuckState, prepared: readonly PreparedRule[]): Promise<RuleRun[]> {
  const runs: RuleRun[] = [];
  for (const p of prepared) {
    const started = performance.now();
    const { rule } = p;
    try {
      const changed = `changed_${rule.name}`;
      // Same first line as the file (its header comment), so DuckDB's line numbers are the file's.
      await state.run(`CREATE OR REPLACE TEMP TABLE ${changed} AS ${stripSemicolon(rule.sql)}`);
      if (p.mirrored) await updateMirror(state, rule, changed);
      const result = await state.query(`SELECT * FROM ${changed}`);
      runs.push({ rule, result, durationMs: performance.now() - started });
    } catch (err) {
      runs.push({ rule, error: duckErrorToDiagnostic(rule, err), durationMs: performance.now() - started });
    }
  }
  return runs;
}

/** Recomputes result_<name> of the mirrored rules (all, or those named) from the current batch, with no output. */
export async function rebuildMirrors(state: DuckState, prepared: readonly PreparedRule[], only?: ReadonlySet<string>): Promise<void> {
  for (const p of prepared) {
    if (!p.mirrored || (only && !only.has(p.rule.name))) continue;
    const changed = `changed_${p.rule.name}`;
    await state.run(`CREATE OR REPLACE TEMP TABLE ${changed} AS ${stripSemicolon(p.rule.sql)}`);
    await updateMirror(state, p.rule, changed);
  }
}

/** result_<name> follows the same upsert and replace semantics as the PostgreSQL table. */
async function updateMirror(state: DuckState, rule: Rule, changed: string): Promise<void> {
  const mirror = `result_${rule.name}`;
  const match = (rule.replace.length > 0 ? rule.replace : rule.key).map((c) => `m.${c} = c.${c}`).join(' AND ');
  await state.run(`DELETE FROM ${mirror} m WHERE EXISTS (SELECT 1 FROM ${changed} c WHERE ${match})`);
  await state.run(`INSERT INTO ${mirror} SELECT * FROM ${changed}`);
}

/** Drops mirrored rows that are final and older than the state horizon. */
export async function trimMirrors(
  state: DuckState,
  prepared: readonly PreparedRule[],
  watermarks: ReadonlyMap<number, number>,
  horizonUs: number,
): Promise<void> {
  if (watermarks.size === 0) return;
  const wm = [...watermarks].map(([p, us]) => `(${p}, make_timestamp(${Math.floor(us)}::BIGINT))`).join(', ');
  for (const p of prepared) {
    if (!p.mirrored || !p.rule.finalAfter) continue;
    await state.run(`WITH wm(kafka_partition, watermark) AS (VALUES ${wm})
      DELETE FROM result_${p.rule.name} r USING wm
      WHERE r.source_partition = wm.kafka_partition AND (${p.rule.finalAfter}) < wm.watermark - to_microseconds(${horizonUs}::BIGINT)`);
  }
}

/**
 * Replaces the rows of the given partitions in result_<name> with `rows` (read
 * back from the sink after a restart or a rebalance; none when partitions go).
 */
export async function restoreMirror(state: DuckState, p: PreparedRule, partitions: readonly number[], rows: Columns | null): Promise<void> {
  if (!p.mirrored || partitions.length === 0) return;
  const mirror = `result_${p.rule.name}`;
  await state.run(`DELETE FROM ${mirror} WHERE source_partition IN (${partitions.map(Number).join(', ')})`);
  if (!rows || rows.rowCount === 0) return;
  const types = TARGETS[p.rule.target]!;
  const literal = (name: string, v: unknown): string => {
    if (v === null) return 'NULL';
    const s = String(v);
    if (types[name] === 'text') return `'${s.replace(/'/g, "''")}'`;
    if (!/^-?\d+$/.test(s)) throw new Error(`restoring ${mirror}: ${name} = ${s} is not an integer`);
    return types[name] === 'timestamptz' ? `make_timestamp(${s}::BIGINT)` : `${s}::BIGINT`;
  };
  for (let from = 0; from < rows.rowCount; from += 1000) {
    const values: string[] = [];
    for (let i = from; i < Math.min(rows.rowCount, from + 1000); i++) {
      values.push(`(${rows.names.map((n, c) => literal(n, rows.columns[c]![i])).join(', ')})`);
    }
    await state.run(`INSERT INTO ${mirror} (${rows.names.join(', ')}) VALUES ${values.join(', ')}`);
  }
}
