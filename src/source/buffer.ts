/**
 * Messages waiting for the engine: a producer side (a Kafka fetch, the demo's
 * generator) pushes, the batch loop pulls micro-batches. Bounded: the producer
 * waits for space, which is how a slow engine slows fetching down.
 */
import type { SourceMessage } from '../types.js';

export class MessageBuffer {
  private items: SourceMessage[] = [];
  private waiters: (() => void)[] = [];
  private spaceWaiters: (() => void)[] = [];
  private ended = false;
  private failure: Error | null = null;

  constructor(private readonly capacity: number) {}

  push(messages: readonly SourceMessage[]): void {
    this.items.push(...messages);
    for (const w of this.waiters.splice(0)) w();
  }

  hasSpace(): boolean {
    return this.items.length < this.capacity;
  }

  /** Resolves once there is space again, or after `maxMs` (a Kafka fetch must heartbeat meanwhile). */
  waitForSpace(maxMs: number): Promise<void> {
    return new Promise<void>((r) => {
      this.spaceWaiters.push(r);
      setTimeout(r, maxMs);
    });
  }

  /** Drops what is buffered (the partitions it came from were reassigned). */
  clear(): void {
    this.items = [];
    this.wakeSpace();
  }

  /** The input broke: `next` rejects with `err` from now on. */
  fail(err: Error): void {
    this.failure ??= err;
    this.end();
  }

  /** No more input: `next` hands out what is left, then null. */
  end(): void {
    this.ended = true;
    this.wakeSpace();
    for (const w of this.waiters.splice(0)) w();
  }

  /**
   * The next micro-batch: returns as soon as `maxSize` messages are buffered, or
   * `maxWaitMs` after the first message arrived, or once `free` resolves (the
   * engine can take it) after the first message arrived; waits while nothing
   * arrives. So batches are small while the engine keeps up and grow to
   * `maxSize` when it falls behind.
   */
  async next(maxSize: number, maxWaitMs: number, signal: AbortSignal, free?: Promise<unknown>): Promise<SourceMessage[] | null> {
    while (this.items.length === 0 && !signal.aborted && !this.ended) await this.wait(null, signal);
    if (this.failure) throw this.failure;
    if (this.items.length === 0 && this.ended) return null;
    let taken = false;
    void free?.then(() => {
      taken = true;
      for (const w of this.waiters.splice(0)) w();
    });
    const deadline = Date.now() + maxWaitMs;
    while (this.items.length < maxSize && !signal.aborted && !this.ended && !taken) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      await this.wait(left, signal);
    }
    const out = this.items.splice(0, maxSize);
    this.wakeSpace();
    return out;
  }

  /** Until a push, the end, an abort or `ms` (null: no time limit), whichever comes first. */
  private wait(ms: number | null, signal: AbortSignal): Promise<void> {
    return new Promise<void>((r) => {
      const wake = () => {
        clearTimeout(t);
        signal.removeEventListener('abort', wake);
        r();
      };
      // No timer while waiting for input: an idle process should not wake for nothing.
      const t = ms === null ? undefined : setTimeout(wake, ms);
      this.waiters.push(wake);
      signal.addEventListener('abort', wake, { once: true });
    });
  }

  private wakeSpace(): void {
    for (const w of this.spaceWaiters.splice(0)) w();
  }
}
