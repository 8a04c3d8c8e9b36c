/** The message buffer between a fetch and the batch loop (src/source/buffer.ts): pure, no Kafka. */
import t from 'tap';
import { settled } from './settled.js';
import { MessageBuffer } from '../src/source/buffer.js';
import type { SourceMessage } from '../src/types.js';

const msg = (offset: number): SourceMessage => ({ topic: 'orders', partition: 0, offset: BigInt(offset), key: null, value: Buffer.from('{}'), timestampMs: 0 });

// A wait no test reaches: batches here close on the engine being free, or on size.
const LONG = 60_000;

t.test('a batch closes once the engine is free for it, with everything that arrived until then', async (t) => {
  const buffer = new MessageBuffer(100);
  const signal = new AbortController().signal;
  let free!: () => void;
  const next = buffer.next(10, LONG, signal, new Promise<void>((r) => (free = r)));
  buffer.push([msg(0)]);
  t.notOk(await settled(next), 'the engine is busy: the batch stays open');
  buffer.push([msg(1), msg(2)]);
  free();
  t.same(
    (await next)!.map((m) => m.offset),
    [0n, 1n, 2n],
  );
});

t.test('an engine already free still waits for the first message, then takes what one push brought', async (t) => {
  const buffer = new MessageBuffer(100);
  const signal = new AbortController().signal;
  const next = buffer.next(10, LONG, signal, Promise.resolve());
  t.notOk(await settled(next), 'nothing arrived: no empty batch');
  buffer.push([msg(0), msg(1), msg(2)]);
  t.same((await next)!.length, 3);
});

t.test('the size bound holds when the engine is free', async (t) => {
  const buffer = new MessageBuffer(100);
  buffer.push([0, 1, 2, 3, 4].map(msg));
  const batch = await buffer.next(2, LONG, new AbortController().signal, Promise.resolve());
  t.same(
    batch!.map((m) => m.offset),
    [0n, 1n],
  );
});

t.test('without a free signal the batch waits for its size or its time', async (t) => {
  const buffer = new MessageBuffer(100);
  const next = buffer.next(3, LONG, new AbortController().signal);
  buffer.push([msg(0), msg(1)]);
  t.notOk(await settled(next), 'two of three, long before the maximum wait');
  buffer.push([msg(2)]);
  t.same((await next)!.length, 3);
});
