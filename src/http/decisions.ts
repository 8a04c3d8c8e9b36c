/**
 * GET /v1/decisions?ip_address=...&user_id=...: the call a checkout makes before
 * accepting an order. Answers from the process's memory (see DecisionIndex); a
 * malformed question is a 400 that says what is asked for.
 */
import type { FastifyInstance } from 'fastify';
import { DECISION_FIELDS, type DecisionField, type DecisionIndex } from '../alerts/decisions.js';

/** Longer than any order field may be (design.md section 1). */
const MAX_VALUE = 100;

export function mountDecisions(http: FastifyInstance, index: DecisionIndex): void {
  http.get('/v1/decisions', async (req, reply) => {
    // The answer echoes values a fraudster may have chosen: JSON only, never sniffed as markup.
    void reply.header('x-content-type-options', 'nosniff');
    const query = req.query as Record<string, unknown>;
    const problems: string[] = [];
    const keys: Partial<Record<DecisionField, string>> = {};
    for (const [name, value] of Object.entries(query)) {
      if (!(DECISION_FIELDS as readonly string[]).includes(name)) problems.push(`unknown parameter "${name}"`);
      else if (typeof value !== 'string') problems.push(`${name} is given more than once`);
      else if (value.length === 0 || value.length > MAX_VALUE) problems.push(`${name} must be 1 to ${MAX_VALUE} characters`);
      else keys[name as DecisionField] = value;
    }
    if (problems.length === 0 && Object.keys(keys).length === 0) problems.push('nothing asked');
    if (problems.length > 0) {
      return reply.code(400).send({ error: `${problems.join('; ')}: ask with ${DECISION_FIELDS.map((f) => `${f}=...`).join(' and/or ')}` });
    }
    return index.lookup(keys);
  });
}
