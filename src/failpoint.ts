/**
 * Failpoints: `FRAUD_SQL_FAILPOINT=before-commit:3` makes the process kill itself
 * (SIGKILL, like a power cut) the 3rd time it reaches that point of the batch cycle.
 * The fault tests use it to prove that no order is lost or counted twice wherever
 * a crash lands. Unset, it costs one comparison per point.
 */
import { ERROR_POINTS, FAILPOINTS, type FailpointName } from './engine/ports.js';

/** Parses `name:count`; returns a problem description for a bad spec. */
export function parseFailpoint(spec: string): { name: FailpointName; hit: number } | string {
  const m = /^([a-z-]+)(?::(\d+))?$/.exec(spec.trim());
  if (!m || !(FAILPOINTS as readonly string[]).includes(m[1]!)) return `"${spec}" is not one of ${FAILPOINTS.join(', ')} (optionally :N)`;
  return { name: m[1] as FailpointName, hit: Number(m[2] ?? 1) };
}

/** What an error point throws. */
const INJECTED: Record<(typeof ERROR_POINTS)[number], string> = {
  'fetch-error': 'injected fetch error',
  'repartition-check-error': 'injected failure of the repartition assignment check',
};

/** The hit kills the process like a power cut; an error point throws instead. */
const defaultHit = (name: FailpointName) => {
  if (name in INJECTED) throw new Error(`${INJECTED[name as keyof typeof INJECTED]} (FRAUD_SQL_FAILPOINT)`);
  process.kill(process.pid, 'SIGKILL');
};

export function failpoint(spec: string, onHit: (name: FailpointName) => void = defaultHit): (name: FailpointName) => void {
  if (!spec) return () => {};
  const parsed = parseFailpoint(spec);
  if (typeof parsed === 'string') throw new Error(parsed);
  let seen = 0;
  return (name) => {
    if (name === parsed.name && ++seen === parsed.hit) onHit(name);
  };
}
