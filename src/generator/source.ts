/**
 * The demo's source: generated orders at a steady rate, as if read from one
 * Kafka partition, through the same batch loop as `run`.
 */
import type { AssignHandler, SourcePort } from '../engine/ports.js';
import { MessageBuffer } from '../source/buffer.js';
import type { GeneratedOrder } from './orders.js';
import { pace } from './pace.js';

export class GeneratorSource implements SourcePort {
  private readonly buffer: MessageBuffer;

  constructor(
    private readonly orders: Iterator<GeneratedOrder>,
    private readonly opts: { rate: number; count?: number; signal: AbortSignal; topic: string; bufferMessages: number },
  ) {
    this.buffer = new MessageBuffer(opts.bufferMessages);
  }

  async start(onAssign: AssignHandler): Promise<void> {
    const seek = await onAssign([0], new Map([[0, { low: 0n, high: null }]]));
    let offset = seek.get(0)!;
    const { topic, signal } = this.opts;
    void pace(
      this.orders,
      async (chunk) => {
        const now = Date.now();
        this.buffer.push(chunk.map((o) => ({ topic, partition: 0, offset: offset++, key: Buffer.from(o.key), value: Buffer.from(o.value), timestampMs: now })));
        // A demo faster than the engine waits rather than piling up orders.
        while (!this.buffer.hasSpace() && !signal.aborted) await this.buffer.waitForSpace(1_000);
      },
      { rate: this.opts.rate, count: this.opts.count, signal, tickMs: 250 },
    ).then(
      () => this.buffer.end(),
      (err: Error) => this.buffer.fail(err),
    );
  }

  next(maxSize: number, maxWaitMs: number, signal: AbortSignal, free?: Promise<unknown>) {
    return this.buffer.next(maxSize, maxWaitMs, signal, free);
  }

  async committed(): Promise<void> {}
}
