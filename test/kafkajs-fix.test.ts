/**
 * The kafkajs fixes (src/source/kafkajs-fix.ts), on kafkajs' own classes with no
 * broker: which timers an idle connection keeps (RequestQueue), and whether a
 * failed group-coordinator lookup lets a consumer restart (Cluster).
 */
import t from 'tap';
import { createRequire } from 'node:module';
import { REQUEST_TIMEOUT_CHECK_MS } from '../src/source/kafkajs-fix.js';

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
