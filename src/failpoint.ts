/**
 * Failpoints: `FRAUD_SQL_FAILPOINT=before-commit:3` makes the process kill itself
 * (SIGKILL, like a power cut) the 3rd time it reaches that point of the batch cycle.
 * The fault tests use it to prove that no order is lost or counted twice wherever
 * a crash lands. Unset, it costs one comparison per point.
 */
import { FAILPOINTS, type FailpointName } from './engine/ports.js';

/** Parses `name:count`; returns a problem description for a bad spec. */
export function parseFailpoint(spec: string): { name: FailpointName; hit: number } | string {
  const m = /^([a-z-]+)(?::(\d+))?$/.exec(spec.trim());
  if (!m || !(FAILPOINTS as readonly string[]).includes(m[1]!)) return `"${spec}" is not one of ${FAILPOINTS.join(', ')} (optionally :N)`;
  return { name: m[1] as FailpointName, hit: Number(m[2] ?? 1) };
}

/** The hit kills the process like a power cut; `fetch-error` throws instead, as a broken client would. */
const defaultHit = (name: FailpointName) => {
  if (name === 'fetch-error') throw new Error('injected fetch error (FRAUD_SQL_FAILPOINT)');
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
