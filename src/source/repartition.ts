/**
 * The repartition hop (see src/plan.ts): consumes the input topic and re-publishes
 * every message to one repartition topic per order field in use, keyed by the
 * order's value of that field, so that all orders of one IP (or user) reach the
 * same partition, whichever partition they came in on. Kafka's default
 * partitioner (murmur2, as Java producers use) picks the partition, so a topic
 * keyed by the field with a standard producer is already partitioned the same way.
 *
 * Guarantees: a message's input offset is committed to Kafka only after the broker
 * acknowledged its copies (idempotent producer, acks from all replicas). A crash in
 * between sends the copies again; the engines drop them as redeliveries (same
 * order_id and event time), and record a malformed one once (by its input
 * coordinates, carried in the `fraud-sql-source` header). So the hop is
 * at-least-once and the results exactly-once.
 */
import { type Admin, type Consumer, type EachBatchPayload, type Kafka, type Message, type Producer } from 'kafkajs';
import { FraudSqlError } from '../errors.js';
import { KeyPartitioner } from './partitioner.js';
import { sleep } from '../retry.js';
import { findGap, gapError, resumeAfterGap, type OffsetGap } from '../engine/gap.js';
import type { OffsetGapPolicy } from '../engine/ports.js';
import {
  applyAssignment,
  connectRetrying,
  consumerConfig,
  BYTES_HEADER,
  DLQ_PAYLOAD_MAX,
  mapKafkaError,
  newKafka,
  IDLE_HEADER,
  MARK_HEADER,
  ORIGIN_HEADER,
  originHeader,
  REASON_HEADER,
  type KafkaOptions,
  type SourceHealth,
} from './kafka.js';

export interface RepartitionOptions extends Pick<KafkaOptions, 'brokers' | 'security' | 'clientId' | 'sessionTimeoutMs' | 'logger' | 'signal' | 'onRetry'> {
  /** The input topic, and the group that consumes it here. */
  topic: string;
  groupId: string;
  targets: readonly { key: string; topic: string }[];
  /** Where malformed messages go (as they are), for the engine that records dead letters; null: dropped here. */
  deadLetterTopic: string | null;
  /** The order's event time (µs) and value of each target field, or why the message is not a valid order. */
  route: (value: Buffer | null) => { eventUs: number; keys: ReadonlyMap<string, string> } | { reason: string };
  /** Replication factor of the repartition topics it creates (their partitions: the input's). */
  replicationFactor: number;
  /** Create the input topic when missing (`--create-topics`); otherwise wait for it. */
  createInput?: { partitions: number };
  /** What to do when the group's committed offset is outside the input topic (see OffsetGapPolicy). */
  onOffsetGap: OffsetGapPolicy;
  /** Told of every offset gap (for metrics). */
  onGap?: (gap: OffsetGap) => void;
  /** How long a caught-up input partition stays quiet before it is announced idle. */
  idleMs: number;
  /** A testing aid: called at `after-repartition-produce` and `repartition-check-error` (see failpoint.ts). */
  failpoint?: (name: 'after-repartition-produce' | 'repartition-check-error') => void;
}

export class Repartitioner {
  private readonly kafka: Kafka;
  private readonly consumer: Consumer;
  private readonly producer: Producer;
  private readonly admin: Admin;
  private readonly forwarded = new Map<number, bigint>();
  private failure: ((err: Error) => void) | null = null;
  private stopped = false;
  private health: SourceHealth = { consuming: false, state: 'connecting' };
  /** The topics exist (created or waited for): their offsets may be asked for. */
  private topicsReady = false;
  /** The current assignment's offset-gap check: nothing is forwarded before it passed. */
  private checked: Promise<void> = Promise.resolve();
  /** Counts group joins: a check still being retried gives way to a newer assignment's. */
  private generation = 0;
  /** The group join whose check passed. */
  private passed = -1;
  /** Told to the engines with every copy: how many input partitions feed each repartitioned one. */
  private inputPartitions = 0;
  /** Partitions of each repartition topic: every one gets the watermark marks. */
  private readonly targetPartitions = new Map<string, number>();
  /** Per input partition, the largest event time forwarded. */
  private readonly reached = new Map<number, number>();
  /** The input partitions assigned here. */
  private assigned: readonly number[] = [];
  /** Per assigned input partition, since when nothing was forwarded from it; absent once announced idle. */
  private quietSince = new Map<number, number>();
  /**
   * Assigned input partitions the engines may hold as idle: announced so here, or
   * possibly by an earlier owner (every partition, after an assignment).
   */
  private idle = new Set<number>();
  private idleTimer: NodeJS.Timeout | null = null;
  /** Rejects when forwarding stops for good (a crash kafkajs does not restart). */
  readonly failed: Promise<never>;

  constructor(private readonly opts: RepartitionOptions) {
    this.kafka = newKafka(opts);
    this.consumer = this.kafka.consumer(consumerConfig(opts));
    this.producer = this.kafka.producer({ idempotent: true, maxInFlightRequests: 1, createPartitioner: KeyPartitioner });
    this.admin = this.kafka.admin();
    this.failed = new Promise<never>((_, reject) => {
      this.failure = (err) => {
        this.stopped = true;
        reject(err);
      };
    });
    this.failed.catch(() => {});
  }

  /**
   * Connects, creates the repartition topics that are missing (as many partitions as
   * the input), and starts forwarding. Resolves once forwarding runs.
   */
  async start(): Promise<void> {
    const { logger, signal, topic } = this.opts;
    await connectRetrying([this.admin, this.producer, this.consumer], this.opts);
    if (signal?.aborted) return;
    await this.ensureTopics();
    if (signal?.aborted) return;
    this.topicsReady = true;
    this.consumer.on(this.consumer.events.CRASH, (e) => {
      // Stopping: the consumer is being disconnected anyway.
      if (signal?.aborted) return;
      const err = mapKafkaError(e.payload.error, this.opts.brokers);
      if (e.payload.restart) logger.warn(`${err.message}; the repartitioning consumer restarts`);
      else this.failure!(new FraudSqlError('SOURCE_STOPPED', `repartitioning ${topic} stopped: ${err.message}`, { cause: err }));
    });
    this.consumer.on(this.consumer.events.GROUP_JOIN, (e) => {
      const parts = e.payload.memberAssignment[topic] ?? [];
      this.assigned = parts;
      this.quietSince = new Map(parts.map((p) => [p, Date.now()]));
      this.idle = new Set(parts);
      const generation = ++this.generation;
      this.checked = this.checked.then(() =>
        applyAssignment(
          async () => {
            await this.checkAssignment(parts);
            this.passed = generation;
          },
          {
            current: () => generation === this.generation,
            signal,
            logger,
            fail: (err) => this.failure!(err),
          },
        ),
      );
      // Partitions added to the input later feed the engines too.
      this.admin
        .fetchTopicMetadata({ topics: [topic] })
        .then((m) => (this.inputPartitions = Math.max(this.inputPartitions, m.topics[0]?.partitions.length ?? 0)))
        .catch(() => {});
    });
    await this.consumer.subscribe({ topic, fromBeginning: true });
    await this.consumer.run({ autoCommit: false, eachBatchAutoResolve: false, partitionsConsumedConcurrently: 1, eachBatch: (p) => this.forward(p) });
    this.health = { consuming: true, state: 'consuming' };
    this.idleTimer = setInterval(
      () => void this.announceIdle().catch((err) => logger.debug(`announcing idle input partitions failed: ${(err as Error).message}`)),
      Math.max(100, this.opts.idleMs / 4),
    );
    logger.info(`repartitioning ${topic} to ${this.opts.targets.map((t) => t.topic).join(', ')} as group ${this.opts.groupId}`);
  }

  private async ensureTopics(): Promise<void> {
    const { topic, targets, logger, signal, replicationFactor, createInput } = this.opts;
    if (createInput) {
      const created = await this.admin
        .createTopics({ topics: [{ topic, numPartitions: createInput.partitions, replicationFactor }], waitForLeaders: true })
        .catch((err) => {
          throw mapKafkaError(err, this.opts.brokers);
        });
      if (created) logger.info(`created topic ${topic} (${createInput.partitions} partitions)`);
    }
    let waited = false;
    for (;;) {
      const meta = await this.admin.fetchTopicMetadata({ topics: [] });
      const input = meta.topics.find((t) => t.name === topic);
      if (input) {
        const partitions = input.partitions.length;
        this.inputPartitions = partitions;
        const missing = targets.filter((t) => !meta.topics.some((m) => m.name === t.topic));
        if (missing.length > 0) {
          await this.admin
            .createTopics({ topics: missing.map((t) => ({ topic: t.topic, numPartitions: partitions, replicationFactor })), waitForLeaders: true })
            .catch((err) => {
              // Another process created it first: fine.
              if (!/already exists/i.test((err as Error).message)) throw mapKafkaError(err, this.opts.brokers);
            });
          logger.info(`created repartition topics ${missing.map((t) => t.topic).join(', ')} (${partitions} partitions, as ${topic})`);
        }
        for (const t of targets) this.targetPartitions.set(t.topic, meta.topics.find((m) => m.name === t.topic)?.partitions.length ?? partitions);
        for (const t of meta.topics.filter((m) => targets.some((x) => x.topic === m.name) && m.partitions.length !== partitions)) {
          logger.warn(
            `repartition topic ${t.name} has ${t.partitions.length} partitions and ${topic} ${partitions}: keys are spread by the repartition topic's count, results stay exact`,
          );
        }
        return;
      }
      if (!waited) logger.warn(`waiting for topic "${topic}" on ${this.opts.brokers.join(',')} (create it, or start with --create-topics)`);
      waited = true;
      this.health = { consuming: false, state: `waiting for topic "${topic}"` };
      await sleep(1_000, signal);
      if (signal?.aborted) return;
    }
  }

  /**
   * The group's committed offsets against what the input holds: a gap fails
   * consumption (nothing forwarded), or moves the partition to the earliest or
   * latest offset, per the policy.
   */
  private async checkAssignment(partitions: readonly number[]): Promise<void> {
    if (partitions.length === 0) return;
    this.opts.failpoint?.('repartition-check-error');
    const { topic, groupId } = this.opts;
    const [ranges, committed] = await Promise.all([this.admin.fetchTopicOffsets(topic), this.admin.fetchOffsets({ groupId, topics: [topic] })]);
    for (const p of partitions) {
      const c = BigInt(committed[0]?.partitions.find((x) => x.partition === p)?.offset ?? '-1');
      const r = ranges.find((x) => x.partition === p);
      if (c < 0n || !r) continue; // nothing committed yet: from the beginning
      const gap = findGap(p, c, { low: BigInt(r.low), high: BigInt(r.high) }, this.opts.onOffsetGap, false);
      if (!gap) continue;
      this.opts.onGap?.(gap);
      if (gap.policy === 'fail') throw gapError(gap, false);
      const at = resumeAfterGap(gap).toString();
      this.consumer.seek({ topic, partition: p, offset: at });
      await this.consumer.commitOffsets([{ topic, partition: p, offset: at }]);
      this.forwarded.set(p, BigInt(at));
    }
  }

  /**
   * An offset that does not follow what was forwarded: a redelivery, or the
   * client starting over after the topic was recreated or trimmed under it, which
   * ends consumption (as in the engine; the restart applies the policy).
   */
  private async checkJump(partition: number, firstOffset: bigint): Promise<void> {
    const expected = this.forwarded.get(partition);
    if (expected === undefined || expected === firstOffset) return;
    const r = (await this.admin.fetchTopicOffsets(this.opts.topic).catch(() => [])).find((x) => x.partition === partition);
    if (!r) return;
    const gap = findGap(partition, expected, { low: BigInt(r.low), high: BigInt(r.high) }, this.opts.onOffsetGap, true);
    if (!gap) return;
    this.opts.onGap?.(gap);
    this.failure!(gapError(gap, true));
  }

  private async forward({ batch, resolveOffset, isStale, heartbeat }: EachBatchPayload): Promise<void> {
    if (this.passed !== this.generation) {
      // The check is still being retried (or was given up, or superseded): nothing is
      // forwarded before it passes. Returning without resolving makes kafkajs fetch the
      // batch again; waiting a little first, heartbeating, keeps that from spinning and
      // the member in its group (kafkajs heartbeats only between batches).
      await Promise.race([this.checked, sleep(1_000)]);
      await heartbeat().catch(() => {});
      if (this.passed !== this.generation) return;
    }
    if (this.stopped || isStale() || batch.messages.length === 0) return;
    await this.checkJump(batch.partition, BigInt(batch.firstOffset()!));
    if (this.stopped) return;
    const { targets, deadLetterTopic, route } = this.opts;
    const out = new Chunks();
    const woken = this.idle.has(batch.partition) ? this.wakeIdle(out) : [];
    let reached = this.reached.get(batch.partition) ?? -Infinity;
    for (const m of batch.messages) {
      const origin = originHeader(batch.topic, batch.partition, m.offset, this.inputPartitions);
      const routed = route(m.value);
      if ('reason' in routed) {
        // Judged here already: the verdict travels with at most the part of the
        // payload a dead letter keeps, so an oversized message fits the hop too.
        if (deadLetterTopic) {
          const value = m.value ? m.value.subarray(0, DLQ_PAYLOAD_MAX) : null;
          out.add(deadLetterTopic, {
            key: m.key,
            value,
            timestamp: m.timestamp,
            headers: { [ORIGIN_HEADER]: origin, [REASON_HEADER]: routed.reason, [BYTES_HEADER]: String(m.value?.length ?? 0) },
          });
        }
        continue;
      }
      if (routed.eventUs > reached) reached = routed.eventUs;
      // The input's timestamp travels along: latency is measured from when the order was produced.
      for (const t of targets) out.add(t.topic, { key: routed.keys.get(t.key)!, value: m.value, timestamp: m.timestamp, headers: { [ORIGIN_HEADER]: origin } });
    }
    if (reached !== -Infinity) {
      // Every repartitioned partition hears how far this input partition has got, also
      // those none of its keys went to: each takes the slowest input partition as its
      // watermark, which would otherwise wait for this one.
      this.reached.set(batch.partition, reached);
      this.addMarks(out, batch.partition, batch.lastOffset(), false);
    }
    this.quietSince.set(batch.partition, Date.now());
    try {
      for (const topicMessages of out.requests()) await this.producer.sendBatch({ acks: -1, topicMessages });
      this.opts.failpoint?.('after-repartition-produce');
      const next = BigInt(batch.lastOffset()) + 1n;
      await this.consumer.commitOffsets([{ topic: batch.topic, partition: batch.partition, offset: next.toString() }]);
      resolveOffset(batch.lastOffset());
      this.forwarded.set(batch.partition, next);
      // Only once sent: a batch that fails is fetched again and wakes them again. A
      // woken partition that stays quiet is announced idle again after idleMs.
      for (const p of woken) {
        this.idle.delete(p);
        if (!this.quietSince.has(p)) this.quietSince.set(p, Date.now());
      }
    } catch (err) {
      // Thrown, kafkajs fetches the batch again (nothing was resolved); the copies
      // already sent are dropped downstream as redeliveries.
      throw mapKafkaError(err, this.opts.brokers);
    }
  }

  /** A watermark mark of an input partition to every repartitioned partition; `idle`: it has nothing more for now. */
  private addMarks(out: Chunks, partition: number, offset: bigint | string, idle: boolean): void {
    const reached = this.reached.get(partition);
    const headers = {
      [ORIGIN_HEADER]: originHeader(this.opts.topic, partition, offset, this.inputPartitions),
      [MARK_HEADER]: reached === undefined ? '' : String(reached),
      ...(idle ? { [IDLE_HEADER]: '1' } : {}),
    };
    for (const t of this.opts.targets)
      for (let q = 0; q < (this.targetPartitions.get(t.topic) ?? 0); q++) out.add(t.topic, { partition: q, key: null, value: null, headers });
  }

  /**
   * An input partition read to its end that stays quiet for `idleMs` is announced
   * idle, once: the repartitioned partitions stop waiting for it (a quiet or empty
   * input partition would hold their watermark forever). Judged here, where its
   * end offset is known: an input partition that is merely read later than the
   * others (a backlog) is not idle.
   */
  private async announceIdle(): Promise<void> {
    const now = Date.now();
    const quiet = this.assigned.filter((p) => {
      const since = this.quietSince.get(p);
      return since !== undefined && now - since >= this.opts.idleMs;
    });
    if (quiet.length === 0 || this.stopped) return;
    const lag = await this.lag();
    const out = new Chunks();
    const announced: number[] = [];
    for (const l of lag) {
      if (!quiet.includes(l.partition) || l.committed < l.end) continue;
      this.addMarks(out, l.partition, l.committed, true);
      announced.push(l.partition);
    }
    for (const topicMessages of out.requests()) await this.producer.sendBatch({ acks: -1, topicMessages });
    for (const p of announced) {
      this.quietSince.delete(p);
      this.idle.add(p);
    }
  }

  /**
   * Input after a quiet spell: every partition held idle holds the watermark again
   * (a mark without the idle flag, ahead of this batch's copies), until it sends or
   * is announced idle once more. Otherwise the first partition read would carry the
   * watermark past what the others still have to deliver: after a broker outage,
   * producers flush their backlog to every partition at once, and all but the first
   * one read would arrive late.
   */
  private wakeIdle(out: Chunks): number[] {
    const woken = [...this.idle];
    for (const p of woken) this.addMarks(out, p, this.forwarded.get(p) ?? 0n, false);
    return woken;
  }

  /** How forwarding stands, for /readyz and /status. */
  healthState(): SourceHealth {
    return this.stopped ? { consuming: false, state: 'stopped' } : this.health;
  }

  /** Per input partition, the next offset not yet forwarded by this process. */
  forwardedOffsets(): Map<number, bigint> {
    return new Map(this.forwarded);
  }

  /** Input lag per partition: end offset minus what the group committed. */
  async lag(): Promise<{ partition: number; committed: bigint; end: bigint }[]> {
    // As KafkaSource.endOffsets: no offsets of a topic that may not exist yet.
    if (!this.topicsReady) {
      await this.admin.listTopics();
      return [];
    }
    const [ends, committed] = await Promise.all([
      this.admin.fetchTopicOffsets(this.opts.topic),
      this.admin.fetchOffsets({ groupId: this.opts.groupId, topics: [this.opts.topic] }),
    ]);
    const done = new Map((committed[0]?.partitions ?? []).map((p) => [p.partition, BigInt(p.offset)]));
    return ends.map((e) => {
      const end = BigInt(e.high);
      const c = done.get(e.partition) ?? -1n;
      return { partition: e.partition, committed: c < 0n ? BigInt(e.low) : c, end };
    });
  }

  async stop(): Promise<void> {
    if (this.idleTimer) clearInterval(this.idleTimer);
    await this.consumer.disconnect().catch(() => {});
    await this.producer.disconnect().catch(() => {});
    await this.admin.disconnect().catch(() => {});
  }
}

/**
 * A fetch holds up to 512 KB per partition, and the broker refuses a produce request
 * over its message.max.bytes (1 MB by default): copies go out in requests of
 * about half that.
 */
class Chunks {
  private static readonly MAX_BYTES = 512 * 1024;
  private readonly done: { topic: string; messages: Message[] }[][] = [];
  private current = new Map<string, Message[]>();
  private bytes = 0;

  add(topic: string, m: Message): void {
    const size = (m.value ? (m.value as Buffer).length : 0) + 128;
    if (this.bytes + size > Chunks.MAX_BYTES && this.bytes > 0) this.flush();
    const list = this.current.get(topic);
    if (list) list.push(m);
    else this.current.set(topic, [m]);
    this.bytes += size;
  }

  private flush(): void {
    this.done.push([...this.current].map(([topic, messages]) => ({ topic, messages })));
    this.current = new Map();
    this.bytes = 0;
  }

  requests(): { topic: string; messages: Message[] }[][] {
    if (this.bytes > 0) this.flush();
    return this.done;
  }
}
