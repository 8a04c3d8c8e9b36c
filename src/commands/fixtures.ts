/**
 * Rule fixtures: `queries/fixtures/<rule>/<case>.json` holds input orders (in
 * micro-batches, with their Kafka partition) and the rows the rule must have
 * written once they are processed. They run the real engine, rules and upsert
 * semantics on an in-memory DuckDB: no Kafka, no PostgreSQL, milliseconds each.
 *
 *   { "description": "...",
 *     "batches": [[{ "order_id": "A1", "timestamp": "2025-12-30T12:00:55Z", ..., "partition": 0 }], [...]],
 *     "expect": [{ "ip_address": "10.0.0.1", "order_count": 10, ... }],
 *     "lists": { "allow_ips": [{ "ip_address": "10.0.0.9" }] } }
 *
 * `lists` (optional) stands in for the named lists (queries/lists/<name>.csv) while
 * the fixture runs, so a case does not depend on what the shipped lists hold.
 * An order may leave out the fields its rule does not read (ORDER_DEFAULTS). Only
 * the columns named in `expect` are compared; the rows must match exactly in
 * number and content (in any order). An order the engine rejects fails the
 * fixture with its reason, as the rule never saw it.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Config } from '../config.js';
import type { DuckState } from '../state/duckdb.js';
import { rowsOf, type Row } from '../types.js';
import { formatMicros, parseEventTime } from '../time.js';
import { runInMemory } from '../compose.js';
import type { RecordedMessage } from '../source/recorded.js';

export interface FixtureOutcome {
  file: string;
  rule: string;
  description: string;
  ok: boolean;
  /** Why it failed: a readable difference, or a problem with the fixture itself. */
  problem?: string;
  ms: number;
}

/** Every fixture file of the rules in `dir`, by rule, sorted. */
export function fixtureFiles(dir: string): string[] {
  const root = path.join(dir, 'fixtures');
  try {
    if (!statSync(root).isDirectory()) return [];
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const rule of readdirSync(root).sort()) {
    const sub = path.join(root, rule);
    if (!statSync(sub).isDirectory()) continue;
    for (const f of readdirSync(sub).sort()) if (f.endsWith('.json')) out.push(path.join(sub, f));
  }
  return out;
}

/** Timestamps compare by instant, numbers by value, whatever their spelling. */
function normalize(v: unknown): string {
  if (typeof v === 'string' && /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}/.test(v)) {
    const us = parseEventTime(v, 'UTC');
    if (typeof us === 'number') return formatMicros(us);
  }
  // BIGINTs arrive as decimal strings (exact); compare them with JSON numbers.
  if (typeof v === 'number' || typeof v === 'bigint' || (typeof v === 'string' && /^-?\d+$/.test(v))) return String(v);
  return JSON.stringify(v);
}

/**
 * What an order in a fixture may leave out, so that a fixture shows only what its
 * rule reads (see queries/README.md). order_id defaults to `F<batch>-<n>`; the
 * timestamp has no default, since every rule reads it. None of these sets off a
 * built-in rule alone: 50,000 KRW is far below the high-value threshold, and
 * 192.0.2.1 is a documentation address (RFC 5737).
 */
export const ORDER_DEFAULTS = {
  user_id: 'USER0001',
  product_id: 'P008',
  product_name: '마우스',
  price: 50_000,
  quantity: 1,
  ip_address: '192.0.2.1',
  payment_method: 'card',
} as const;

/**
 * The differences between expected and written rows, over `columns`. Rows with the
 * same values in the key columns the fixture names are the same row: a difference
 * there names the columns (`row ip_address="10.0.0.1": order_count expected 10,
 * written 9`); any other row is missing or extra as a whole.
 */
export function compareRows(expected: readonly Row[], written: readonly Row[], columns: readonly string[], key: readonly string[]): string[] {
  const show = (r: Row, cols: readonly string[]) => cols.map((c) => `${c}=${normalize(r[c])}`).join(' ');
  const identity = key.filter((c) => columns.includes(c));
  const values = columns.filter((c) => !identity.includes(c));
  const byId = (rows: readonly Row[]) => {
    const m = new Map<string, Row[]>();
    for (const r of rows) {
      const id = show(r, identity);
      const same = m.get(id);
      if (same) same.push(r);
      else m.set(id, [r]);
    }
    return m;
  };
  const want = byId(expected);
  const got = byId(written);
  const out: string[] = [];
  for (const id of new Set([...want.keys(), ...got.keys()])) {
    const w = (want.get(id) ?? []).map((r) => show(r, values));
    const g = (got.get(id) ?? []).map((r) => show(r, values));
    const missing = w.filter((x) => !g.includes(x));
    const extra = g.filter((x) => !w.includes(x));
    if (identity.length > 0 && missing.length === 1 && extra.length === 1) {
      const a = want.get(id)!.find((r) => show(r, values) === missing[0])!;
      const b = got.get(id)!.find((r) => show(r, values) === extra[0])!;
      const diff = values.filter((c) => normalize(a[c]) !== normalize(b[c])).map((c) => `${c} expected ${normalize(a[c])}, written ${normalize(b[c])}`);
      out.push(`  row ${id}: ${diff.join('; ')}`);
      continue;
    }
    const whole = (v: string) => [id, v].filter(Boolean).join(' ');
    out.push(...missing.sort().map((m) => `  expected, not written: ${whole(m)}`), ...extra.sort().map((e) => `  written, not expected: ${whole(e)}`));
  }
  return out;
}

/** Runs the fixtures of the rules in `config.queriesDir` (all, or one rule's) with the configured lateness and time zone. */
export async function runFixtures(config: Readonly<Config>, only?: string): Promise<FixtureOutcome[]> {
  const dir = config.queriesDir;
  const outcomes: FixtureOutcome[] = [];
  for (const file of fixtureFiles(dir)) {
    const rule = path.basename(path.dirname(file));
    if (only && rule !== only) continue;
    const started = performance.now();
    const fx = readFixture(file);
    const { description } = fx;
    const done = (ok: boolean, problem?: string) => outcomes.push({ file, rule, description, ok, problem, ms: performance.now() - started });
    if (fx.problem !== undefined) {
      done(false, fx.problem);
      continue;
    }
    const { batches, place } = fx;
    let state: DuckState | null = null;
    try {
      const run = await runInMemory(config, dir, batches, { lists: fx.lists });
      state = run.state;
      const target = run.rules.prepared().find((p) => p.rule.name === rule)?.rule;
      if (!target) {
        done(false, `no rule named "${rule}" in ${dir}`);
        continue;
      }
      // A rejected order never reaches the rule: the fixture would test less than it says.
      const rejected = rowsOf(await state.query('SELECT kafka_partition, kafka_offset, reason FROM dead_letters ORDER BY kafka_partition, kafka_offset')).map(
        (r) => `  ${place.get(`${r.kafka_partition}:${r.kafka_offset}`)} rejected: ${r.reason}`,
      );
      const expected = fx.expect;
      const columns = [...new Set(expected.flatMap((r) => Object.keys(r)))];
      const written = rowsOf(await state.query(`SELECT ${columns.length > 0 ? columns.join(', ') : '*'} FROM ${target.target}`));
      const differences = compareRows(expected, written, columns.length > 0 ? columns : Object.keys(written[0] ?? {}), target.key);
      if (rejected.length === 0 && differences.length === 0) done(true);
      else done(false, [...rejected, ...differences].join('\n'));
    } catch (err) {
      done(false, (err as Error).message);
    } finally {
      state?.close();
    }
  }
  return outcomes;
}

export type Fixture = { description: string } & (
  | { problem: string }
  | {
      problem?: undefined;
      batches: RecordedMessage[][];
      expect: Record<string, unknown>[];
      lists?: Record<string, Record<string, string>[]>;
      /** "partition:offset" -> the order's place in the fixture, to name a rejected one. */
      place: Map<string, string>;
    }
);

/** A fixture file as the engine's recorded micro-batches, or what is wrong with it. */
export function readFixture(file: string): Fixture {
  let fx: { description?: string; batches?: unknown; expect?: unknown; lists?: unknown };
  try {
    fx = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    return { description: '', problem: `not valid JSON: ${(err as Error).message}` };
  }
  const description = fx.description ?? '';
  if (!Array.isArray(fx.batches) || !fx.batches.every(Array.isArray)) return { description, problem: '"batches" must be a list of lists of orders' };
  if (!Array.isArray(fx.expect)) return { description, problem: '"expect" must be a list of rows' };
  const lists = fx.lists ?? {};
  const entries = (v: unknown) => Array.isArray(v) && v.every((e) => e && typeof e === 'object' && Object.values(e).every((x) => typeof x === 'string'));
  if (typeof lists !== 'object' || Array.isArray(lists) || !Object.values(lists).every(entries)) {
    return { description, problem: '"lists" must map a list\'s name to its entries, e.g. { "allow_ips": [{ "ip_address": "10.0.0.9" }] }' };
  }
  const place = new Map<string, string>();
  const nextOffset = new Map<number, number>();
  const batches = (fx.batches as Record<string, unknown>[][]).map((batch, b) =>
    batch.map(({ partition = 0, ...given }, i) => {
      const order = { order_id: `F${b + 1}-${i + 1}`, ...ORDER_DEFAULTS, ...given };
      const p = Number(partition);
      const offset = nextOffset.get(p) ?? 0;
      nextOffset.set(p, offset + 1);
      place.set(`${p}:${offset}`, `batch ${b + 1}, order ${i + 1} (order_id ${JSON.stringify(order.order_id)})`);
      return { partition: p, value: Buffer.from(JSON.stringify(order)) };
    }),
  );
  return { description, batches, expect: fx.expect as Record<string, unknown>[], lists: lists as Record<string, Record<string, string>[]>, place };
}
