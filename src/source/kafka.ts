/**
 * The Kafka adapter: kafkajs behind a small pull interface, so the rest of the
 * program never sees kafkajs (unmaintained since 2023: replaceable here alone).
 *
 * Offsets: kafkajs never commits on its own (autoCommit off). The offsets that
 * count are in PostgreSQL, written with each batch's results; on every assignment
 * the engine says where each partition resumes and this adapter seeks there.
 * After each PostgreSQL commit the same offsets are committed to Kafka too, for
 * the lag tools operators already use.
 */
import {
  Kafka,
  logLevel,
  type ConsumerConfig,
  type IHeaders,
  type SASLOptions,
  type Consumer,
  type Producer,
  type Admin,
  type EachBatchPayload,
  type LogEntry,
} from 'kafkajs';
import './codecs.js';
import './kafkajs-fix.js';
import { KeyPartitioner } from './partitioner.js';
import { FraudSqlError } from '../errors.js';
import type { Logger } from '../log.js';
import { backoffMs, DEFAULT_RETRY, retrying, sleep } from '../retry.js';
import type { DeadLetter, SourceMessage } from '../types.js';
import type { AssignHandler, OffsetRange, SourcePort } from '../engine/ports.js';
import { MessageBuffer } from './buffer.js';

export interface KafkaSecurity {
  ssl: boolean;
  sasl: { mechanism: 'plain' | 'scram-sha-256' | 'scram-sha-512'; username: string; password: string } | null;
}

export interface KafkaOptions {
  brokers: string[];
  sessionTimeoutMs?: number;
  security?: KafkaSecurity;
  clientId: string;
  groupId: string;
  topic: string;
  dlqTopic: string;
  logger: Logger;
  /** Messages buffered ahead of the engine before fetching pauses (backpressure). */
  bufferMessages: number;
  signal?: AbortSignal;
  /** Told of every retry (for metrics). */
  onRetry?: () => void;
  /** Told of every crash of the consumer, and whether kafkajs restarts it (for metrics). */
  onCrash?: (restart: boolean) => void;
  /** Create the input and dead-letter topics when missing; otherwise wait for the input topic. */
  createTopics?: { partitions: number; replicationFactor: number };
  /**
   * The topic is a repartition topic: each message's `fraud-sql-source` header names
   * where it was first read, and dead letters are recorded there. Never trusted on
   * the input topic, where anyone can set headers.
   */
  readsRepartitioned?: boolean;
  /** A testing aid: called at `fetch-error` inside kafkajs' fetch handler (see failpoint.ts). */
  failpoint?: (name: 'fetch-error') => void;
}

/** How consumption stands, for /readyz and /status. */
export interface SourceHealth {
  consuming: boolean;
  state: string;
}

export const DLQ_PAYLOAD_MAX = 262_144;

/** Where a message was first read: `topic/partition/offset`, on the dead-letter topic and on repartition topics. */
export const ORIGIN_HEADER = 'fraud-sql-source';

/** On a repartition topic: why the hop found the message not to be a valid order, and its size. */
export const REASON_HEADER = 'fraud-sql-reason';
export const BYTES_HEADER = 'fraud-sql-bytes';
/** On a repartition topic: a watermark mark (no order), the event time (µs) its input partition has reached. */
export const MARK_HEADER = 'fraud-sql-watermark';
/** Beside a mark: its input partition has nothing more for now (read to its end and quiet). */
export const IDLE_HEADER = 'fraud-sql-idle';

/** `topic/partition/offset`, and on a repartition topic `/partitions` (of the input topic) after it. */
export const originHeader = (topic: string, partition: number, offset: bigint | string, partitions?: number) =>
  `${topic}/${partition}/${offset}${partitions === undefined ? '' : `/${partitions}`}`;

/** What the hop wrote beside a message: where it was first read, and a dead letter's reason. */
function repartitioned(headers: IHeaders | undefined): Pick<SourceMessage, 'origin' | 'rejected' | 'mark' | 'idle'> {
  const text = (name: string) => {
    const h = headers?.[name];
    return h === undefined ? undefined : String(Array.isArray(h) ? h[0] : h);
  };
  const m = /^(.+)\/(\d+)\/(\d+)\/(\d+)$/.exec(text(ORIGIN_HEADER) ?? '');
  const reason = text(REASON_HEADER);
  return {
    ...(m ? { origin: { topic: m[1]!, partition: Number(m[2]), offset: BigInt(m[3]!), partitions: Number(m[4]) } } : {}),
    ...(reason !== undefined ? { rejected: { reason, bytes: Number(text(BYTES_HEADER) ?? 0) } } : {}),
    ...(text(MARK_HEADER) !== undefined ? { mark: text(MARK_HEADER) === '' ? -Infinity : Number(text(MARK_HEADER)) } : {}),
    ...(text(IDLE_HEADER) !== undefined ? { idle: true } : {}),
  };
}

/** kafkajs log entries to one readable line each; its connection chatter is debug. */
export function logCreator(logger: Logger) {
  return () =>
    ({ namespace, level, log }: LogEntry) => {
      const { message, broker, error } = log as { message: string; broker?: string; error?: string };
      const text = `kafka ${namespace}: ${message}${broker ? ` (broker ${broker})` : ''}${error && !message.includes(error) ? `: ${error}` : ''}`;
      if (level === logLevel.ERROR || level === logLevel.WARN) {
        // Reconnect attempts are reported once per retry by the adapter, and crashes by
        // its CRASH handler (one line, with what happens next); keep kafkajs' own at debug.
        // A coordinator loading its group state (a broker just started) answers that it
        // is, and kafkajs asks again: a lasting failure ends as a crash, reported.
        if (
          /Connection error|Failed to connect|ECONNREFUSED|Crash: |Error when calling eachBatch|Restarting the consumer|rebalanc|Topic creation errors|Limiting retries|switched default partitioner|coordinator is loading/i.test(
            text,
          )
        )
          logger.debug(text);
        else logger.warn(text);
      } else logger.debug(text);
    };
}

export function mapKafkaError(err: unknown, brokers: readonly string[]): FraudSqlError {
  if (err instanceof FraudSqlError) return err;
  const e = err as Error & { retriable?: boolean; name?: string };
  const msg = e.message ?? String(err);
  if (
    /ECONNREFUSED|ENOTFOUND|ETIMEDOUT|Connection|connect|broker|KafkaJSNumberOfRetriesExceeded|KafkaJSConnectionError|KafkaJSBrokerNotFound|ECONNRESET|Closed connection/i.test(
      `${e.name} ${msg}`,
    )
  ) {
    return new FraudSqlError('KAFKA_UNREACHABLE', `cannot reach Kafka at ${brokers.join(',')} (${msg})`, { retriable: true, cause: err });
  }
  return new FraudSqlError('KAFKA_FAILED', `Kafka error: ${msg}`, { retriable: e.retriable ?? false, cause: err });
}

/** kafkajs wraps errors in `cause` chains: the innermost one says what happened. */
function rootCause(err: unknown): { name?: string } {
  let e = err as { cause?: unknown; name?: string };
  while (e?.cause) e = e.cause as { cause?: unknown; name?: string };
  return e ?? {};
}

/**
 * Whether kafkajs restarts a consumer after a crash it calls retriable (it asks before
 * every restart). A group-coordinator lookup that every broker failed (retriable
 * through kafkajs-fix.ts) is a broker restarting, or a lasting refusal such as a
 * missing group ACL: it is restarted with backoff, and once such crashes have gone on
 * for a minute, given up, which ends consumption with the reason. Anything else is
 * restarted as kafkajs would.
 */
export function restartPolicy(signal?: AbortSignal, clock = { now: Date.now, sleep }): (err: Error) => Promise<boolean> {
  let first = 0;
  let last = -Infinity;
  let attempt = 0;
  return async (err) => {
    if (rootCause(err).name !== 'KafkaJSGroupCoordinatorNotFound') return true;
    const now = clock.now();
    // Crashes further apart than a few of the longest backoffs are separate episodes.
    if (now - last > 3 * DEFAULT_RETRY.maxMs) {
      first = now;
      attempt = 0;
    }
    last = now;
    if (now - first > ASSIGNMENT_RETRY_MS || signal?.aborted) return false;
    await clock.sleep(backoffMs(DEFAULT_RETRY, ++attempt, Math.random()), signal);
    return !signal?.aborted;
  };
}

/** How every fraud-sql consumer fetches. */
export function consumerConfig(opts: Pick<KafkaOptions, 'groupId' | 'sessionTimeoutMs' | 'signal'>): ConsumerConfig {
  return {
    groupId: opts.groupId,
    // A deleted topic must not come back empty by asking for it (see ensureTopics).
    allowAutoTopicCreation: false,
    // A member that died without leaving holds its partitions until this expires.
    // Heartbeats continue while the engine works (fetching is decoupled from batch
    // processing), so a short timeout is safe with long batches.
    sessionTimeout: opts.sessionTimeoutMs ?? 10_000,
    heartbeatInterval: 3_000,
    // How long the broker holds a fetch that finds nothing: data ends the wait at
    // once, so this only sets how often an idle consumer asks. An idle process (four
    // consumers) used 3.4 % of a core at 100 ms, 2.2 % at 500 and 0.9-1.6 % at 2,000;
    // it stays below the heartbeat interval, which kafkajs keeps between fetches.
    maxWaitTimeInMs: 2_000,
    // Each fetch becomes JavaScript objects at several times its size, and its
    // messages keep the whole response alive, in every consumer of the process (the
    // hop's and each engine's): a backlog of 1,000,000 orders peaked at 1,047 MB
    // with 4 MB per partition (16 in all), 1,000-1,040 with 1 MB (4), 907-926 with
    // these, draining as fast.
    maxBytesPerPartition: 512 * 1024,
    maxBytes: 2 * 1024 * 1024,
    retry: { initialRetryTime: 300, maxRetryTime: 10_000, retries: 8, restartOnFailure: restartPolicy(opts.signal) },
  };
}

/** How long an assignment may keep failing before consumption ends. */
export const ASSIGNMENT_RETRY_MS = 60_000;

/**
 * Applies an assignment (`apply`). A failure that can pass (a rebalance racing this
 * one, a broker just restarted and still loading, a PostgreSQL hiccup) is retried
 * with backoff while the assignment is `current`; an offset gap, or failing for a
 * minute, goes to `fail` and ends consumption: partitions that are never set up
 * would otherwise stop being consumed in silence.
 */
export async function applyAssignment(
  apply: () => Promise<void>,
  opts: { current: () => boolean; signal?: AbortSignal; logger: Logger; fail: (err: Error) => void },
): Promise<void> {
  const started = Date.now();
  for (let attempt = 1; opts.current() && !opts.signal?.aborted; attempt++) {
    try {
      await apply();
      return;
    } catch (err) {
      if ((err instanceof FraudSqlError && err.code === 'OFFSET_GAP') || Date.now() - started > ASSIGNMENT_RETRY_MS) return opts.fail(err as Error);
      const wait = backoffMs(DEFAULT_RETRY, attempt, Math.random());
      opts.logger.warn(`partition assignment failed: ${(err as Error).message}; retrying in ${(wait / 1000).toFixed(1)} s`);
      await sleep(wait, opts.signal);
    }
  }
}

/** Connects kafkajs clients, retrying with backoff while the broker is unreachable. */
export async function connectRetrying(
  clients: readonly { connect(): Promise<void> }[],
  opts: Pick<KafkaOptions, 'brokers' | 'logger' | 'signal' | 'onRetry'>,
): Promise<void> {
  await retrying(
    async () => {
      try {
        for (const c of clients) await c.connect();
      } catch (err) {
        throw mapKafkaError(err, opts.brokers);
      }
    },
    {
      shouldRetry: (err) => err instanceof FraudSqlError && err.retriable,
      signal: opts.signal,
      onRetry: (err, attempt, wait) => {
        opts.onRetry?.();
        opts.logger.warn(`${(err as Error).message}; retrying in ${(wait / 1000).toFixed(1)} s`, { attempt });
      },
    },
  );
}

/** The kafkajs client every consumer and producer of fraud-sql is made from. */
export function newKafka(opts: Pick<KafkaOptions, 'clientId' | 'brokers' | 'logger' | 'security'>): Kafka {
  return new Kafka({
    clientId: opts.clientId,
    brokers: opts.brokers,
    logLevel: logLevel.INFO,
    logCreator: logCreator(opts.logger),
    // Few quick retries inside kafkajs: longer outages are retried (and reported) by the adapters.
    retry: { initialRetryTime: 300, maxRetryTime: 5_000, retries: 3 },
    connectionTimeout: 3_000,
    ssl: opts.security?.ssl ?? false,
    ...(opts.security?.sasl ? { sasl: opts.security.sasl as SASLOptions } : {}),
  });
}

/**
 * A connected idempotent producer for `topic`, created when missing with the
 * given partitions (an existing topic is left as it is).
 */
export async function openProducer(
  opts: Pick<KafkaOptions, 'clientId' | 'brokers' | 'logger' | 'security' | 'signal' | 'onRetry'>,
  topic: string,
  create: { partitions: number; replicationFactor: number },
): Promise<Producer> {
  const kafka = newKafka(opts);
  const admin = kafka.admin();
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, createPartitioner: KeyPartitioner });
  await connectRetrying([admin, producer], opts);
  try {
    await admin.createTopics({ topics: [{ topic, numPartitions: create.partitions, replicationFactor: create.replicationFactor }], waitForLeaders: true });
  } catch (err) {
    // A client that may not create topics (ACLs) writes to one that exists.
    const exists = await admin
      .fetchTopicMetadata({ topics: [topic] })
      .then(() => true)
      .catch(() => false);
    if (!exists) {
      await producer.disconnect().catch(() => {});
      throw mapKafkaError(err, opts.brokers);
    }
  } finally {
    await admin.disconnect().catch(() => {});
  }
  return producer;
}

export class KafkaSource implements SourcePort {
  private readonly kafka: Kafka;
  private readonly consumer: Consumer;
  private readonly producer: Producer;
  private readonly admin: Admin;
  private readonly buffer: MessageBuffer;
  /** Partitions whose position has been set for the current assignment. */
  private ready = new Set<number>();
  private assignment: number[] = [];
  private onAssign: AssignHandler | null = null;
  private assigning: Promise<void> = Promise.resolve();
  /** Counts group joins: an assignment still being retried gives way to a newer one. */
  private generation = 0;
  private running = false;
  private health: SourceHealth = { consuming: false, state: 'connecting' };
  /** The topics exist (created or waited for): their offsets may be asked for. */
  private topicsReady = false;

  constructor(private readonly opts: KafkaOptions) {
    this.buffer = new MessageBuffer(opts.bufferMessages);
    this.kafka = newKafka(opts);
    this.consumer = this.kafka.consumer(consumerConfig(opts));
    this.producer = this.kafka.producer({
      allowAutoTopicCreation: true,
      idempotent: true,
      maxInFlightRequests: 1,
      createPartitioner: KeyPartitioner,
    });
    this.admin = this.kafka.admin();
  }

  /** Connects (retrying with backoff while the broker is unreachable) and starts fetching. */
  async start(onAssign: AssignHandler): Promise<void> {
    this.onAssign = onAssign;
    const { logger, brokers, topic, signal } = this.opts;
    await connectRetrying([this.admin, this.producer, this.consumer], this.opts);
    // Stopped while connecting or waiting for the topic: no subscription, nothing created.
    if (signal?.aborted) return;
    await this.ensureTopics();
    if (signal?.aborted) return;
    this.topicsReady = true;
    this.consumer.on(this.consumer.events.GROUP_JOIN, (e) => {
      const parts = e.payload.memberAssignment[topic] ?? [];
      const generation = ++this.generation;
      this.assigning = this.assigning.then(() => this.assignRetrying(parts, generation));
    });
    // kafkajs restarts its consumer after a retriable crash; after any other one it
    // just stops fetching while the process looks alive. That ends consumption here.
    this.consumer.on(this.consumer.events.CRASH, (e) => {
      // Stopping: the consumer is being disconnected anyway.
      if (signal?.aborted) return;
      const err = mapKafkaError(e.payload.error, brokers);
      this.opts.onCrash?.(e.payload.restart);
      if (e.payload.restart) {
        logger.warn(`${err.message}; the Kafka consumer restarts`);
        this.health = { consuming: false, state: `restarting after: ${err.message}` };
      } else {
        this.fail(new FraudSqlError('SOURCE_STOPPED', `Kafka consumption stopped: ${err.message}`, { cause: err }));
      }
    });
    await this.consumer.subscribe({ topic, fromBeginning: true });
    this.running = true;
    await this.consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: 1,
      eachBatch: (payload) => this.onBatch(payload),
    });
  }

  /** Ends consumption for good: the batch loop gets `err` and the process stops (see README, Operate). */
  private fail(err: Error): void {
    this.health = { consuming: false, state: `stopped: ${err.message}` };
    this.buffer.fail(err);
  }

  healthState(): SourceHealth {
    return this.health;
  }

  /**
   * The input topic must exist before subscribing (kafkajs would crash on it):
   * with --create-topics it is created, otherwise fraud-sql waits for it, saying so once.
   */
  private async ensureTopics(): Promise<void> {
    const { topic, dlqTopic, createTopics, logger, brokers, signal } = this.opts;
    const topics = createTopics
      ? [
          { topic, numPartitions: createTopics.partitions, replicationFactor: createTopics.replicationFactor },
          { topic: dlqTopic, numPartitions: 1, replicationFactor: createTopics.replicationFactor },
        ]
      : [{ topic: dlqTopic }];
    // false when they exist already; the DLQ is created either way, as producers do on first use.
    const created = await this.admin.createTopics({ topics, waitForLeaders: true }).catch((err) => {
      if (createTopics) throw mapKafkaError(err, brokers);
      return false;
    });
    if (created && createTopics) logger.info(`created topics ${topic} (${createTopics.partitions} partitions) and ${dlqTopic}`);
    let waited = false;
    while (!signal?.aborted && !(await this.admin.listTopics()).includes(topic)) {
      if (!waited) logger.warn(`waiting for topic "${topic}" on ${brokers.join(',')} (create it, or start with --create-topics)`);
      waited = true;
      this.health = { consuming: false, state: `waiting for topic "${topic}"` };
      await sleep(1_000, signal);
    }
    if (waited && !signal?.aborted) logger.info(`topic "${topic}" exists now`);
  }

  private assignRetrying(partitions: number[], generation: number): Promise<void> {
    return applyAssignment(() => this.handleAssignment(partitions), {
      current: () => generation === this.generation,
      signal: this.opts.signal,
      logger: this.opts.logger,
      fail: (err) => this.fail(err),
    });
  }

  reassign(): Promise<void> {
    // A group join since then brings its own assignment: this one is stale.
    const generation = this.generation;
    const partitions = this.assignment;
    this.assigning = this.assigning.then(() => (generation === this.generation ? this.assignRetrying(partitions, generation) : undefined));
    return this.assigning;
  }

  private async handleAssignment(partitions: number[]): Promise<void> {
    this.ready = new Set();
    this.assignment = [...partitions].sort((a, b) => a - b);
    // Buffered messages belong to the previous assignment; each partition is re-sought below.
    this.buffer.clear();
    const ranges = new Map<number, OffsetRange>();
    for (const o of await this.admin.fetchTopicOffsets(this.opts.topic)) {
      if (partitions.includes(o.partition)) ranges.set(o.partition, { low: BigInt(o.low), high: BigInt(o.high) });
    }
    const seek = await this.onAssign!(this.assignment, ranges);
    this.health = { consuming: true, state: 'consuming' };
    for (const [partition, offset] of seek) {
      this.consumer.seek({ topic: this.opts.topic, partition, offset: offset.toString() });
      this.ready.add(partition);
    }
    this.opts.logger.info(`assigned partitions ${this.assignment.join(',') || '(none)'} of ${this.opts.topic}`, {
      resume: [...seek].map(([p, o]) => `${p}@${o}`).join(','),
    });
  }

  private async onBatch({ batch, resolveOffset, heartbeat, isStale, isRunning }: EachBatchPayload): Promise<void> {
    // Never throw from here: kafkajs would act on offsets itself. Skipping without
    // resolving makes kafkajs fetch the same messages again.
    if (!this.ready.has(batch.partition) || isStale()) return;
    try {
      this.opts.failpoint?.('fetch-error');
    } catch (err) {
      // Non-retriable, as an unsupported codec or a client bug is: kafkajs stops its consumer.
      throw Object.assign(err as Error, { retriable: false });
    }
    this.health = { consuming: true, state: 'consuming' };
    const msgs: SourceMessage[] = batch.messages.map((m) => ({
      topic: batch.topic,
      partition: batch.partition,
      offset: BigInt(m.offset),
      key: m.key,
      value: m.value,
      timestampMs: Number(m.timestamp),
      ...(this.opts.readsRepartitioned ? repartitioned(m.headers) : {}),
    }));
    if (msgs.length === 0) return;
    this.buffer.push(msgs);
    resolveOffset(batch.lastOffset());
    // Backpressure: hold this fetch until the engine has drained the buffer.
    while (!this.buffer.hasSpace() && isRunning() && this.running) {
      await this.buffer.waitForSpace(1_000);
      await heartbeat().catch(() => {});
    }
  }

  next(maxSize: number, maxWaitMs: number, signal: AbortSignal, free?: Promise<unknown>): Promise<SourceMessage[] | null> {
    return this.buffer.next(maxSize, maxWaitMs, signal, free);
  }

  /** Mirrors committed progress to Kafka for external lag tools. Best effort. */
  async committed(offsets: ReadonlyMap<number, bigint>): Promise<void> {
    if (offsets.size === 0) return;
    try {
      await this.consumer.commitOffsets([...offsets].map(([partition, o]) => ({ topic: this.opts.topic, partition, offset: o.toString() })));
    } catch (err) {
      this.opts.logger.debug(`could not mirror offsets to Kafka: ${(err as Error).message}`);
    }
  }

  async sendDeadLetters(dls: readonly DeadLetter[]): Promise<void> {
    if (dls.length === 0) return;
    try {
      await this.producer.send({
        topic: this.opts.dlqTopic,
        acks: -1,
        messages: dls.map((d) => ({
          key: d.key,
          value: d.value ? d.value.subarray(0, DLQ_PAYLOAD_MAX) : null,
          headers: {
            [REASON_HEADER]: d.reason,
            [ORIGIN_HEADER]: originHeader(d.topic, d.partition, d.offset),
            [BYTES_HEADER]: String(d.bytes ?? d.value?.length ?? 0),
          },
        })),
      });
    } catch (err) {
      throw mapKafkaError(err, this.opts.brokers);
    }
  }

  /** High watermark per assigned partition, for lag. */
  async offsetRange(partition: number): Promise<OffsetRange> {
    const o = (await this.admin.fetchTopicOffsets(this.opts.topic)).find((x) => x.partition === partition);
    // A partition the topic no longer has: nothing there, so any position is past its end.
    return o ? { low: BigInt(o.low), high: BigInt(o.high) } : { low: 0n, high: 0n };
  }

  async endOffsets(): Promise<Map<number, bigint>> {
    const out = new Map<number, bigint>();
    // Asking for a topic's offsets before it is created makes kafkajs' admin track it,
    // and its own createTopics then fails on the missing topic: a probe scraped during
    // startup ended consumption. Until then, only whether the broker answers.
    if (!this.topicsReady) {
      await this.admin.listTopics();
      return out;
    }
    for (const o of await this.admin.fetchTopicOffsets(this.opts.topic)) out.set(o.partition, BigInt(o.high));
    return out;
  }

  assigned(): number[] {
    return this.assignment;
  }

  async stop(): Promise<void> {
    this.running = false;
    this.buffer.end();
    // Leaves the group, so the partitions move to another instance at once.
    await this.consumer.disconnect().catch(() => {});
    await this.producer.disconnect().catch(() => {});
    await this.admin.disconnect().catch(() => {});
  }
}
