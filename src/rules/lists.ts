/**
 * Allow and block lists: `lists/*.csv` in the rules directory, one file per list,
 * each a DuckDB table named after its file that any rule's SQL can read
 * (`WHERE ip_address NOT IN (SELECT ip_address FROM allow_ips)`). A list is a
 * header line of column names, then one line per entry; every value is text.
 * They load with the rules, and an edit is applied as a rule edit is: checked
 * first, and a broken file keeps the previous version, reported at its line.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Diagnostic } from '../engine/ports.js';
import type { DuckState } from '../state/duckdb.js';
import { quote } from '../sink/tables.js';
import { sqlString } from '../sink/sql.js';

export interface List {
  /** The table's name: the file's, without `.csv`. */
  name: string;
  file: string;
  columns: string[];
  rows: string[][];
}

const NAME = /^[a-z_][a-z0-9_]*$/;
/** The state's own tables and views, which a list cannot replace. */
const RESERVED = /^(orders|batch_orders|incoming_orders|burst|result_.*|changed_.*)$/;

/** The lists of a rules directory (its `lists/` folder; none without one), with every problem found. */
export function loadLists(rulesDir: string): { lists: List[]; diagnostics: Diagnostic[] } {
  const dir = path.join(rulesDir, 'lists');
  if (!existsSync(dir)) return { lists: [], diagnostics: [] };
  const lists: List[] = [];
  const diagnostics: Diagnostic[] = [];
  for (const f of readdirSync(dir)
    .filter((f) => f.endsWith('.csv'))
    .sort()) {
    const file = path.join(dir, f);
    const parsed = parseList(file, readFileSync(file, 'utf8'));
    if ('list' in parsed) lists.push(parsed.list);
    else diagnostics.push(...parsed.diagnostics);
  }
  return { lists, diagnostics };
}

/** One list file: RFC 4180 CSV (quoted fields may hold commas, quotes doubled, line breaks). */
export function parseList(file: string, text: string): { list: List } | { diagnostics: Diagnostic[] } {
  const name = path.basename(file, '.csv');
  const diagnostics: Diagnostic[] = [];
  const at = (line: number, message: string) => diagnostics.push({ file, line, column: 1, message });
  if (!NAME.test(name)) at(1, `a list's file name is its table's name: "${name}" must be lower_snake_case (letters, digits, _)`);
  else if (RESERVED.test(name)) at(1, `"${name}" is a table fraud-sql keeps itself: name the list otherwise`);
  const records = csvRecords(text);
  if ('error' in records) {
    at(records.line, records.error);
    return { diagnostics };
  }
  const [header, ...rest] = records.rows.filter((r) => !(r.fields.length === 1 && r.fields[0] === ''));
  if (!header) {
    at(1, 'a list starts with a header line naming its columns, e.g. "ip_address,reason"');
    return { diagnostics };
  }
  const columns = header.fields.map((c) => c.trim());
  for (const c of columns) if (!NAME.test(c)) at(header.line, `column "${c}" must be lower_snake_case (letters, digits, _)`);
  const dup = columns.find((c, i) => columns.indexOf(c) !== i);
  if (dup) at(header.line, `column "${dup}" is named twice`);
  for (const r of rest) {
    if (r.fields.length !== columns.length) at(r.line, `${r.fields.length} values where the header names ${columns.length} columns (${columns.join(', ')})`);
  }
  if (diagnostics.length > 0) return { diagnostics };
  return { list: { name, file, columns, rows: rest.map((r) => r.fields.map((v) => v.trim())) } };
}

/** The records of a CSV text with the line each starts on. */
function csvRecords(text: string): { rows: { line: number; fields: string[] }[] } | { error: string; line: number } {
  const rows: { line: number; fields: string[] }[] = [];
  let line = 1;
  let fields: string[] = [];
  let field = '';
  let quoted = false;
  let start = 1;
  let quoteLine = 1;
  const s = text.replace(/^\uFEFF/, '');
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]!;
    if (quoted) {
      if (ch === '"' && s[i + 1] === '"') {
        field += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else {
        if (ch === '\n') line++;
        field += ch;
      }
      continue;
    }
    if (ch === '"' && field.trim() === '') {
      quoted = true;
      quoteLine = line;
      field = '';
    } else if (ch === ',') {
      fields.push(field);
      field = '';
    } else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && s[i + 1] === '\n') i++;
      fields.push(field);
      rows.push({ line: start, fields });
      fields = [];
      field = '';
      line++;
      start = line;
    } else field += ch;
  }
  if (quoted) return { error: 'a quoted value is never closed (a " is missing)', line: quoteLine };
  if (field !== '' || fields.length > 0) {
    fields.push(field);
    rows.push({ line: start, fields });
  }
  return { rows };
}

/** An entry operators added at run time (`fraud-sql lists add`), kept in PostgreSQL. */
export interface ListEntry {
  list: string;
  value: string;
  reason: string;
}

/**
 * The file lists with the run-time entries added: the value in the list's first
 * column, the reason in its `reason` column when it has one. An entry of a list
 * that has no file is left out (the command that adds one refuses such a list).
 */
export function withEntries(lists: readonly List[], entries: readonly ListEntry[]): List[] {
  return lists.map((l) => {
    const mine = entries.filter((e) => e.list === l.name);
    if (mine.length === 0) return l;
    const reason = l.columns.indexOf('reason');
    const rows = mine.map((e) => l.columns.map((_, i) => (i === 0 ? e.value : i === reason ? e.reason : '')));
    return { ...l, rows: [...l.rows, ...rows] };
  });
}

/** (Re)creates each list's table in `state`, all columns VARCHAR, with its entries. */
export async function installLists(state: DuckState, lists: readonly List[]): Promise<void> {
  for (const l of lists) {
    await state.run(`CREATE OR REPLACE TABLE ${quote(l.name)} (${l.columns.map((c) => `${quote(c)} VARCHAR`).join(', ')})`);
    for (let from = 0; from < l.rows.length; from += 1000) {
      const values = l.rows.slice(from, from + 1000).map((r) => `(${r.map(sqlString).join(', ')})`);
      await state.run(`INSERT INTO ${quote(l.name)} VALUES ${values.join(', ')}`);
    }
  }
}

/** Replaces the entries of one of `rulesDir`'s lists, already installed in `state`, with `entries`. */
export async function replaceList(state: DuckState, rulesDir: string, name: string, entries: readonly Record<string, string>[]): Promise<void> {
  const list = loadLists(rulesDir).lists.find((l) => l.name === name);
  if (!list) throw new Error(`no list "${name}" in ${path.join(rulesDir, 'lists')}`);
  const unknown = [...new Set(entries.flatMap((e) => Object.keys(e)))].filter((c) => !list.columns.includes(c));
  if (unknown.length > 0) throw new Error(`list "${name}" has no column ${unknown.join(', ')} (its columns: ${list.columns.join(', ')})`);
  await installLists(state, [{ ...list, rows: entries.map((e) => list.columns.map((c) => e[c] ?? '')) }]);
}
