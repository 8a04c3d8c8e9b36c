/**
 * Runs the rules inside DuckDB. `prepare` checks every rule against the state
 * schema without running it (DESCRIBE): output columns, key, target types. A
 * rule that fails is reported with file:line:column and skipped; the others go on.
 */
import { readFileSync } from 'node:fs';
import type { DuckState } from '../state/duckdb.js';
import type { Columns, Diagnostic, RuleRun } from '../engine/ports.js';
import { createTableSql, deriveTable, planTable, quote, sameTable, type ResultTable } from '../sink/tables.js';
import { finalizeSql, replaceSql, rowsFrom, sqlString, upsertSql, watermarksFrom } from '../sink/sql.js';
import { duckTable } from '../sink/duck.js';
import type { Rule } from './loader.js';
import { originalColumn } from './params.js';
import { burstGateSql } from './burst.js';

/** A DuckDB error's "LINE n:" and caret mapped back to the rule file. */
export function duckErrorToDiagnostic(rule: Pick<Rule, 'file' | 'substitutions' | 'burst'>, err: unknown, lineOffset = 0): Diagnostic {
  const message = (err as Error).message ?? String(err);
  const first = message.split('\n')[0]!;
  const m = /\nLINE (\d+): (.*)\n( *)\^/.exec(message);
  if (!m) return { file: rule.file, line: 1, column: 1, message: first };
  const line = Number(m[1]) - lineOffset;
  const caretColumn = m[3]!.length - `LINE ${m[1]}: `.length + 1;
  // A burst rule's SQL is generated around the author's text: the line is the file's, the
  // column is where the word under DuckDB's caret stands in it.
  if (rule.burst) return { file: rule.file, line, column: wordColumn(rule.file, line, m[2]!, caretColumn - 1) ?? 1, message: first };
  // DuckDB shows a window of long lines starting with "..."; columns are then approximate.
  return { file: rule.file, line, column: Math.max(1, originalColumn(line, caretColumn, rule.substitutions)), message: first };
}

/** Where the word at index `at` of `shown` (DuckDB's copy of the line) first stands as a whole word in line `line` of `file`; null when it does not. */
function wordColumn(file: string, line: number, shown: string, at: number): number | null {
  let start = Math.min(at, shown.length);
  while (start > 0 && /\w/.test(shown[start - 1]!)) start--;
  const word = /^\w+/.exec(shown.slice(start))?.[0];
  if (!word) return null;
  let text: string;
  try {
    text = readFileSync(file, 'utf8').split('\n')[line - 1] ?? '';
  } catch {
    return null;
  }
  // Case aside: generated SQL may spell a keyword otherwise. The first occurrence: a word twice on a line is ambiguous.
  const hit = new RegExp(`\\b${word}\\b`, 'i').exec(text);
  return hit ? hit.index + 1 : null;
}

/** A rule's SQL as one statement to embed or run: without its closing semicolon. */
export function stripSemicolon(sql: string): string {
  return sql.replace(/;\s*$/, '');
}

export interface PreparedRule {
  rule: Rule;
  columns: string[];
  /** The result table its output defines (also the shape of result_<name>). */
  table: ResultTable;
  /** DuckDB types of the output columns, in the same order. */
  types: string[];
  /** Whether this rule's results are read, by another rule or itself (kept in result_<name>). */
  mirrored: boolean;
  /** Whether result_<name> was created empty by this preparation (not kept from before). */
  emptyMirror: boolean;
  /** A burst rule's check whether the batch can change anything (burstGateSql); null: always run. */
  gate: string | null;
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
    const mirror = `result_${rule.name}`;
    const at = (message: string): Diagnostic => ({ file: rule.file, line: 1, column: 1, message });
    let desc: Columns;
    try {
      // A burst's WHERE is folded into generated SQL: checked alone first, on its own line.
      const where = rule.burst?.where;
      if (where) await state.query(`DESCRIBE SELECT * FROM orders WHERE${'\n'.repeat(where.line - 1)} ${where.text}`);
      // A rule that reads its own rows needs them to exist before it can be checked.
      if (rule.readsOwnResults && !(await tableExists(state, mirror))) {
        const seeded = await seedOwnMirror(state, rule);
        if (seeded) {
          diagnostics.push(at(seeded));
          failed.add(rule.name);
          continue;
        }
      }
      desc = await state.query('DESCRIBE ' + stripSemicolon(rule.sql)).catch(async (err) => {
        // Its rows as an earlier version wrote them may not fit the new version (a
        // column renamed or added): then they are rebuilt, from a new seed.
        if (!rule.readsOwnResults || !(await tableExists(state, mirror))) throw err;
        await state.run(`DROP TABLE ${mirror}`);
        const seeded = await seedOwnMirror(state, rule);
        if (seeded) throw new Error(seeded);
        return state.query('DESCRIBE ' + stripSemicolon(rule.sql));
      });
    } catch (err) {
      diagnostics.push(duckErrorToDiagnostic(rule, err));
      failed.add(rule.name);
      continue;
    }
    const columns = desc.columns[0]! as string[];
    const types = desc.columns[1]! as string[];
    const derived = deriveTable(rule, columns, types);
    const other = Array.isArray(derived) ? undefined : prepared.find((p) => p.table.name === derived.name && !sameTable(p.table, derived));
    if (Array.isArray(derived) || other) {
      const messages = Array.isArray(derived)
        ? derived
        : [`table ${other!.table.name} is also written by rule ${other!.rule.name} with other columns or another key`];
      diagnostics.push(...messages.map(at));
      failed.add(rule.name);
      continue;
    }
    const mirrored = read.has(rule.name) || rule.readsOwnResults;
    const existing = mirrored && keepMirrors.has(rule.name) ? await duckTable(state, mirror) : null;
    const plan = existing ? planTable('duckdb', { ...derived, name: mirror }, existing) : null;
    const kept = plan !== null && 'statements' in plan && plan.statements.length === 0;
    if (mirrored && !kept) {
      for (const sql of createTableSql('duckdb', derived, mirror, { replace: true })) await state.run(sql);
      await state.run(`CREATE OR REPLACE TEMP TABLE changed_${rule.name} AS SELECT * FROM (${stripSemicolon(rule.sql)}\n) WHERE false`);
    }
    const gate = rule.burst ? burstGateSql(rule.name, rule.burst) : null;
    if (gate !== null) {
      try {
        await state.query('DESCRIBE ' + gate);
      } catch (err) {
        diagnostics.push(duckErrorToDiagnostic(rule, err));
        failed.add(rule.name);
        continue;
      }
    }
    prepared.push({ rule, columns, table: derived, types, mirrored, emptyMirror: mirrored && !kept, gate });
  }
  return { prepared, diagnostics };
}

async function tableExists(state: DuckState, table: string): Promise<boolean> {
  const r = await state.query(`SELECT count(*) FROM duckdb_tables() WHERE table_name = '${table}'`);
  return Number(r.columns[0]![0]) > 0;
}

/**
 * Creates a stand-in result_<name> for a rule that reads its own rows, before its
 * first check: the rule's output columns (as its SELECT names them) typed by the
 * rule itself, starting from untyped NULLs and repeated until the types settle.
 * Returns a problem when the rule does not name its output columns.
 */
async function seedOwnMirror(state: DuckState, rule: Rule): Promise<string | null> {
  const names = await outputNames(state, stripSemicolon(rule.sql));
  // SQL that does not parse: the check that follows reports it at its line.
  if (names === undefined) return null;
  if (names === null) return `a rule that reads its own results (result_${rule.name}) must name every output column (... AS name)`;
  let types: string[] | null = null;
  for (let round = 0; round < 4; round++) {
    const cols = names.map((n, i) => `${types ? `NULL::${types[i]}` : 'NULL'} AS ${quote(n)}`).join(', ');
    // On the rule's first line, so DuckDB's line numbers are the file's.
    const d = await state.query(`DESCRIBE WITH result_${rule.name} AS (SELECT ${cols} WHERE false) SELECT * FROM (${stripSemicolon(rule.sql)}\n)`);
    const next = d.columns[1] as string[];
    const settled = types !== null && next.every((t, i) => t === types![i]);
    types = next;
    if (settled) break;
  }
  await state.run(`CREATE TABLE result_${rule.name} (${names.map((n, i) => `${quote(n)} ${types![i]}`).join(', ')})`);
  return null;
}

/**
 * The output column names of a SELECT, from DuckDB's parser (no binding); null when
 * one is unnamed, undefined when the SQL does not parse.
 */
async function outputNames(state: DuckState, sql: string): Promise<string[] | null | undefined> {
  const r = await state.query(`SELECT json_serialize_sql(${sqlString(sql)})`);
  const parsed = JSON.parse(r.columns[0]![0] as string) as { error: boolean; statements?: { node: ParsedNode }[] };
  if (parsed.error) return undefined;
  let node = parsed.statements?.[0]?.node;
  while (node?.type === 'SET_OPERATION_NODE') node = node.left;
  if (!node?.select_list) return null;
  const names = node.select_list.map((e) => e.alias || (e.class === 'COLUMN_REF' ? e.column_names!.at(-1)! : null));
  return names.every((n) => n !== null) ? (names as string[]) : null;
}

interface ParsedNode {
  type: string;
  left?: ParsedNode;
  select_list?: { class: string; alias: string; column_names?: string[] }[];
}

/**
 * Runs every prepared rule over the current batch, in order. A rule's rows go to
 * changed_<name> when they are read again (`mirrored`: by a rule, or for its own
 * result_<name>) or when `keepChanged` (the DuckDB sink copies them from there).
 *
 * Each statement is planned anew every batch, though planning is much of a small
 * batch's cost: a DuckDB prepared statement keeps the plan it made from the
 * tables' statistics at the time, and gave wrong rows once the data changed (a
 * `price >= 500000` filter prepared over cheaper orders matched none of the
 * expensive ones inserted after; a GROUP BY prepared over an empty table returned
 * garbled strings): duckdb/duckdb#23704, fixed upstream by #24696, still so in 1.5.6.
 */
export async function runRules(state: DuckState, prepared: readonly PreparedRule[], keepChanged = false): Promise<RuleRun[]> {
  const runs: RuleRun[] = [];
  for (const p of prepared) {
    const started = performance.now();
    const { rule } = p;
    try {
      const changed = `changed_${rule.name}`;
      if (p.gate !== null && !(await gateSaysBusy(state, p))) {
        // Nothing to change: no rows, and none for the rules that read changed_<name>.
        await state.run(`DELETE FROM ${changed}`);
        runs.push({
          rule,
          result: { names: p.columns, types: p.types, columns: p.columns.map(() => []), rowCount: 0 },
          durationMs: performance.now() - started,
        });
        continue;
      }
      if (!p.mirrored && !keepChanged) {
        // Its text starts on the file's first line (its header comment): DuckDB's line numbers are the file's.
        runs.push({ rule, result: await state.query(stripSemicolon(rule.sql)), durationMs: performance.now() - started });
        continue;
      }
      // Same first line as the file (its header comment), so DuckDB's line numbers are the file's.
      await state.run(`CREATE OR REPLACE TEMP TABLE ${changed} AS ${stripSemicolon(rule.sql)}`);
      if (p.mirrored) await updateMirror(state, p, changed);
      const result = await state.query(`SELECT * FROM ${changed}`);
      runs.push({ rule, result, durationMs: performance.now() - started });
    } catch (err) {
      runs.push({ rule, error: duckErrorToDiagnostic(rule, err), durationMs: performance.now() - started });
    }
  }
  return runs;
}

/**
 * After the gate finds a batch busy, this many batches run the rule without asking
 * it: under load (a bot buying, a backlog) nearly every batch is busy, and the gate
 * costs a third of the rule's time on top of it (13 of 36 ms a batch at 1,000
 * orders/s). Running the rule when the gate would have said quiet changes nothing:
 * it repeats the touched keys' finished bursts as they are (upserts that write
 * nothing, alerts already sent), as a busy batch does. Skipping the gate only costs
 * time, at most this many rule runs when traffic turns quiet.
 */
const TRUST_BUSY_FOR = 4;
const skipsLeft = new WeakMap<PreparedRule, number>();

/** Whether the rule should run this batch (see burstGateSql and TRUST_BUSY_FOR). */
async function gateSaysBusy(state: DuckState, p: PreparedRule): Promise<boolean> {
  const left = skipsLeft.get(p) ?? 0;
  if (left > 0) {
    skipsLeft.set(p, left - 1);
    return true;
  }
  const r = await state.query(p.gate!);
  const busy = r.columns[0]![0] === true;
  if (busy) skipsLeft.set(p, TRUST_BUSY_FOR);
  return busy;
}

/** Recomputes result_<name> of the mirrored rules (all, or those named) from the current batch, with no output. */
export async function rebuildMirrors(state: DuckState, prepared: readonly PreparedRule[], only?: ReadonlySet<string>): Promise<void> {
  for (const p of prepared) {
    if (!p.mirrored || (only && !only.has(p.rule.name))) continue;
    const changed = `changed_${p.rule.name}`;
    await state.run(`CREATE OR REPLACE TEMP TABLE ${changed} AS ${stripSemicolon(p.rule.sql)}`);
    await updateMirror(state, p, changed);
  }
}

/** result_<name> is written by the same replace and upsert statements as the sinks' tables. */
async function updateMirror(state: DuckState, p: PreparedRule, changed: string): Promise<void> {
  const { rule, table } = p;
  const mirror = `result_${rule.name}`;
  const from = rowsFrom('duckdb', table.columns, changed);
  if (rule.replace.length > 0) await state.run(replaceSql(table, mirror, rule.replace, from));
  await state.run(upsertSql(table, mirror, p.columns, from, sqlString(rule.version), rule.grows));
}

/** Marks the mirrors' rows final as the sinks' finalize step does, with the same watermarks. */
export async function finalizeMirrors(state: DuckState, prepared: readonly PreparedRule[], watermarks: ReadonlyMap<number, number>): Promise<void> {
  if (watermarks.size === 0) return;
  for (const p of prepared) {
    if (p.mirrored && p.rule.finalAfter) await state.run(finalizeSql(`result_${p.rule.name}`, p.rule.finalAfter, watermarksFrom('duckdb', watermarks)));
  }
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
  const types = new Map<string, string>([
    ...p.table.columns.map((c): [string, string] => [c.name, c.duck]),
    ['is_final', 'BOOLEAN'],
    ['rule_version', 'VARCHAR'],
  ]);
  const literal = (name: string, v: unknown): string => {
    if (v === null) return 'NULL';
    const s = String(v);
    const type = types.get(name);
    if (type === 'VARCHAR') return sqlString(s);
    if (type === 'BOOLEAN') return s === 'true' || s === 't' ? 'true' : 'false';
    if (type === 'DOUBLE' && Number.isFinite(Number(s))) return `${Number(s)}::DOUBLE`;
    if (!/^-?\d+$/.test(s)) throw new Error(`restoring ${mirror}: ${name} = ${s} is not an integer`);
    return type === 'TIMESTAMP' ? `make_timestamp(${s}::BIGINT)` : `${s}::BIGINT`;
  };
  for (let from = 0; from < rows.rowCount; from += 1000) {
    const values: string[] = [];
    for (let i = from; i < Math.min(rows.rowCount, from + 1000); i++) {
      values.push(`(${rows.names.map((n, c) => literal(n, rows.columns[c]![i])).join(', ')})`);
    }
    await state.run(`INSERT INTO ${mirror} (${rows.names.join(', ')}) VALUES ${values.join(', ')}`);
  }
}
