/**
 * Reads queries/*.sql: each file is one rule, a SELECT with a small header of
 * `-- field: value` lines (see queries/README.md). Files load in sorted order and
 * every problem is collected with its file:line:column, never just the first.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { evalDuration, parseParamValue, substitute, type ParamValue, type Substitution } from './params.js';
import type { Diagnostic, RuleOutput } from '../engine/ports.js';
import { burstBookkeeping, burstFields, burstSql, parseBurstBody, parseBurstHeader, type BurstSpec } from './burst.js';
import { SCENARIOS } from '../generator/orders.js';
import { parseAlertHeader, type AlertSpec } from '../alerts/alert.js';
import { EVIDENCE_DEFAULT_MAX, evidenceSpec, parseEvidenceHeader, type EvidenceSpec } from '../alerts/evidence.js';

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
  /** What the rule detects in labelled traffic (`-- label:`), for `backtest`; null when it names nothing. */
  label: RuleLabel | null;
  /** A burst rule's definition (`-- burst:`), from which fraud-sql generated `sql`; null for a plain SELECT. */
  burst: BurstSpec | null;
  /**
   * The order field whose orders must all meet in one place for the rule to be
   * exact: a burst rule's key, or `-- partition_by:`. fraud-sql feeds the rule from
   * a topic partitioned by it (see src/plan.ts). Null when any partitioning will do
   * (per-window sums, per-order checks).
   */
  partitionKey: string | null;
}

/**
 * `-- label: bot, burst where orders >= $min_orders within $window`: the generator
 * scenarios whose orders the rule should flag, and optionally the condition those
 * orders must meet to be detectable at all, at the rule's actual parameters.
 */
export interface RuleLabel {
  /** Scenario names; empty for `*`: every order, whatever its label. */
  scenarios: string[];
  condition: LabelCondition | null;
  /** The key columns that name an order field: a row flags the orders with these values. */
  keyFields: string[];
  /** The label with the parameters' values, as reports show it. */
  text: string;
}

export type LabelCondition =
  /** The key's orders (all of them, as the rule sees them) reach `min` within some (t - window, t]. */
  | { kind: 'orders_within'; min: number; windowMicros: number }
  /** The key's orders carry at least `min` distinct values of `field` within some (t - window, t]. */
  | { kind: 'distinct_within'; field: string; min: number; windowMicros: number }
  /** The labelled order's price x quantity is at least `min`. */
  | { kind: 'total_at_least'; min: bigint };

/** Order fields a result column can name, so that a row points back at orders. */
export const ORDER_KEY_FIELDS: readonly string[] = ['order_id', 'user_id', 'product_id', 'product_name', 'ip_address', 'payment_method'];

export function formatDiagnostic(d: Diagnostic): string {
  return `${d.file}:${d.line}:${d.column}: ${d.message}`;
}

const FIELD = /^--\s*(name|description|severity|target|key|replace|final_after|state|grows|label|burst|partition_by|alert|evidence):\s*(.*)$/;
/** Header fields that a `-- burst:` rule gets from its definition. */
const BURST_DERIVED = ['key', 'replace', 'grows', 'final_after', 'state'];
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
  const list = (s: string | undefined) =>
    (s ?? '')
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean);
  const severityField = fields.get('severity');
  const severity = (severityField?.value ?? 'info') as Severity;
  if (!SEVERITIES.includes(severity)) report(severityField!.line, 1, `severity "${severity}" is not one of ${SEVERITIES.join(', ')}`);

  const body = substitute(text, params);
  for (const u of body.unknown) {
    if (u.line > bodyStart) report(u.line, u.column, `unknown parameter $${u.name} (declare it with "-- param ${u.name} = ...")`);
  }

  let key: string[];
  let replace: string[];
  let grows: string[];
  let finalAfter: string | null = null;
  let stateMicros = 0;
  let burst: BurstSpec | null = null;
  const burstField = fields.get('burst');
  if (burstField) {
    for (const f of BURST_DERIVED) {
      const given = fields.get(f);
      if (given) report(given.line, 1, `"${f}" follows from "-- burst:": leave it out (see queries/README.md, Burst rules)`);
    }
    const def = parseBurstHeader(burstField.value, burstField.line, params, (message) => report(burstField.line, 1, message));
    const parsed = parseBurstBody(body.text.split('\n'), bodyStart, (line, message) => report(line, 1, message));
    if (def && parsed) burst = { ...def, ...parsed };
    ({ key, replace, grows, finalAfter, stateMicros } = def
      ? burstFields(def, parsed?.aggregates ?? [])
      : { key: [], replace: [], grows: [], finalAfter: null, stateMicros: 0 });
  } else {
    const keyField = fields.get('key');
    key = list(keyField?.value);
    if (!keyField) report(1, 1, 'missing "-- key: <columns>"');
    else if (key.length === 0) report(keyField.line, 1, 'key names no column');
    replace = list(fields.get('replace')?.value);
    for (const c of replace) if (!key.includes(c)) report(fields.get('replace')!.line, 1, `replace column "${c}" is not in the key`);
    grows = list(fields.get('grows')?.value);

    const stateField = fields.get('state');
    if (!stateField) report(1, 1, 'missing "-- state: <duration>" (how far back in event time the rule reads; 0s for none)');
    else {
      const v = evalDuration(stateField.value, params);
      if (typeof v === 'string') report(stateField.line, 1, `state: ${v}`);
      else stateMicros = v;
    }

    const finalField = fields.get('final_after');
    if (finalField) {
      const s = substitute(finalField.value, params);
      for (const u of s.unknown) report(finalField.line, 1, `final_after: unknown parameter $${u.name}`);
      finalAfter = s.text;
    }
  }

  // Comments are documentation: only references in the SQL itself order the rules.
  const code = body.text
    .split('\n')
    .map((l) => l.replace(/--.*$/, ''))
    .join('\n');
  const read = new Set([...code.matchAll(/\b(?:result|changed)_([a-z_][a-z0-9_]*)\b/g)].map((m) => m[1]!));
  // A burst rule reads only its orders; its own rows are the carried bursts.
  if (burst) read.clear();
  const readsOwnResults = burst !== null || read.delete(name);

  const partitionField = fields.get('partition_by');
  if (partitionField && !ORDER_KEY_FIELDS.includes(partitionField.value)) {
    report(partitionField.line, 1, `partition_by "${partitionField.value}" is not an order field (one of: ${ORDER_KEY_FIELDS.join(', ')})`);
  } else if (partitionField && burst && burst.key !== partitionField.value) {
    report(
      partitionField.line,
      1,
      `partition_by "${partitionField.value}" differs from the burst's key "${burst.key}" (a burst rule is partitioned by its key: leave partition_by out)`,
    );
  }

  const labelField = fields.get('label');
  // A burst header that does not parse names no key: its label is not checked against one.
  const label =
    labelField && key.length > 0
      ? parseLabel(labelField.value, lines[labelField.line - 1]!, key, params, (column, message) => report(labelField.line, column, message))
      : null;

  const alertField = fields.get('alert');
  let alert: AlertSpec | null = null;
  if (alertField && key.length > 0) {
    const a = parseAlertHeader(alertField.value, severity, key, ORDER_KEY_FIELDS);
    if (typeof a === 'string') report(alertField.line, 1, a);
    else alert = { ...a, omit: burstBookkeeping(burst) };
  }

  // Detections (alerting rules) keep their orders unless they say otherwise; other rules when they ask.
  const evidenceField = fields.get('evidence');
  let evidence: EvidenceSpec | null = null;
  const max = evidenceField ? parseEvidenceHeader(evidenceField.value) : alertField ? EVIDENCE_DEFAULT_MAX : null;
  if (typeof max === 'string') report(evidenceField!.line, 1, max);
  else if (max !== null && evidenceField && !burst && !key.includes('order_id')) {
    // A window's row already counts its orders; a burst's spans an unbounded time.
    report(evidenceField.line, 1, 'evidence is kept for burst rules (-- burst:); a rule keyed by order_id is its own evidence');
  } else if (max !== null && key.length > 0 && (burst || key.includes('order_id'))) {
    const spec = evidenceSpec(key, ORDER_KEY_FIELDS, max);
    if (typeof spec === 'string' && evidenceField) report(evidenceField.line, 1, spec);
    else if (typeof spec !== 'string') evidence = spec;
    if (alert) alert.evidenceMax = max;
  }

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
      grows,
      finalAfter,
      stateMicros,
      params,
      sql: burst ? burstSql(name, burst) : body.text,
      substitutions: burst ? [] : body.substitutions,
      version,
      after: [...read],
      readsOwnResults,
      label,
      burst,
      partitionKey: burst?.key ?? partitionField?.value ?? null,
      alert,
      evidence,
    },
  };
}

const DURATION_TEXT = (micros: number) => (micros % 1_000_000 === 0 ? `${micros / 1_000_000}s` : `${micros / 1000}ms`);

/** The `-- label:` field; problems are reported at their column in `line`. */
function parseLabel(
  value: string,
  line: string,
  key: readonly string[],
  params: ReadonlyMap<string, ParamValue>,
  report: (column: number, message: string) => void,
): RuleLabel | null {
  const at = (text: string) => Math.max(1, line.indexOf(text) + 1);
  const where = /^(.*?)\s+where\s+(.*)$/.exec(value);
  const [namesText, conditionText] = where ? [where[1]!, where[2]!] : [value, undefined];
  const names = namesText
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
  let ok = true;
  const fail = (column: number, message: string) => {
    ok = false;
    report(column, message);
  };
  if (names.length === 0) fail(at(value), 'label names no scenario (e.g. "-- label: bot, burst", or "*" for every order)');
  if (names.includes('*') && names.length > 1) fail(at('*'), 'label "*" (every order) cannot be combined with scenario names');
  for (const n of names) {
    if (n !== '*' && !(SCENARIOS as readonly string[]).includes(n)) fail(at(n), `label "${n}" is not a generator scenario (one of: ${SCENARIOS.join(', ')})`);
  }
  const keyFields = key.filter((c) => ORDER_KEY_FIELDS.includes(c));
  if (keyFields.length === 0) {
    fail(
      at(value),
      `label: the key (${key.join(', ')}) has no column that names an order field (${ORDER_KEY_FIELDS.join(', ')}), so a row cannot be traced to orders`,
    );
  }

  /** A literal or a `$param` of the given kind, as its value. */
  const operand = <K extends ParamValue['kind']>(m: RegExpExecArray, group: number, kind: K): Extract<ParamValue, { kind: K }> | null => {
    const text = m[group]!;
    const column = line.lastIndexOf(m.input) + m.indices![group]![0] + 1;
    const v = text.startsWith('$') ? (params.get(text.slice(1)) ?? `unknown parameter ${text}`) : parseParamValue(text);
    if (typeof v === 'string') fail(column, `label: ${v}`);
    else if (v.kind !== kind) fail(column, `label: ${text} is a ${v.kind}, not a ${kind}`);
    else return v as Extract<ParamValue, { kind: K }>;
    return null;
  };
  let condition: LabelCondition | null = null;
  let conditionShown = '';
  if (conditionText !== undefined) {
    const within = /^orders\s*>=\s*(\S+)\s+within\s+(\S+)$/d.exec(conditionText);
    const distinct = /^distinct\s+([a-z_]+)\s*>=\s*(\S+)\s+within\s+(\S+)$/d.exec(conditionText);
    const total = /^price\s*\*\s*quantity\s*>=\s*(\S+)$/d.exec(conditionText);
    if (within) {
      const min = operand(within, 1, 'integer');
      const window = operand(within, 2, 'duration');
      if (min && window) {
        condition = { kind: 'orders_within', min: Number(min.value), windowMicros: window.micros };
        conditionShown = `orders >= ${min.value} within ${DURATION_TEXT(window.micros)}`;
      }
    } else if (distinct) {
      const field = distinct[1]!;
      const min = operand(distinct, 2, 'integer');
      const window = operand(distinct, 3, 'duration');
      if (!ORDER_KEY_FIELDS.includes(field)) fail(at(field), `label: "${field}" is not an order field (${ORDER_KEY_FIELDS.join(', ')})`);
      else if (min && window) {
        condition = { kind: 'distinct_within', field, min: Number(min.value), windowMicros: window.micros };
        conditionShown = `distinct ${field} >= ${min.value} within ${DURATION_TEXT(window.micros)}`;
      }
    } else if (total) {
      const min = operand(total, 1, 'integer');
      if (min) {
        condition = { kind: 'total_at_least', min: min.value };
        conditionShown = `price * quantity >= ${min.value}`;
      }
    } else {
      fail(
        at(conditionText),
        'a label condition reads "where orders >= N within D", "where distinct <field> >= N within D" or "where price * quantity >= N" (N, D: literals or $params)',
      );
    }
  }
  if (!ok) return null;
  return { scenarios: names.filter((n) => n !== '*'), condition, keyFields, text: names.join(', ') + (conditionShown ? ` where ${conditionShown}` : '') };
}

/** Loads every *.sql in `dir`, sorted, then orders rules so each runs after those it reads. */
export function loadRules(dir: string, overrides: ParamOverrides = new Map()): { rules: Rule[]; diagnostics: Diagnostic[] } {
  const diagnostics: Diagnostic[] = [];
  let files: string[];
  try {
    if (!statSync(dir).isDirectory()) throw new Error('not a directory');
    files = readdirSync(dir)
      .filter((f) => f.endsWith('.sql'))
      .sort();
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
          file: r.file,
          line: 1,
          column: 1,
          message: invalid.has(dep)
            ? `not loaded: it reads the results of "${dep}", whose rule is invalid`
            : `reads the results of "${dep}", but no rule is named so`,
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
