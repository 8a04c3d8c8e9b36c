/**
 * Runs the decision lookup (GET /v1/decisions) on a thread of its own, on its own
 * port: the checkout's question is answered within a few milliseconds however
 * busy the engines' thread is. The index lives there; this side sends it the
 * detecting rules' rows of each committed batch, the lists in force, and the
 * event-time clock.
 */
import { readdirSync } from 'node:fs';
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { FraudSqlError } from '../errors.js';
import type { DetectionRows } from '../alerts/decisions.js';
import type { List } from '../rules/lists.js';
import type { DecisionMessage } from './decisions-worker.js';

/** How much lower the process's other threads run than the lookup's (nice levels). */
const BATCH_NICENESS = 10;

/**
 * Lowers the scheduling priority of every other thread of the process (the
 * engines', DuckDB's, libuv's; threads started later inherit it from the main
 * thread) below the lookup's, so that on a busy machine a checkout's question is
 * answered before more batch work runs. Lowering needs no privilege; Linux only,
 * where each thread has its own nice value. Best effort: anything else is left as is.
 */
function favour(lookupThread: number): void {
  let threads: string[];
  try {
    threads = readdirSync('/proc/self/task');
  } catch {
    return;
  }
  for (const t of threads.map(Number).filter((t) => t !== lookupThread)) {
    try {
      os.setPriority(t, Math.min(19, os.getPriority(t) + BATCH_NICENESS));
    } catch {
      // A thread that ended meanwhile, or a system that refuses: nothing to do.
    }
  }
}

export class DecisionServer {
  private lastLists: readonly List[] | null = null;
  private lastClock = NaN;
  private stopped = false;

  private constructor(
    private readonly worker: Worker,
    readonly url: string,
  ) {
    worker.once('exit', () => (this.stopped = true));
  }

  /** False once its thread has ended (a crash, out of memory): /readyz reports it. */
  get alive(): boolean {
    return !this.stopped;
  }

  static async start(opts: { host: string; port: number; onError?: (err: Error) => void }): Promise<DecisionServer> {
    // Run from the sources (tests), the worker is TypeScript as this file is.
    const ext = import.meta.url.endsWith('.ts') ? 'ts' : 'js';
    const worker = new Worker(new URL(`./decisions-worker.${ext}`, import.meta.url), {
      workerData: { host: opts.host, port: opts.port },
      // Its index holds only the active bursts: a small heap, not the main thread's defaults.
      resourceLimits: { maxOldGenerationSizeMb: 128, maxYoungGenerationSizeMb: 4 },
    });
    const url = await new Promise<string>((resolve, reject) => {
      worker.once('message', (m: { type: 'listening'; url: string; thread: number | null } | { type: 'failed'; code: string; message: string }) => {
        if (m.type === 'listening') {
          if (m.thread !== null) favour(m.thread);
          resolve(m.url);
        } else if (m.code === 'EADDRINUSE')
          reject(new FraudSqlError('PORT_IN_USE', `port ${opts.port} on ${opts.host} is already in use; choose another with --decisions-port`));
        else reject(new Error(`the decision lookup cannot listen: ${m.message}`));
      });
      worker.once('error', reject);
    }).catch(async (err) => {
      await worker.terminate();
      throw err;
    });
    // The lookup never keeps the process alive by itself, and its failure (out of
    // memory, a crash) is reported, not thrown at the process.
    worker.unref();
    worker.on('error', (err) => opts.onError?.(err));
    return new DecisionServer(worker, url);
  }

  private send(m: DecisionMessage): void {
    this.worker.postMessage(m);
  }

  feed(rows: DetectionRows): void {
    this.send({ type: 'feed', rows });
  }

  /** The lists in force and the clock, sent when they changed. */
  update(lists: readonly List[], clockUs: number): void {
    if (lists !== this.lastLists) {
      this.lastLists = lists;
      this.send({ type: 'lists', lists: [...lists] });
    }
    if (clockUs !== this.lastClock) {
      this.lastClock = clockUs;
      this.send({ type: 'clock', us: clockUs });
    }
  }

  async close(): Promise<void> {
    await this.worker.terminate();
  }
}
