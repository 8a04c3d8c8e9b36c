/**
 * The engine's alert step: turns a batch's rows of alerting rules into outbox
 * alerts with their evidence orders, read from the state while the batch's orders
 * are still in it. A detection already alerted (committed) is not looked at again,
 * so a bot burst growing batch after batch costs one evidence query, not one per
 * batch; after a restart the outbox's unique alert_id drops what is sent again.
 */
import type { ResultSet, StatePort } from '../engine/ports.js';
import { alertCandidates, alertPayloads, type OutboxAlert } from './alert.js';
import { RecentMap } from './evidence.js';

export class AlertStage {
  /** Committed alert ids, remembered to skip their evidence query. */
  private committed = new RecentMap<true>(50_000);

  constructor(
    private readonly state: Pick<StatePort, 'evidence'>,
    private readonly now: () => number,
  ) {}

  /** The alerts of one batch's results. */
  async alerts(results: readonly ResultSet[]): Promise<OutboxAlert[]> {
    const out: OutboxAlert[] = [];
    const detectedAt = new Date(this.now()).toISOString();
    for (const rs of results) {
      const spec = rs.alert;
      if (!spec || rs.rowCount === 0) continue;
      const fresh = alertCandidates(rs, spec).filter((c) => !this.committed.has(c.id));
      if (fresh.length === 0) continue;
      const none = { orderIds: [], orderCount: 0 };
      const traced = fresh.filter((c) => c.evidenceValue !== null);
      // A detection keyed by the order itself (a high-value order) is its own evidence: no query.
      const found =
        spec.evidenceField === 'order_id'
          ? traced.map((c) => ({ orderIds: [c.evidenceValue!], orderCount: 1 }))
          : spec.evidenceField
            ? await this.state.evidence(
                spec.evidenceField,
                traced.map((c) => ({ value: c.evidenceValue!, from: c.windowStart, to: c.windowEnd })),
                spec.evidenceMax,
              )
            : [];
      const byCandidate = new Map(traced.map((c, i) => [c, found[i]!]));
      const evidence = fresh.map((c) => byCandidate.get(c) ?? none);
      const payload = alertPayloads(rs, spec, detectedAt);
      fresh.forEach((c, i) => out.push({ id: c.id, rule: rs.rule, key: c.keyValue, payload: payload(c, evidence[i]!) }));
    }
    return out;
  }

  /** Called once a batch's alerts are committed to the outbox. */
  noteCommitted(alerts: readonly OutboxAlert[]): void {
    for (const a of alerts) this.committed.set(a.id, true);
  }
}
