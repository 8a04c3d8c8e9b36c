/**
 * Recorded orders as a source: micro-batches given in advance (rule fixtures,
 * `backtest` input), delivered exactly as cut. Offsets are numbered per partition
 * in the order given; a partition is assigned when its first message comes up.
 */
import type { AssignHandler, SourcePort } from '../engine/ports.js';
import type { SourceMessage } from '../types.js';

export interface RecordedMessage {
  partition: number;
  value: Buffer;
}

export class RecordedSource implements SourcePort {
  private readonly batches: Iterator<readonly RecordedMessage[]>;
  private readonly offsets = new Map<number, bigint>();
  private onAssign: AssignHandler | null = null;

  constructor(
    batches: Iterable<readonly RecordedMessage[]>,
    private readonly topic = 'input',
  ) {
    this.batches = batches[Symbol.iterator]();
  }

  async start(onAssign: AssignHandler): Promise<void> {
    this.onAssign = onAssign;
  }

  /** The next recorded batch whole, whatever `maxSize`: batch cuts are part of a fixture. */
  async next(): Promise<SourceMessage[] | null> {
    const r = this.batches.next();
    if (r.done) return null;
    const fresh = [...new Set(r.value.map((m) => m.partition))].filter((p) => !this.offsets.has(p));
    if (fresh.length > 0) {
      for (const p of fresh) this.offsets.set(p, 0n);
      const all = [...this.offsets.keys()];
      await this.onAssign!(all, new Map(all.map((p) => [p, { low: 0n, high: null }])));
    }
    return r.value.map((m) => {
      const offset = this.offsets.get(m.partition)!;
      this.offsets.set(m.partition, offset + 1n);
      return { topic: this.topic, partition: m.partition, offset, key: null, value: m.value, timestampMs: 0 };
    });
  }

  async committed(): Promise<void> {}
}
