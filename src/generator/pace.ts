/**
 * Pacing: draws orders from a generator at `rate` per second of wall time (or as
 * fast as the consumer takes them), in chunks, until a count, a duration or an
 * abort. Shared by `fraud-sql generate` and `fraud-sql demo`.
 */
import { sleep } from '../retry.js';
import type { GeneratedOrder } from './orders.js';

export interface PaceOptions {
  rate: number;
  count?: number;
  durationMs?: number;
  /** Ignore the rate: send as fast as `onChunk` accepts (a backlog). */
  fast?: boolean;
  signal: AbortSignal;
  tickMs?: number;
  now?: () => number;
}

export async function pace(
  orders: Iterator<GeneratedOrder>,
  onChunk: (chunk: GeneratedOrder[]) => Promise<void>,
  opts: PaceOptions,
): Promise<{ sent: number; elapsedMs: number }> {
  const now = opts.now ?? Date.now;
  const tickMs = opts.tickMs ?? 100;
  const start = now();
  let sent = 0;
  const limit = opts.count ?? Infinity;
  while (!opts.signal.aborted && sent < limit) {
    const elapsed = now() - start;
    if (opts.durationMs !== undefined && elapsed >= opts.durationMs) break;
    const due = opts.fast ? sent + Math.max(1_000, Math.round(opts.rate / 10)) : Math.floor((elapsed / 1000) * opts.rate);
    const target = Math.min(limit, due);
    const chunk: GeneratedOrder[] = [];
    while (sent + chunk.length < target) chunk.push(orders.next().value as GeneratedOrder);
    if (chunk.length > 0) {
      await onChunk(chunk);
      sent += chunk.length;
    }
    if (!opts.fast) await sleep(tickMs, opts.signal);
  }
  return { sent, elapsedMs: now() - start };
}

/** Parses `bot=10,burst=1` into scenario shares; unknown names are listed in the error. */
export function parseMix(text: string, known: readonly string[]): Record<string, number> | string {
  const out: Record<string, number> = {};
  const problems: string[] = [];
  for (const part of text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const m = /^([a-z_]+)=(\d+(?:\.\d+)?)$/.exec(part);
    if (!m) problems.push(`"${part}" is not scenario=percent`);
    else if (!known.includes(m[1]!)) problems.push(`unknown scenario "${m[1]}" (known: ${known.join(', ')})`);
    else out[m[1]!] = Number(m[2]);
  }
  return problems.length > 0 ? problems.join('; ') : out;
}
