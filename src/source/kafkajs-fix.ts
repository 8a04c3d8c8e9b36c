/**
 * Four fixes for kafkajs 2.2.4, which is no longer maintained: importing this
 * module applies them to every kafkajs client in the process. The first two are
 * timers each broker connection runs while idle; an idle process here holds about
 * thirty of them (counted by their timers: a consumer per engine, the hop's producer
 * and consumer, the dead-letter and alert producers, the admins, most with more than
 * one connection).
 *
 * 1. Each connection's request queue re-arms a timer to look at its pending
 * requests even when there are none, with a negative delay (it is "until the
 * throttle ends", and nothing is throttled), so every connection runs a timer
 * about once a millisecond for as long as it is open (kafkajs issues 1556 and
 * 1704; the fix of pull request 1667, never released). That was most of an
 * idle process's CPU, and time taken from every batch under load. The check only
 * has work to do when a request waits: `push` queues one and schedules this check
 * when it cannot send at once (in-flight limit or a broker throttle), and every
 * response or timeout checks the queue itself.
 *
 * 2. Each connection looks for requests past their timeout ten times a second.
 * Timeouts are tens of seconds (30 s by default); a look every 5 s finds them as
 * surely, at most 5 s late, with a fiftieth of the wake-ups (`strace -c` of an idle
 * process: 112 epoll wake-ups a second at ten a second; about 30 connections are
 * open, so still 30 timer wake-ups a second at one a second).
 *
 * 3. A consumer whose group-coordinator lookup every connected broker failed crashes
 * with an error kafkajs calls non-retriable, so it never restarts: consumption ends
 * for good although the brokers are only restarting (kafkajs issues 1445 and 1630).
 * It happens when the heartbeat that finds the coordinator gone (a broker shutting
 * down) is followed by a lookup the closing broker fails. The error is marked
 * retriable here; how often and how long such a consumer is restarted (a missing
 * group ACL fails the same way) is restartPolicy's, in kafka.ts.
 *
 * 4. Produce requests are encoded in one pass into one buffer (produce-encoding.ts):
 * the same bytes, at a fraction of kafkajs' cost per message, which the repartition
 * hop pays for every order.
 */
import { createRequire } from 'node:module';
import { encodeProduceRequest, type ProduceRequest } from './produce-encoding.js';

const require = createRequire(import.meta.url);

/** The fields of kafkajs' RequestQueue this fix reads and writes. */
export interface RequestQueueLike {
  pending: unknown[];
  inflight: Map<number, { sentAt: number; requestTimeout: number; timeoutRequest(): void }>;
  throttledUntil: number;
  throttleCheckTimeoutId: ReturnType<typeof setTimeout> | null;
  enforceRequestTimeout: boolean;
  requestTimeout: number;
  requestTimeoutIntervalId?: ReturnType<typeof setInterval>;
  isConnected(): boolean;
  destroy(): void;
  checkPendingRequests(): void;
  scheduleCheckPendingRequests(): void;
  scheduleRequestTimeoutCheck(): void;
}

/** As kafkajs: how soon to look again when requests wait on the in-flight limit alone. */
const CHECK_PENDING_REQUESTS_INTERVAL_MS = 10;

/** kafkajs' scheduleCheckPendingRequests, arming its timer only while a request waits. */
export function scheduleCheckPendingRequests(this: RequestQueueLike): void {
  if (this.throttleCheckTimeoutId || this.pending.length === 0) return;
  const throttledForMs = this.throttledUntil - Date.now();
  this.throttleCheckTimeoutId = setTimeout(
    () => {
      this.throttleCheckTimeoutId = null;
      this.checkPendingRequests();
    },
    throttledForMs > 0 ? throttledForMs : CHECK_PENDING_REQUESTS_INTERVAL_MS,
  );
}

/** How often a connection looks for requests past their timeout. */
export const REQUEST_TIMEOUT_CHECK_MS = 5_000;

/** kafkajs' scheduleRequestTimeoutCheck, every 5 s instead of ten times a second. */
export function scheduleRequestTimeoutCheck(this: RequestQueueLike): void {
  if (!this.enforceRequestTimeout) return;
  this.destroy();
  this.requestTimeoutIntervalId = setInterval(
    () => {
      const now = Date.now();
      for (const request of this.inflight.values()) if (now - request.sentAt > request.requestTimeout) request.timeoutRequest();
      if (!this.isConnected()) this.destroy();
    },
    Math.min(this.requestTimeout, REQUEST_TIMEOUT_CHECK_MS),
  );
}

const RequestQueue = require('kafkajs/src/network/requestQueue/index.js') as { prototype: RequestQueueLike };
RequestQueue.prototype.scheduleCheckPendingRequests = scheduleCheckPendingRequests;
RequestQueue.prototype.scheduleRequestTimeoutCheck = scheduleRequestTimeoutCheck;

/** The part of kafkajs' Cluster this fix wraps. */
export interface ClusterLike {
  findGroupCoordinatorMetadata(args: { groupId: string; coordinatorType?: number }): Promise<unknown>;
}

const Cluster = require('kafkajs/src/cluster/index.js') as { prototype: ClusterLike };
const findGroupCoordinatorMetadata = Cluster.prototype.findGroupCoordinatorMetadata;
Cluster.prototype.findGroupCoordinatorMetadata = async function (this: ClusterLike, args) {
  try {
    return await findGroupCoordinatorMetadata.call(this, args);
  } catch (err) {
    // Thrown only after every known broker failed the lookup.
    if ((err as Error).name === 'KafkaJSGroupCoordinatorNotFound') (err as { retriable: boolean }).retriable = true;
    throw err;
  }
};

/** What kafkajs' produce request of versions 3 to 7 is (each later version wraps version 3's). */
interface ProduceRequestLike {
  encode(): Promise<unknown>;
}
const PRODUCE_V3 = require.resolve('kafkajs/src/protocol/requests/produce/v3/request.js');
const produceV3 = require(PRODUCE_V3) as (req: ProduceRequest) => ProduceRequestLike;
const Encoder = require('kafkajs/src/protocol/encoder.js') as new (initialSize: number) => { buf: Buffer; offset: number };
// kafkajs requires a request version's module when it first sends that version, and
// versions 4 to 7 take version 3's module as they load: replaced in the module cache
// before any produce request is sent, it is the one they all take.
require.cache[PRODUCE_V3]!.exports = (req: ProduceRequest): ProduceRequestLike => {
  const request = produceV3(req);
  const encode = request.encode;
  request.encode = async () => {
    const body = encodeProduceRequest(req, Date.now());
    if (body === null) return encode();
    // kafkajs takes any Encoder holding the bytes.
    const encoded = new Encoder(0);
    encoded.buf = body;
    encoded.offset = body.length;
    return encoded;
  };
  return request;
};
