/**
 * Rule fixtures: `queries/fixtures/<rule>/<case>.json` holds input orders (in
 * micro-batches, with their Kafka partition) and the rows the rule must have
 * written once they are processed. They run the real engine, rules and upsert
 * semantics on an in-memory DuckDB: no Kafka, no PostgreSQL, milliseconds each.
 *
 *   { "description": "...",
 *     "batches": [[{ "order_id": "A1", "timestamp": "2025-12-30T12:00:55Z", ..., "partition": 0 }], [...]],
 *     "expect": [{ "ip_address": "10.0.0.1", "order_count": 10, ... }] }
 *
 * Only the columns named in `expect` are compared; the rows must match exactly
 * in number and content (in any order).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { Engine } from '../engine/engine.js';
import type { EngineEmitter } from '../engine/events.js';
import { DuckSink } from '../sink/duck.js';
import { DuckState } from '../state/duckdb.js';
import { formatMicros, parseEventTime } from '../source/time.js';
import type { SourceMessage } from '../types.js';
import { RuleSet } from './index.js';
import type { ParamOverrides } from './loader.js';

export interface FixtureOutcome {
  file: string;
  rule: string;
  description: string;
  ok: boolean;
  /** Why it failed: a readable difference, or a problem with the fixture itself. */
  problem?: string;
  ms: number;
}

function fixtureFiles(dir: string): string[] {
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

export async function runFixtures(dir: string, overrides?: ParamOverrides, only?: string): Promise<FixtureOutcome[]> {
  const outcomes: FixtureOutcome[] = [];
  for (const file of fixtureFiles(dir)) {
    const rule = path.basename(path.dirname(file));
    if (only && rule !== only) continue;
    const started = performance.now();
    let description = '';
    const done = (ok: boolean, problem?: string) => outcomes.push({ file, rule, description, ok, problem, ms: performance.now() - started });
    let fx: { description?: string; batches?: unknown; expect?: unknown };
    try {
      fx = JSON.parse(readFileSync(file, 'utf8'));
    } catch (err) {
      done(false, `not valid JSON: ${(err as Error).message}`);
      continue;
    }
    description = fx.description ?? '';
    if (!Array.isArray(fx.batches) || !fx.batches.every(Array.isArray)) {
      done(false, '"batches" must be a list of lists of orders');
      continue;
    }
    if (!Array.isArray(fx.expect)) {
      done(false, '"expect" must be a list of rows');
      continue;
    }
    const batches = (fx.batches as Record<string, unknown>[][]).map((batch) =>
      batch.map(({ partition = 0, ...order }) => ({ partition: Number(partition), value: Buffer.from(JSON.stringify(order)) })),
    );
    let state: DuckState | null = null;
    try {
      const run = await runInMemory(dir, overrides, batches);
      state = run.state;
      const target = run.rules.prepared().find((p) => p.rule.name === rule)?.rule;
      if (!target) {
        done(false, `no rule named "${rule}" in ${dir}`);
        continue;
      }
      const expected = fx.expect as Record<string, unknown>[];
      const columns = [...new Set(expected.flatMap((r) => Object.keys(r)))];
      const actualRows = await state.query(`SELECT ${columns.length > 0 ? columns.join(', ') : '*'} FROM ${target.target}`);
      const actual: string[] = [];
      for (let i = 0; i < actualRows.rowCount; i++) {
        actual.push(columns.map((c, j) => `${c}=${normalize(actualRows.columns[j]![i])}`).join(' '));
      }
      const want = expected.map((r) => columns.map((c) => `${c}=${normalize(r[c])}`).join(' '));
      actual.sort();
      want.sort();
      const missing = want.filter((w) => !actual.includes(w));
      const extra = actual.filter((a) => !want.includes(a));
      if (missing.length === 0 && extra.length === 0) done(true);
      else done(false, [...missing.map((m) => `  expected, not written: ${m}`), ...extra.map((e) => `  written, not expected: ${e}`)].join('\n'));
    } catch (err) {
      done(false, (err as Error).message);
    } finally {
      state?.close();
    }
  }
  return outcomes;
}

/**
 * Runs the rules of `dir` over messages with the real engine on an in-memory
 * DuckDB, results kept in its result tables. Offsets are numbered per partition
 * in the order given. The caller closes the returned state. `listen` subscribes
 * to the engine's events before the first batch; `onBatch` follows progress.
 */
export async function runInMemory(
  dir: string,
  overrides: ParamOverrides | undefined,
  batches: Iterable<{ partition: number; value: Buffer }[]>,
  hooks: { onBatch?: (messages: number) => void; listen?: (events: EngineEmitter) => void } = {},
): Promise<{ state: DuckState; rules: RuleSet }> {
  const state = await DuckState.open(':memory:', { threads: 1 });
  try {
    const rules = await RuleSet.load(state, dir, overrides);
    const sink = await DuckSink.open(state, 'input');
    const engine = new Engine(
      { state, sink, rules, deadLetters: { send: async () => {} } },
      // Event time only: no wall clock, so the same input gives the same result.
      { topic: 'input', timeZone: 'Asia/Seoul', maxMessageBytes: 65_536, latenessMs: 5_000, idleTimeoutMs: 3_600_000, retentionIntervalMs: 0, now: () => 0 },
    );
    hooks.listen?.(engine.events);
    const next = new Map<number, bigint>();
    for (const batch of batches) {
      for (const p of new Set(batch.map((m) => m.partition))) {
        if (!next.has(p)) {
          next.set(p, 0n);
          await engine.assign([...next.keys()], new Map([...next.keys()].map((k) => [k, 0n])));
        }
      }
      const messages: SourceMessage[] = batch.map((m) => {
        const offset = next.get(m.partition)!;
        next.set(m.partition, offset + 1n);
        return { topic: 'input', partition: m.partition, offset, key: null, value: m.value, timestampMs: 0 };
      });
      await engine.handle(messages);
      hooks.onBatch?.(messages.length);
    }
    return { state, rules };
  } catch (err) {
    state.close();
    throw err;
  }
}
