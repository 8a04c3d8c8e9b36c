/**
 * Retry as a small pure policy: exponential backoff with full jitter, capped.
 * The caller decides what is retriable; the policy only says how long to wait.
 */
export interface RetryPolicy {
  initialMs: number;
  maxMs: number;
  factor: number;
}

export const DEFAULT_RETRY: RetryPolicy = { initialMs: 200, maxMs: 10_000, factor: 2 };

/** Delay before attempt `attempt` (1 = the first retry); `random` in [0, 1). */
export function backoffMs(policy: RetryPolicy, attempt: number, random: number): number {
  const ceiling = Math.min(policy.maxMs, policy.initialMs * policy.factor ** Math.max(0, attempt - 1));
  // Half fixed, half jitter: never a zero wait, and many instances do not retry in step.
  return Math.round(ceiling / 2 + (ceiling / 2) * random);
}

export const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const onAbort = () => {
      clearTimeout(t);
      resolve();
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });

/**
 * Runs `fn` until it succeeds, while `shouldRetry(err)` holds and `signal` is not
 * aborted. `onRetry` is told of each failure and the wait before the next try.
 */
export async function retrying<T>(
  fn: () => Promise<T>,
  opts: {
    shouldRetry: (err: unknown) => boolean;
    onRetry?: (err: unknown, attempt: number, waitMs: number) => void;
    policy?: RetryPolicy;
    signal?: AbortSignal;
  },
): Promise<T> {
  const policy = opts.policy ?? DEFAULT_RETRY;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (!opts.shouldRetry(err) || opts.signal?.aborted) throw err;
      const wait = backoffMs(policy, attempt, Math.random());
      opts.onRetry?.(err, attempt, wait);
      await sleep(wait, opts.signal);
      if (opts.signal?.aborted) throw err;
    }
  }
}
