/**
 * Alerts: what a detection becomes for the systems that act on it (a checkout, a
 * case queue). Pure logic: which rows of a batch alert, their deterministic ids,
 * and the JSON sent (schema: schemas/alert.schema.json). The ids depend only on
 * the rule, its version, the key, the window start and the step, never on batch
 * boundaries, so a replay or a restart produces the same ids and a consumer
 * deduplicates on alert_id.
 */
import { createHash } from 'node:crypto';
import type { ResultSet } from '../engine/ports.js';
import { PARTITION_COLUMN } from '../sink/tables.js';

/** A rule's `-- alert:` header, resolved against its key. */
export interface AlertSpec {
  severity: string;
  /** The key columns that name the detected thing (the rule's key without the partition and window start). */
  keyColumns: string[];
  /** The key column that is an order field: the evidence orders are those with its value. Null: none. */
  evidenceField: string | null;
  /** Alert again each time this column passes the next multiple of `every` (a growing burst). */
  step: { column: string; every: bigint } | null;
  /** The most order_ids an alert carries as evidence. */
  evidenceMax: number;
  /** Output columns fraud-sql keeps for itself (a burst's `<alias>_values`): not in the alert's row. */
  omit?: readonly string[];
}

/** An alert ready for the outbox: `payload` is the exact JSON text published and signed. */
export interface OutboxAlert {
  id: string;
  rule: string;
  /** The Kafka message key: the key's value. */
  key: string;
  payload: string;
}

/** One alert a batch's row asks for, before its evidence is known. */
export interface AlertCandidate {
  id: string;
  row: number;
  step: number;
  /** The key's values, comma-joined: the Kafka key and the alert's key.value. */
  keyValue: string;
  /** The value of the key's order field (AlertSpec.evidenceField): whose orders are the evidence. */
  evidenceValue: string | null;
  windowStart: string | null;
  windowEnd: string | null;
}

/** Columns fraud-sql adds to a row for itself: not part of the alert's row. */
const BOOKKEEPING = new Set([PARTITION_COLUMN]);

/** Most step alerts one row asks for at once (a burst first seen far past its first steps). */
const MAX_STEPS_PER_ROW = 100;

/**
 * `-- alert: new` or `-- alert: new, <column> every <N>`: the spec, or a message
 * saying what is wrong. `key` is the rule's key; the step column is checked
 * against the output later, when it is known.
 */
export function parseAlertHeader(value: string, severity: string, key: readonly string[], orderFields: readonly string[]): AlertSpec | string {
  const m = /^new(?:\s*,\s*([a-z_][a-z0-9_]*)\s+every\s+(\d+))?$/i.exec(value.trim());
  if (!m) return `alert reads "new" or "new, <column> every <N>" (e.g. "new, order_count every 100"), not "${value.trim()}"`;
  const keyColumns = key.filter((k) => k !== PARTITION_COLUMN && k !== 'window_start');
  if (keyColumns.length === 0) return 'alert: the key names nothing but the partition and the window start';
  const every = m[2] === undefined ? null : BigInt(m[2]);
  if (every === 0n) return 'alert: "every 0" would never step; use a positive number';
  return {
    severity,
    keyColumns,
    evidenceField: keyColumns.find((k) => orderFields.includes(k)) ?? null,
    step: every === null ? null : { column: m[1]!, every },
    evidenceMax: 100,
  };
}

/**
 * The deterministic id: the same detection (and step) always gets the same id.
 * The key's values go in one by one (a value may hold a comma), nulls as nulls.
 */
export function alertId(rule: string, version: string, keyValues: readonly (string | null)[], windowStart: string | null, step: number): string {
  return createHash('sha256')
    .update(JSON.stringify([rule, version, keyValues, windowStart, step]))
    .digest('hex')
    .slice(0, 32);
}

const column = (rs: Pick<ResultSet, 'names' | 'columns'>, name: string): readonly unknown[] | null => {
  const i = rs.names.indexOf(name);
  return i < 0 ? null : rs.columns[i]!;
};

/** One row of a detecting rule, as the thing it detected: its key and window. */
export interface DetectionRow {
  row: number;
  /** The key columns' values, nulls as nulls. */
  values: (string | null)[];
  /** The key's values, comma-joined: the Kafka key, the alert's key.value, detection_evidence.key_value. */
  keyValue: string;
  /** The value of the key's order field: whose orders are the evidence. Null: no such field, or null. */
  evidenceValue: string | null;
  windowStart: string | null;
  windowEnd: string | null;
}

/** The detections a batch's rows of one rule are, keyed by `keyColumns`, their orders by `field`'s value. */
export function detectionRows(rs: Pick<ResultSet, 'names' | 'columns' | 'rowCount'>, keyColumns: readonly string[], field: string | null): DetectionRow[] {
  const keys = keyColumns.map((k) => column(rs, k) ?? []);
  const evidence = field ? column(rs, field) : null;
  const starts = column(rs, 'window_start');
  const ends = column(rs, 'window_end');
  const out: DetectionRow[] = [];
  for (let row = 0; row < rs.rowCount; row++) {
    const values = keys.map((k) => (k[row] === null || k[row] === undefined ? null : String(k[row])));
    out.push({
      row,
      values,
      keyValue: values.map((v) => v ?? '').join(','),
      evidenceValue: evidence?.[row] === null || evidence?.[row] === undefined ? null : String(evidence[row]),
      windowStart: (starts?.[row] as string | null | undefined) ?? null,
      windowEnd: (ends?.[row] as string | null | undefined) ?? null,
    });
  }
  return out;
}

/** The alerts a batch's rows of one rule ask for: each row once when new, once more per step passed. */
export function alertCandidates(rs: ResultSet, spec: AlertSpec): AlertCandidate[] {
  const stepValues = spec.step ? column(rs, spec.step.column) : null;
  const out: AlertCandidate[] = [];
  for (const d of detectionRows(rs, spec.keyColumns, spec.evidenceField)) {
    const steps = [0];
    if (spec.step && stepValues) {
      // Every step up to the row's value, not only the one just passed: the same
      // ids whichever batches the orders came in.
      const reached = Number(BigInt(String(stepValues[d.row] ?? 0)) / spec.step.every);
      for (let s = Math.max(1, reached - MAX_STEPS_PER_ROW + 1); s <= reached; s++) steps.push(s);
    }
    const { row, keyValue, evidenceValue, windowStart, windowEnd } = d;
    for (const step of steps)
      out.push({ id: alertId(rs.rule, rs.version, d.values, windowStart, step), row, step, keyValue, evidenceValue, windowStart, windowEnd });
  }
  return out;
}

const EXACT_INTEGER = /^(HUGEINT|BIGINT|UBIGINT|UHUGEINT|DECIMAL\(\d+,0\))$/;

/**
 * A result value as JSON: integers stay exact (a number while one is exact, else
 * a decimal string), timestamps are ISO-8601 UTC strings as the row holds them.
 */
function jsonValue(v: unknown, exactInteger: boolean): unknown {
  if (v === null || v === undefined) return null;
  if (exactInteger) {
    const n = BigInt(String(v));
    return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n.toString();
  }
  return v;
}

/**
 * The alerts of one result set as published (schemas/alert.schema.json describes
 * them): which columns an alert's row carries, and how each is written, is worked
 * out once for the batch, not once per alert (a drain alerts on every high-value
 * order).
 */
export function alertPayloads(
  rs: ResultSet,
  spec: AlertSpec,
  detectedAt: string,
): (c: AlertCandidate, evidence: { orderIds: readonly string[]; orderCount: number }) => string {
  const carried = rs.names.flatMap((name, i) =>
    BOOKKEEPING.has(name) || spec.omit?.includes(name)
      ? []
      : [{ name, values: rs.columns[i]!, exactInteger: EXACT_INTEGER.test((rs.types[i] ?? '').toUpperCase()) }],
  );
  return (c, evidence) => {
    const row: Record<string, unknown> = {};
    for (const col of carried) row[col.name] = jsonValue(col.values[c.row], col.exactInteger);
    return JSON.stringify({
      alert_id: c.id,
      rule: rs.rule,
      rule_version: rs.version,
      severity: spec.severity,
      key: { name: spec.keyColumns.join(','), value: c.keyValue },
      window_start: c.windowStart,
      window_end: c.windowEnd,
      step: c.step,
      row,
      evidence: { order_ids: evidence.orderIds, order_count: evidence.orderCount },
      detected_at: detectedAt,
    });
  };
}
