/**
 * Reads queries/*.sql: each file is one rule, a SELECT with a small header of
 * `-- field: value` lines (see queries/README.md). Files load in sorted order and
 * every problem is collected with its file:line:column, never just the first.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import {
  evalDuration,
  parseParamValue,
  substitute,
  type ParamValue,
  type Substitution,
} from './params.js';
import type { Diagnostic, RuleOutput } from '../engine/ports.js';

export type Severity = 'info' | 'low' | 'medium' | 'high';
const SEVERITIES: readonly Severity[] = ['info', 'low', 'medium', 'high'];

/** A rule file as loaded: its output (what the engine needs) and its definition. */
export interface Rule extends RuleOutput {
  description: string;
  severity: Severity;
  params: Map<string, ParamValue>;
  /** The file's text with parameters substituted; line numbers are the file's. */
  sql: string;
  substitutions: Substitution[];
  /** Other rules whose results (`result_<name>`, `changed_<name>`) this one reads: it runs after them. */
  after: string[];
  /**
   * Whether the rule reads its own current rows (`result_<own name>`): incremental
   * state, carried from batch to batch and restored from the sink on start.
   */
  readsOwnResults: boolean;
}

export function formatDiagnostic(d: Diagnostic): string {
  return `${d.file}:${d.line}:${d.column}: ${d.message}`;
}

const FIELD = /^--\s*(name|description|severity|target|key|replace|final_after|state|grows):\s*(.*)$/;
const PARAM = /^--\s*param\s+([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.+?)\s*$/;
const IDENT = /^[a-z_][a-z0-9_]*$/;

/** `suspicious_ips.min_orders` -> value text: parameter overrides from configuration. */
export type ParamOverrides = ReadonlyMap<string, string>;

export function parseRule(file: string, text: string, overrides: ParamOverrides = new Map()): { rule?: Rule; diagnostics: Diagnostic[] } {
  const diagnostics: Diagnostic[] = [];
  const report = (line: number, column: number, message: string) => diagnostics.push({ file, line, column, message });
  const fields = new Map<string, { value: string; line: number }>();
  const params = new Map<string, ParamValue>();
  const lines = text.split('\n');
  let bodyStart = lines.length;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '') continue;
    if (!line.startsWith('--')) {
      bodyStart = i;
      break;
    }
    const f = FIELD.exec(line);
    if (f) {
      if (fields.has(f[1]!)) report(i + 1, 1, `"${f[1]}" is given twice`);
      fields.set(f[1]!, { value: f[2]!.trim(), line: i + 1 });
      continue;
    }
    const p = PARAM.exec(line);
    if (p) {
      const v = parseParamValue(p[2]!);
      if (typeof v === 'string') report(i + 1, line.indexOf(p[2]!) + 1, `param ${p[1]}: ${v}`);
      else params.set(p[1]!, v);
    } else if (/^--\s*param\b/.test(line)) {
      report(i + 1, 1, 'a parameter reads "-- param name = value"');
    }
  }
  if (fields.size === 0 && params.size === 0) {
    report(1, 1, 'no header: a rule starts with "-- target: <table>" and "-- key: <columns>" lines (see queries/README.md)');
    return { diagnostics };
  }
  if (bodyStart === lines.length || lines.slice(bodyStart).join('').trim() === '') {
    report(lines.length, 1, 'the rule has a header but no SELECT');
    return { diagnostics };
  }

  const name = fields.get('name')?.value ?? path.basename(file, '.sql');
  if (!IDENT.test(name)) report(fields.get('name')?.line ?? 1, 1, `name "${name}" must be lower_snake_case`);

  for (const [k, v] of overrides) {
    const [ruleName, paramName] = k.split('.', 2) as [string, string];
    if (ruleName !== name) continue;
    if (!params.has(paramName)) {
      report(1, 1, `configuration sets ${k}, but the rule has no parameter "${paramName}"`);
      continue;
    }
    const parsed = parseParamValue(v);
    if (typeof parsed === 'string') report(1, 1, `configuration ${k}: ${parsed}`);
    else if (parsed.kind !== params.get(paramName)!.kind) report(1, 1, `configuration ${k}: expected a ${params.get(paramName)!.kind}, got a ${parsed.kind}`);
    else params.set(paramName, parsed);
  }

  const target = fields.get('target');
  if (!target) report(1, 1, 'missing "-- target: <table>"');
  else if (!IDENT.test(target.value)) report(target.line, 1, `target "${target.value}" is not a table name`);
  const keyField = fields.get('key');
  const list = (s: string | undefined) => (s ?? '').split(',').map((x) => x.trim()).filter(Boolean);
  const key = list(keyField?.value);
  if (!keyField) report(1, 1, 'missing "-- key: <columns>"');
  else if (key.length === 0) report(keyField.line, 1, 'key names no column');
  const replace = list(fields.get('replace')?.value);
  for (const c of replace) if (!key.includes(c)) report(fields.get('replace')!.line, 1, `replace column "${c}" is not in the key`);

  const severityField = fields.get('severity');
  const severity = (severityField?.value ?? 'info') as Severity;
  if (!SEVERITIES.includes(severity)) report(severityField!.line, 1, `severity "${severity}" is not one of ${SEVERITIES.join(', ')}`);

  let stateMicros = 0;
  const stateField = fields.get('state');
  if (!stateField) report(1, 1, 'missing "-- state: <duration>" (how far back in event time the rule reads; 0s for none)');
  else {
    const v = evalDuration(stateField.value, params);
    if (typeof v === 'string') report(stateField.line, 1, `state: ${v}`);
    else stateMicros = v;
  }

  let finalAfter: string | null = null;
  const finalField = fields.get('final_after');
  if (finalField) {
    const s = substitute(finalField.value, params);
    for (const u of s.unknown) report(finalField.line, 1, `final_after: unknown parameter $${u.name}`);
    finalAfter = s.text;
  }

  const body = substitute(text, params);
  for (const u of body.unknown) {
    if (u.line > bodyStart) report(u.line, u.column, `unknown parameter $${u.name} (declare it with "-- param ${u.name} = ...")`);
  }
  // Comments are documentation: only references in the SQL itself order the rules.
  const code = body.text.split('\n').map((l) => l.replace(/--.*$/, '')).join('\n');
  const read = new Set([...code.matchAll(/\b(?:result|changed)_([a-z_][a-z0-9_]*)\b/g)].map((m) => m[1]!));
  const readsOwnResults = read.delete(name);

  const version = createHash('sha256')
    .update(text)
    .update(JSON.stringify([...params].map(([k, v]) => [k, v.kind === 'integer' ? v.value.toString() : v])))
    .digest('hex')
    .slice(0, 12);

  if (diagnostics.length > 0) return { diagnostics };
  return {
    diagnostics,
    rule: {
      name,
      file,
      description: fields.get('description')?.value ?? '',
      severity,
      target: target!.value,
      key,
      replace,
      grows: list(fields.get('grows')?.value),
      finalAfter,
      stateMicros,
      params,
      sql: body.text,
      substitutions: body.substitutions,
      version,
      after: [...read],
      readsOwnResults,
    },
  };
}

/** Loads every *.sql in `dir`, sorted, then orders rules so each runs after those it reads. */
export function loadRules(dir: string, overrides: ParamOverrides = new Map()): { rules: Rule[]; diagnostics: Diagnostic[] } {
  const diagnostics: Diagnostic[] = [];
  let files: string[];
  try {
    if (!statSync(dir).isDirectory()) throw new Error('not a directory');
    files = readdirSync(dir).filter((f) => f.endsWith('.sql')).sort();
  } catch (err) {
    return { rules: [], diagnostics: [{ file: dir, line: 0, column: 0, message: `cannot read the rules directory: ${(err as Error).message}` }] };
  }
  if (files.length === 0) diagnostics.push({ file: dir, line: 0, column: 0, message: 'no rule files (*.sql) in the rules directory' });
  const rules: Rule[] = [];
  const invalid = new Set<string>();
  for (const f of files) {
    const file = path.join(dir, f);
    const text = readFileSync(file, 'utf8');
    if (text.trim() === '') {
      diagnostics.push({ file, line: 1, column: 1, message: 'the rule file is empty' });
      continue;
    }
    const r = parseRule(file, text, overrides);
    diagnostics.push(...r.diagnostics);
    if (!r.rule) invalid.add(/^--\s*name:\s*(\S+)/m.exec(text)?.[1] ?? path.basename(f, '.sql'));
    if (r.rule) {
      const dup = rules.find((x) => x.name === r.rule!.name);
      if (dup) diagnostics.push({ file, line: 1, column: 1, message: `rule name "${r.rule.name}" is also used by ${dup.file}` });
      else rules.push(r.rule);
    }
  }
  return { rules: orderRules(rules, diagnostics, invalid), diagnostics };
}

/**
 * Topological order by `after`, stable in file order. A cycle or a missing rule is
 * a diagnostic, and a rule that reads an invalid or missing one is left out.
 */
function orderRules(rules: Rule[], diagnostics: Diagnostic[], invalid: ReadonlySet<string>): Rule[] {
  const byName = new Map(rules.map((r) => [r.name, r]));
  const ordered: Rule[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (r: Rule, trail: string[]) => {
    if (state.get(r.name) === 'done') return;
    if (state.get(r.name) === 'visiting') {
      diagnostics.push({ file: r.file, line: 1, column: 1, message: `rules read each other's results in a cycle: ${[...trail, r.name].join(' -> ')}` });
      return;
    }
    state.set(r.name, 'visiting');
    let ok = true;
    for (const dep of r.after) {
      const d = byName.get(dep);
      if (!d) {
        ok = false;
        diagnostics.push({
          file: r.file, line: 1, column: 1,
          message: invalid.has(dep) ? `not loaded: it reads the results of "${dep}", whose rule is invalid` : `reads the results of "${dep}", but no rule is named so`,
        });
      } else {
        visit(d, [...trail, r.name]);
        if (!ordered.includes(d)) ok = false;
      }
    }
    state.set(r.name, 'done');
    if (ok) ordered.push(r);
  };
  for (const r of rules) visit(r, []);
  return ordered;
}
