/**
 * Start/stop plumbing shared by `run` and `demo`: resources are released in reverse
 * order of creation from one list, and a stop (asked for, or forced by a failed
 * loop) aborts the loop, waits for the batch in flight, then releases.
 */
import type { Config } from './config.js';
import { printDetections } from './console.js';
import type { Engine } from './engine/engine.js';
import type { Logger } from './log.js';
import type { Failpoint } from './failpoint.js';

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
      await stop();
    });
    return stop;
  }
}

/** What every engine gets: rule failures logged, `--console` output, and the idle-window ticker. */
export function wireEngine(engine: Engine, config: Readonly<Config>, logger: Logger, life: Lifecycle): void {
  engine.events.on('rule:error', ({ diagnostic }) =>
    logger.error(`rule failed and was skipped for this batch: ${diagnostic.file}:${diagnostic.line}:${diagnostic.column}: ${diagnostic.message}`),
  );
  if (config.console) printDetections(engine.events, (line) => process.stdout.write(line + '\n'));
  const ticker = setInterval(() => void engine.tick().catch((err) => logger.warn(`closing idle windows failed: ${(err as Error).message}`)), 1_000);
  life.defer(() => clearInterval(ticker));
}

/** Engine options from the configuration. */
export function engineOptions(config: Readonly<Config>, topic: string, fail: (name: Failpoint) => void = () => {}) {
  return {
    failpoint: fail,
    topic,
    timeZone: config.timeZone,
    maxMessageBytes: config.maxMessageBytes,
    latenessMs: config.latenessMs,
    idleTimeoutMs: config.idleTimeoutMs,
    retentionIntervalMs: 1_000,
    now: Date.now,
  };
}
