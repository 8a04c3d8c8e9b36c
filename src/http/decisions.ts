/**
 * GET /v1/decisions?ip_address=...&user_id=...: the call a checkout makes before
 * accepting an order. Answers from the process's memory (see DecisionIndex); a
 * malformed question is a 400 that says what is asked for. A plain node:http
 * listener: the lookup's thread does nothing else, and a framework's per-request
 * work would be most of an answer's cost.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import { DECISION_FIELDS, type DecisionField, type DecisionIndex } from '../alerts/decisions.js';

/** Longer than any order field may be (README.md, *The order event*). */
const MAX_VALUE = 100;

/** The answer to one query string: the status and the JSON body. */
export function decide(index: DecisionIndex, query: URLSearchParams): { status: number; body: unknown } {
  const problems: string[] = [];
  const keys: Partial<Record<DecisionField, string>> = {};
  for (const name of new Set(query.keys())) {
    const values = query.getAll(name);
    const value = values[0]!;
    if (!(DECISION_FIELDS as readonly string[]).includes(name)) problems.push(`unknown parameter "${name.slice(0, MAX_VALUE)}"`);
    else if (values.length > 1) problems.push(`${name} is given more than once`);
    else if (value.length === 0 || value.length > MAX_VALUE) problems.push(`${name} must be 1 to ${MAX_VALUE} characters`);
    // Orders with another ip_address are rejected on input: no detection could ever match it.
    else if (name === 'ip_address' && isIP(value) === 0) problems.push('ip_address is not an IPv4 or IPv6 address');
    else keys[name as DecisionField] = value;
  }
  if (problems.length === 0 && Object.keys(keys).length === 0) problems.push('nothing asked');
  if (problems.length > 0)
    return { status: 400, body: { error: `${problems.join('; ')}: ask with ${DECISION_FIELDS.map((f) => `${f}=...`).join(' and/or ')}` } };
  return { status: 200, body: index.lookup(keys) };
}

/** The request listener of the lookup's server. */
export function decisionsListener(index: DecisionIndex): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    // The path and query as sent, split by hand: a request target that is not a path
    // (an absolute URL with a bad port, say) must not throw in the lookup's thread.
    const target = req.url ?? '/';
    const q = target.indexOf('?');
    const path = q < 0 ? target : target.slice(0, q);
    const { status, body } =
      req.method === 'GET' && path === '/v1/decisions'
        ? decide(index, new URLSearchParams(q < 0 ? '' : target.slice(q + 1)))
        : { status: 404, body: { error: 'not found: ask GET /v1/decisions?ip_address=...&user_id=...' } };
    // The answer echoes values a fraudster may have chosen: JSON only, never sniffed as markup.
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'x-content-type-options': 'nosniff' }).end(JSON.stringify(body));
  };
}
