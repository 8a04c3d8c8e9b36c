/**
 * Start/stop plumbing of the long-running commands: resources are released in reverse
 * order of creation from one list, and a stop (asked for, or forced by a failed
 * loop) aborts the loop, waits for the batch in flight, then releases.
 */
import type { Logger } from './log.js';
import { sleep } from './retry.js';

const FAILURE_LINGER_MS = 1_000;

export class Lifecycle {
  private readonly releasers: (() => Promise<void> | void)[] = [];
  private readonly controller = new AbortController();
  readonly signal = this.controller.signal;
  private stopping: Promise<void> | null = null;

  constructor(private readonly logger: Logger) {}

  /** Registers a release step; steps run last-registered first. */
  defer(fn: () => Promise<void> | void): void {
    this.releasers.push(fn);
  }

  async release(): Promise<void> {
    this.controller.abort();
    for (const r of this.releasers.splice(0).reverse()) {
      try {
        await r();
      } catch (err) {
        this.logger.warn(`error while shutting down: ${(err as Error).message}`);
      }
    }
  }

  /** The stop function for a main loop: a failing loop stops everything too. */
  stopper(done: Promise<void>): () => Promise<void> {
    const stop = () =>
      (this.stopping ??= (async () => {
        this.controller.abort();
        // The batch in flight finishes and commits (or fails and is redone after restart).
        await done.catch(() => {});
        await this.release();
      })());
    done.catch(async (err) => {
      this.logger.error(`stopping: ${(err as Error).message}`);
      // The probes (/readyz 503 with the reason) and a last scrape of /metrics get a moment to see why.
      await sleep(FAILURE_LINGER_MS);
      await stop();
    });
    return stop;
  }
}

/**
 * Runs the main loops (`run`, stopping when the signal it is given aborts) beside
 * a helper whose `failed` rejects when the helper stops for good (the repartition
 * hop, which feeds them). That stops the loops too, and the result rejects with the
 * helper's error once they have ended (their batches in flight committed), so that
 * nothing is released under them.
 */
export async function alongside(run: (signal: AbortSignal) => Promise<unknown>, signal: AbortSignal, failed?: Promise<never>): Promise<void> {
  const down = new AbortController();
  // Declared wider than its first value: it is set in the callback, read after the await.
  let failure = null as { err: unknown } | null;
  failed?.catch((err: unknown) => {
    failure = { err };
    down.abort();
  });
  await run(AbortSignal.any([signal, down.signal]));
  if (failure) throw failure.err;
}
