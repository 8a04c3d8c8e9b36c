/**
 * Ground truth of generated traffic, from the orders themselves: which scenario
 * each IP plays, and the most orders it has within any sliding window. Plain
 * TypeScript, no rule or engine code, so scoring the rules against it means something.
 */
import type { RuleLabel } from '../rules/loader.js';

/** Per IP: the label of its first order and the event times (ms) of all of them. */
export function ipActivity(orders: Iterable<{ ip_address: string; timestamp: string; label?: string }>): Map<string, { label: string; times: number[] }> {
  const byIp = new Map<string, { label: string; times: number[] }>();
  for (const o of orders) {
    const e = byIp.get(o.ip_address) ?? { label: o.label ?? '', times: [] };
    e.times.push(Date.parse(o.timestamp));
    byIp.set(o.ip_address, e);
  }
  return byIp;
}

/** The most of `times` within any window (t - windowMs, t]; any unit, as long as both share it. */
export function maxWithin(times: readonly number[], windowMs = 60_000): number {
  const sorted = [...times].sort((a, b) => a - b);
  let best = 0;
  for (let i = 0, lo = 0; i < sorted.length; i++) {
    while (sorted[lo]! <= sorted[i]! - windowMs) lo++;
    best = Math.max(best, i - lo + 1);
  }
  return best;
}

/**
 * The most distinct values among the events within any window (t - window, t];
 * `events` are [time, value] pairs in any order, times in any unit both share.
 */
export function maxDistinctWithin(events: readonly (readonly [number, string])[], window: number): number {
  const sorted = [...events].sort((a, b) => a[0] - b[0]);
  const inWindow = new Map<string, number>();
  let best = 0;
  for (let i = 0, lo = 0; i < sorted.length; i++) {
    const t = sorted[i]![0];
    while (sorted[lo]![0] <= t - window) {
      const v = sorted[lo++]![1];
      const n = inWindow.get(v)! - 1;
      if (n === 0) inWindow.delete(v);
      else inWindow.set(v, n);
    }
    inWindow.set(sorted[i]![1], (inWindow.get(sorted[i]![1]) ?? 0) + 1);
    best = Math.max(best, inWindow.size);
  }
  return best;
}

/** An order as the oracle sees it: its fields, its event time and its label. */
export interface TruthOrder {
  fields: Readonly<Record<string, unknown>>;
  eventUs: number;
  label: string;
}

/** What a rule detects, as its `-- label:` header says. */
export type TruthSpec = Pick<RuleLabel, 'scenarios' | 'condition' | 'keyFields'>;

/** A key value as one string, the same for an order's fields and a result row's columns. */
export function keyOf(keyFields: readonly string[], values: Readonly<Record<string, unknown>>): string {
  return keyFields.map((f) => `${f}=${String(values[f])}`).join(' ');
}

/**
 * The key values a rule should flag: those with an order labelled one of the
 * rule's scenarios (any order for none) that meets the condition, if the rule
 * has one: its price x quantity reaches the minimum, or its key's orders (all of
 * them, as the rule sees them) reach the count, or that many distinct values of a
 * field, within some window. `labelled`:
 * every key value with a labelled order, condition or not.
 */
export function expectedKeys(orders: Iterable<TruthOrder>, spec: TruthSpec): { expected: Set<string>; labelled: Set<string> } {
  const isLabelled = (o: TruthOrder) => spec.scenarios.length === 0 || spec.scenarios.includes(o.label);
  const cond = spec.condition;
  const labelled = new Set<string>();
  const expected = new Set<string>();
  const times = new Map<string, number[]>();
  const values = new Map<string, [number, string][]>();
  for (const o of orders) {
    const k = keyOf(spec.keyFields, o.fields);
    if (cond?.kind === 'orders_within') {
      const t = times.get(k);
      if (t) t.push(o.eventUs);
      else times.set(k, [o.eventUs]);
    }
    const v = cond?.kind === 'distinct_within' ? o.fields[cond.field] : undefined;
    if (v !== undefined && v !== null) {
      const e = values.get(k);
      if (e) e.push([o.eventUs, String(v)]);
      else values.set(k, [[o.eventUs, String(v)]]);
    }
    if (!isLabelled(o)) continue;
    labelled.add(k);
    if (cond === null || (cond.kind === 'total_at_least' && BigInt(o.fields.price as number) * BigInt(o.fields.quantity as number) >= cond.min))
      expected.add(k);
  }
  if (cond?.kind === 'orders_within') {
    for (const k of labelled) if (maxWithin(times.get(k)!, cond.windowMicros) >= cond.min) expected.add(k);
  }
  if (cond?.kind === 'distinct_within') {
    for (const k of labelled) if (maxDistinctWithin(values.get(k) ?? [], cond.windowMicros) >= cond.min) expected.add(k);
  }
  return { expected, labelled };
}
