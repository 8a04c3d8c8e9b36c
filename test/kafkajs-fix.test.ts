/**
 * The kafkajs fixes (src/source/kafkajs-fix.ts), on kafkajs' own classes with no
 * broker: which timers an idle connection keeps (RequestQueue), whether a failed
 * group-coordinator lookup lets a consumer restart (Cluster), and which encoder
 * kafkajs' produce requests use.
 */
import t from 'tap';
import { createRequire } from 'node:module';
import { REQUEST_TIMEOUT_CHECK_MS } from '../src/source/kafkajs-fix.js';
import { encodeProduceRequest } from '../src/source/produce-encoding.js';

const require = createRequire(import.meta.url);
interface Queue {
  pending: unknown[];
  inflight: Map<number, unknown>;
  throttledUntil: number;
  throttleCheckTimeoutId: ReturnType<typeof setTimeout> | null;
  requestTimeoutIntervalId?: ReturnType<typeof setInterval>;
  scheduleCheckPendingRequests(): void;
  scheduleRequestTimeoutCheck(): void;
  checkPendingRequests(): void;
  destroy(): void;
}
const RequestQueue = require('kafkajs/src/network/requestQueue/index.js') as new (opts: object) => Queue;
const logger = { debug() {}, info() {}, warn() {}, error() {} };
const queue = (opts: object = {}): Queue =>
  new RequestQueue({ maxInFlightRequests: 1, requestTimeout: 30_000, enforceRequestTimeout: true, clientId: 'test', broker: 'b:1', logger, ...opts });

t.test('a queue with nothing waiting arms no timer to check it', async (t) => {
  const q = queue();
  q.scheduleCheckPendingRequests();
  t.equal(q.throttleCheckTimeoutId, null, 'unpatched kafkajs arms a 1 ms timer here, and re-arms it forever');
  q.checkPendingRequests();
  t.equal(q.throttleCheckTimeoutId, null, 'nor after a check that found nothing');
  q.destroy();
});

t.test('a waiting request is checked again: at the end of a broker throttle, or soon', async (t) => {
  const q = queue();
  let checks = 0;
  q.checkPendingRequests = () => void checks++;
  q.pending.push({});
  q.scheduleCheckPendingRequests();
  t.not(q.throttleCheckTimeoutId, null, 'armed while a request waits');
  await new Promise((r) => setTimeout(r, 50));
  t.equal(checks, 1, 'and it fired');
  t.equal(q.throttleCheckTimeoutId, null);

  q.throttledUntil = Date.now() + 200;
  q.scheduleCheckPendingRequests();
  await new Promise((r) => setTimeout(r, 50));
  t.equal(checks, 1, 'not before the throttle ends');
  await new Promise((r) => setTimeout(r, 250));
  t.equal(checks, 2, 'once it has ended');
  q.destroy();
});

/** The periods of the intervals `q` arms for its request-timeout check. */
function timeoutCheckPeriods(q: Queue): number[] {
  const periods: number[] = [];
  const realSetInterval = globalThis.setInterval;
  globalThis.setInterval = ((fn: () => void, ms: number) => {
    periods.push(ms);
    return realSetInterval(fn, ms);
  }) as typeof setInterval;
  try {
    q.scheduleRequestTimeoutCheck();
  } finally {
    globalThis.setInterval = realSetInterval;
  }
  return periods;
}

t.test('requests past their timeout are still timed out, by a check every few seconds', async (t) => {
  const q = queue({ requestTimeout: 100 });
  t.same(timeoutCheckPeriods(q), [100], 'never longer than the timeout itself');
  let timedOut = 0;
  q.inflight.set(1, { sentAt: Date.now() - 1_000, requestTimeout: 100, timeoutRequest: () => void timedOut++ });
  q.inflight.set(2, { sentAt: Date.now(), requestTimeout: 60_000, timeoutRequest: () => t.fail('not due') });
  await new Promise((r) => setTimeout(r, 150));
  t.equal(timedOut >= 1, true, 'the overdue request timed out');
  q.destroy();

  const slow = queue({ requestTimeout: 30_000 });
  t.same(timeoutCheckPeriods(slow), [REQUEST_TIMEOUT_CHECK_MS], 'with a 30 s timeout: every 5 s, not every 100 ms');
  slow.destroy();
});

t.test('a group-coordinator lookup no broker answered is retriable: the consumer restarts instead of stopping for good', async (t) => {
  const Cluster = require('kafkajs/src/cluster/index.js') as new (opts: object) => {
    brokerPool: { brokers: Record<string, unknown> };
    findGroupCoordinatorMetadata(args: { groupId: string }): Promise<unknown>;
  };
  const { KafkaJSConnectionClosedError } = require('kafkajs/src/errors.js') as { KafkaJSConnectionClosedError: new (msg: string) => Error };
  const cluster = new Cluster({ logger: { namespace: () => logger }, brokers: ['127.0.0.1:1'], connectionTimeout: 100, retry: { retries: 0 } });
  // A broker kafkajs holds as connected while it shuts down: every request fails.
  let asked = 0;
  cluster.brokerPool.brokers = {
    1: {
      isConnected: () => true,
      connect: async () => {},
      findGroupCoordinator: async () => {
        asked++;
        throw new KafkaJSConnectionClosedError('Closed connection');
      },
    },
  };
  const err = (await cluster.findGroupCoordinatorMetadata({ groupId: 'g' }).then(
    () => null,
    (e: unknown) => e,
  )) as (Error & { retriable?: boolean }) | null;
  t.equal(asked, 1, 'the broker was asked');
  t.equal(err?.name, 'KafkaJSGroupCoordinatorNotFound');
  t.equal(err?.retriable, true, 'kafkajs would not restart its consumer after this');
});

t.test('every produce request version kafkajs sends with magic 2 (3 to 7) is encoded in one pass; a compressed one by kafkajs', async (t) => {
  const produce = require('kafkajs/src/protocol/requests/produce/index.js') as {
    protocol(v: { version: number }): (req: object) => { request: { apiVersion: number; encode(): Promise<{ buffer: Buffer; buf: Buffer; offset: number }> } };
  };
  const topicData = [{ topic: 'orders', partitions: [{ partition: 1, firstSequence: 4, messages: [{ key: 'k', value: 'v', timestamp: '1795856752022' }] }] }];
  for (const version of [3, 4, 5, 6, 7]) {
    const { request } = produce.protocol({ version })({ acks: -1, timeout: 30_000, topicData });
    t.equal(request.apiVersion, version);
    const encoded = await request.encode();
    // kafkajs' own encoder would write the same bytes (test/produce-encoding.test.ts), into a buffer grown by doubling.
    t.equal(encoded.buf.length, encoded.offset, `version ${version}: written into one buffer of its size`);
    t.same(encoded.buffer, encodeProduceRequest({ acks: -1, timeout: 30_000, topicData }, 0), `version ${version}: the one-pass bytes`);
  }
  const gzip = produce.protocol({ version: 7 })({ acks: -1, timeout: 30_000, compression: 1, topicData }).request;
  const encoded = await gzip.encode();
  t.not(encoded.buf.length, encoded.offset, "kafkajs' encoder, grown by doubling");
  const bytes = encoded.buffer;
  // The record batch's attributes (after base offset, length, leader epoch, magic, CRC) name gzip.
  const attributes = 2 + 2 + 4 + 4 + 2 + 'orders'.length + 4 + 4 + 4 + 8 + 4 + 4 + 1 + 4;
  t.equal(bytes.readInt16BE(attributes) & 7, 1, 'kafkajs wrote it, compressed');
});
