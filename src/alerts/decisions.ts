/**
 * The decision index: what a checkout asks before accepting an order ("is this IP
 * or this user in an active detection, or on a list?"), answered from memory in
 * microseconds. Fed with the rows each batch committed for the detecting rules
 * that last (bursts: those with a window_start and a window_end), keyed by the
 * order fields a checkout knows; a detection is active until the event-time clock
 * (the engines' watermark) passes its last hot order plus the rule's window: it can
 * no longer grow. A single-order detection (a high-value order, an order of a
 * blocked key) says nothing of the next order: it is the alert's business, and a
 * blocked key shows in `lists`.
 */
import type { List } from '../rules/lists.js';

/** The order fields a lookup may name. */
export const DECISION_FIELDS = ['ip_address', 'user_id'] as const;
export type DecisionField = (typeof DECISION_FIELDS)[number];

export interface ActiveDetection {
  rule: string;
  severity: string;
  /** The detection's start (window_start), ISO-8601 UTC. */
  since: string;
  /** Its latest hot order so far (window_end). */
  last: string;
  /** Its order_count, when the rule outputs one. */
  count: number | null;
}

/** A rule's rows as a batch committed them (column-major, values as the sink took them). */
export interface DetectionRows {
  rule: string;
  severity: string;
  /** How long after its last hot order a detection of the rule stays active, in µs (the burst rule's window). */
  activeMicros: number;
  /**
   * The rule's replace columns (a burst rule's partition and key): its rows hold every
   * open detection of each key they name, so one of the key's not among them merged
   * into another and is over.
   */
  replace: readonly string[];
  names: readonly string[];
  columns: readonly (readonly unknown[])[];
  rowCount: number;
}

export interface Decision {
  verdict: 'block' | 'review' | 'allow' | 'none';
  keys: Partial<Record<DecisionField, { value: string; detections: ActiveDetection[]; lists: string[] }>>;
}

interface Entry extends ActiveDetection {
  expiresUs: number;
  /** Where the index holds it: field, value and key in that value's map. */
  at: [DecisionField, string, string][];
}

const micros = (iso: string) => Date.parse(iso) * 1000;

export class DecisionIndex {
  /** field -> value -> rule and detection start -> entry. */
  private readonly entries = new Map<DecisionField, Map<string, Map<string, Entry>>>(DECISION_FIELDS.map((f) => [f, new Map()]));
  private fedSinceSweep = 0;

  constructor(
    /** The lists in force (the allow and block lists of the rules directory). */
    private readonly lists: () => readonly List[],
    /**
     * Event time now, in µs: the slowest watermark of the engines, so that one
     * order stamped far in the future cannot end every detection.
     */
    private readonly clock: () => number,
  ) {}

  /** Adds or updates the detections in a batch's rows; rows without a window are not detections that last. */
  feed(rows: DetectionRows): void {
    const col = (name: string) => {
      const i = rows.names.indexOf(name);
      return i < 0 ? null : rows.columns[i]!;
    };
    const start = col('window_start');
    const end = col('window_end');
    const count = col('order_count');
    const fields = DECISION_FIELDS.map((f) => [f, col(f)] as const).filter(([, c]) => c !== null);
    if (!start || !end || fields.length === 0) return;
    for (const [field, values] of fields) {
      if (!rows.replace.includes(field)) continue;
      for (const value of new Set(values!.map(String))) {
        for (const e of [...(this.entries.get(field)!.get(value)?.values() ?? [])]) if (e.rule === rows.rule) this.forget(e);
      }
    }
    for (let r = 0; r < rows.rowCount; r++) {
      const since = String(start[r]);
      const last = String(end[r]);
      const entry: Entry = {
        rule: rows.rule,
        severity: rows.severity,
        since,
        last,
        count: count ? Number(count[r]) : null,
        expiresUs: micros(last) + rows.activeMicros,
        at: [],
      };
      for (const [field, values] of fields) {
        const byValue = this.entries.get(field)!;
        const value = String(values![r]);
        let byRule = byValue.get(value);
        if (!byRule) byValue.set(value, (byRule = new Map()));
        const key = `${rows.rule}\u0000${since}`;
        byRule.set(key, entry);
        entry.at.push([field, value, key]);
      }
    }
    this.fedSinceSweep += rows.rowCount;
    if (this.fedSinceSweep >= 10_000) this.sweep();
  }

  /** The answer for the given keys (absent keys are not asked about). */
  lookup(keys: Partial<Record<DecisionField, string>>): Decision {
    const lists = this.lists();
    const out: Decision = { verdict: 'none', keys: {} };
    let blocked = false;
    let allowed = false;
    let detected = false;
    const now = this.clock();
    for (const field of DECISION_FIELDS) {
      const value = keys[field];
      if (value === undefined) continue;
      const detections = [...(this.entries.get(field)!.get(value)?.values() ?? [])]
        .filter((e) => e.expiresUs >= now)
        .map((e): ActiveDetection => ({ rule: e.rule, severity: e.severity, since: e.since, last: e.last, count: e.count }))
        .sort((a, b) => (a.since < b.since ? -1 : a.since > b.since ? 1 : a.rule < b.rule ? -1 : 1));
      const on = lists.filter((l) => listHas(l, field, value)).map((l) => l.name);
      blocked ||= on.some((n) => n.startsWith('block_'));
      allowed ||= on.some((n) => n.startsWith('allow_'));
      detected ||= detections.length > 0;
      out.keys[field] = { value, detections, lists: on };
    }
    out.verdict = blocked ? 'block' : allowed ? 'allow' : detected ? 'review' : 'none';
    return out;
  }

  /** Forgets detections that ended: memory follows the active ones. */
  private sweep(): void {
    this.fedSinceSweep = 0;
    const now = this.clock();
    for (const byValue of this.entries.values()) {
      for (const byRule of byValue.values()) for (const e of byRule.values()) if (e.expiresUs < now) this.forget(e);
    }
  }

  /** Removes a detection under every key it is held by (a row may name an IP and a user). */
  private forget(e: Entry): void {
    for (const [field, value, key] of e.at) {
      const byValue = this.entries.get(field)!;
      const byRule = byValue.get(value);
      if (byRule?.get(key) !== e) continue; // replaced since by a newer row of the same start
      byRule.delete(key);
      if (byRule.size === 0) byValue.delete(value);
    }
  }
}

/** Per list (as loaded: a reload makes new ones), its values by column, for lookups in O(1). */
const listValues = new WeakMap<List, Map<string, Set<string>>>();

function listHas(list: List, field: string, value: string): boolean {
  let byColumn = listValues.get(list);
  if (!byColumn) listValues.set(list, (byColumn = new Map()));
  let values = byColumn.get(field);
  if (!values) {
    const i = list.columns.indexOf(field);
    byColumn.set(field, (values = new Set(i < 0 ? [] : list.rows.map((r) => r[i]!))));
  }
  return values.has(value);
}
