/**
 * Ground truth of generated traffic, from the orders themselves: which scenario
 * each IP plays, and the most orders it has within any sliding window. Plain
 * TypeScript, no rule or engine code, so scoring the rules against it means something.
 */

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

/** The most of `times` within any window (t - windowMs, t]. */
export function maxWithin(times: readonly number[], windowMs = 60_000): number {
  const sorted = [...times].sort((a, b) => a - b);
  let best = 0;
  for (let i = 0, lo = 0; i < sorted.length; i++) {
    while (sorted[lo]! <= sorted[i]! - windowMs) lo++;
    best = Math.max(best, i - lo + 1);
  }
  return best;
}
