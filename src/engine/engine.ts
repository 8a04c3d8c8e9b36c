/**
 * The micro-batch engine: pure orchestration over ports (no kafkajs, pg or DuckDB
 * imports). One batch: decode -> late/dead-letter triage -> ingest into state ->
 * rules over the touched windows -> dead letters to their topic -> one PostgreSQL
 * transaction with results and offsets. Batches, assignments and idle ticks run
 * one at a time.
 */
import type { DeadLetter, LateEvent, RuleResult, SourceMessage } from '../types.js';
import type { CommitInput, Decoded, EngineOptions, EnginePorts, IngestRow, LoopOptions, OffsetRange, SourcePort } from './ports.js';
import { EngineEmitter, type BatchStats } from './events.js';
import { findGap, gapError, resumeAfterGap } from './gap.js';
import { FraudSqlError } from '../errors.js';
import { AlertStage } from '../alerts/stage.js';
import { EvidenceStage } from '../alerts/evidence.js';

interface PartitionState {
  /** First offset whose results are not yet in PostgreSQL. */
  nextOffset: bigint;
  /** First offset not yet through the rules (ahead of nextOffset while a commit is pending). */
  computedOffset: bigint;
  /** Next offset expected from the source. */
  position: bigint;
  /**
   * Per input partition the orders came through (through a repartition hop, each
   * partition here merges all of them; without one, just this partition): the
   * largest event time seen and when it last sent something. Each is in event-time
   * order on its own; their merge is not.
   */
  origins: Map<number, { maxEventUs: number; idle: boolean }>;
  /** How many input partitions feed this one through the hop; 0 without a hop (the origins seen are all). */
  originCount: number;
  /** The event-time watermark (see watermarkOf); never moves back. */
  watermarkUs: number | null;
  /** Wall time of the last message that was not a replay. */
  lastArrivalMs: number;
  /** Replayed offsets that were late the first time: skipped again. */
  lateOffsets: ReadonlySet<bigint>;
}

export class Engine {
  readonly events = new EngineEmitter();
  private readonly partitions = new Map<number, PartitionState>();
  private batchSeq = 0;
  private lock: Promise<unknown> = Promise.resolve();
  /** The last batch's PostgreSQL commit: commits run one at a time, in batch order. */
  private commits: Promise<unknown> = Promise.resolve();
  private lastRetentionMs = -Infinity;
  /** When rows were last marked final (in a batch's commit or by the idle ticker). */
  private lastFinalizeMs = -Infinity;
  /**
   * Per partition, the smallest offset in the state. Exact after each retention
   * pass; between passes only ingests happen, which never lower it below the first
   * offset ingested into an empty partition.
   */
  private retainedFrom = new Map<number, bigint>();
  /** Orders in the state after the last retention pass. */
  private stateOrders = 0;
  private lastFinalized = new Map<number, number>();
  /** The running source's offset ranges (see checkJump); null for sources without an end. */
  private offsetRange: ((partition: number) => Promise<OffsetRange>) | null = null;

  /** Null when this engine's detections do not alert (see EngineOptions.alerts). */
  private readonly alertStage: AlertStage | null;
  private readonly evidenceStage: EvidenceStage;

  constructor(
    private readonly ports: EnginePorts,
    private readonly opts: EngineOptions,
  ) {
    this.alertStage = opts.alerts ? new AlertStage(ports.state, opts.now) : null;
    this.evidenceStage = new EvidenceStage(ports.state, ports.sink);
  }

  /** Runs `fn` after everything queued before it: batches, assignments and ticks never interleave. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.lock.then(fn, fn);
    this.lock = next.catch(() => {});
    return next;
  }

  /** Runs `fn` between batches (a rule reload), never during one. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.serial(fn);
  }

  /**
   * Resolves once the engine can start on another batch: the DuckDB work of the
   * batches handed to it is done (their commits may still be running).
   */
  private ready(): Promise<void> {
    return this.lock.then(() => {});
  }

  committedOffsets(): Map<number, bigint> {
    return new Map([...this.partitions].map(([p, s]) => [p, s.nextOffset]));
  }

  /**
   * New assignment. Partitions that stay keep their state and resume where they
   * are; new ones rebuild their state by replaying from the oldest offset an open
   * window still needs. Returns where the source must seek each partition.
   */
  assign(partitions: readonly number[], ranges: ReadonlyMap<number, OffsetRange>): Promise<Map<number, bigint>> {
    return this.serial(async () => {
      // Progress and results are read back from PostgreSQL: our own pending commits first.
      await this.commits.catch(() => {});
      const wanted = new Set(partitions);
      const gone = [...this.partitions.keys()].filter((p) => !wanted.has(p));
      const fresh = partitions.filter((p) => !this.partitions.has(p));
      await this.ports.state.dropPartitions([...gone, ...fresh]);
      if (gone.length + fresh.length > 0) this.evidenceStage.forget();
      for (const p of [...gone, ...fresh]) this.retainedFrom.delete(p);
      for (const p of gone) {
        this.partitions.delete(p);
        this.lastFinalized.delete(p);
      }
      const seek = new Map<number, bigint>();
      const gapped: number[] = [];
      if (fresh.length > 0) {
        const starts = new Map(fresh.map((p) => [p, ranges.get(p)?.low ?? 0n]));
        const progress = await this.ports.sink.progress(starts);
        for (const p of fresh) {
          let pr = progress.get(p) ?? { partition: p, nextOffset: starts.get(p)!, restoreFrom: starts.get(p)!, lateOffsets: new Set<bigint>() };
          const resumeAt = await this.checkGap(p, pr.nextOffset, ranges.get(p) ?? { low: 0n, high: null });
          if (resumeAt !== null) {
            gapped.push(p);
            pr = { partition: p, nextOffset: resumeAt, restoreFrom: resumeAt, lateOffsets: new Set<bigint>() };
          }
          // A restore point Kafka has already deleted cannot be replayed; start at what is left.
          const from = pr.restoreFrom < starts.get(p)! ? starts.get(p)! : pr.restoreFrom;
          this.partitions.set(p, {
            nextOffset: pr.nextOffset,
            computedOffset: pr.nextOffset,
            position: from,
            origins: new Map(),
            originCount: 0,
            watermarkUs: null,
            lastArrivalMs: this.opts.now(),
            lateOffsets: pr.lateOffsets,
          });
        }
      }
      // Across a gap nothing is carried: the orders the carried results came from are gone.
      await this.restoreResults(
        [...gone, ...gapped],
        fresh.filter((p) => !gapped.includes(p)),
      );
      for (const [p, s] of this.partitions) seek.set(p, s.position);
      this.events.safeEmit('assigned', { partitions: [...partitions], seek });
      return seek;
    });
  }

  /**
   * The batch loop: pulls micro-batches from `source` until the input ends or
   * `signal` aborts, and resolves once every batch handed over is committed.
   *
   * Batches overlap: while one is committed to the sink, the next one is in
   * DuckDB and the one after that is fetched and decoded (JavaScript). The engine
   * keeps their DuckDB work and their commits in order. At most two commits wait,
   * so a slow sink slows fetching down instead of piling up batches (none, for a
   * sink that cannot commit concurrently). A failed
   * batch stops the loop at once, not when the next message arrives, and the
   * loop rejects with its error.
   */
  async run(source: SourcePort, opts: LoopOptions): Promise<void> {
    const fail = this.opts.failpoint ?? (() => {});
    this.offsetRange = source.offsetRange?.bind(source) ?? null;
    // Told in commit order: a later mirror never lands before an earlier one.
    let told = Promise.resolve();
    const onCommitted = (b: BatchStats) => {
      const offsets = new Map(b.partitions.map((p) => [p.partition, p.nextOffset]));
      // Best effort: a mirror that fails must not break the chain for the next one.
      told = told
        .then(() => source.committed(offsets))
        .then(() => fail('after-kafka-commit'))
        .catch(() => {});
    };
    this.events.on('batch:end', onCommitted);
    const ticker = opts.tickMs > 0 ? setInterval(() => void this.tick().catch((err) => this.events.safeEmit('tick:error', err as Error)), opts.tickMs) : null;
    const failed = new AbortController();
    const fetching = AbortSignal.any([opts.signal, failed.signal]);
    let failure: unknown = null;
    let fenced: Error | null = null;
    const pending: Promise<unknown>[] = [];
    const inFlight = this.ports.sink.concurrentCommit ? 2 : 0;
    try {
      try {
        await source.start((parts, ranges) => this.assign(parts, ranges));
      } catch (err) {
        if (opts.signal.aborted) return; // stopped while connecting: a clean end
        throw err;
      }
      // Ends the wait for the next batch at once: recovery from a fence must not wait for input.
      let wake = new AbortController();
      const spacing = opts.minBatchIntervalMs ?? 0;
      let lastTaken = 0;
      while (!fetching.aborted) {
        if (fenced) {
          // The batches after the fenced one fail with it (commits are chained); they,
          // and whatever was fetched meanwhile, are read again from where PostgreSQL says.
          await Promise.all(pending);
          pending.length = 0;
          this.events.safeEmit('fenced', fenced);
          await this.forgetAll();
          fenced = null;
          await source.reassign!();
          continue;
        }
        wake = new AbortController();
        // The batch closes once the engine can take it: its DuckDB work is done and
        // a commit slot is free (small batches while it keeps up, large when it does not),
        // and the spacing since the last batch has passed.
        const spaced = lastTaken + spacing - Date.now();
        const free = Promise.all([
          this.ready(),
          pending.length >= inFlight && pending.length > 0 ? pending[0] : null,
          spaced > 0 ? new Promise((r) => setTimeout(r, spaced).unref()) : null,
        ]);
        const batch = await source.next(opts.batchMaxSize, Math.max(opts.batchMaxWaitMs, spacing), AbortSignal.any([fetching, wake.signal]), free);
        lastTaken = Date.now();
        if (batch === null) break;
        if (fenced || batch.length === 0) continue;
        const decoded = this.decode(batch);
        await this.ready();
        while (pending.length > 0 && pending.length >= inFlight) await pending.shift();
        if (failure) break;
        if (fenced) continue;
        pending.push(
          this.handle(batch, decoded, batch.length < opts.batchMaxSize).catch((err) => {
            if (isFenced(err) && source.reassign) {
              fenced ??= err as Error;
              wake.abort();
            } else {
              failure = err;
              failed.abort();
            }
          }),
        );
      }
      await Promise.all(pending);
      if (failure) throw failure;
      // Stopped or at the end of its input: the windows the last batches closed are
      // marked final now, not left open until the next start (a batch marks them at
      // most once per retention interval, and the idle ticker stops with the loop).
      // Housekeeping: if it fails, the next start does it.
      await this.finalizeWindows(false).catch((err) => this.events.safeEmit('tick:error', err as Error));
    } finally {
      if (ticker) clearInterval(ticker);
      this.events.off('batch:end', onCommitted);
    }
  }

  /**
   * After a fenced commit: another process committed one of these partitions first
   * (it was given them in a rebalance while this one still had batches in flight).
   * The failed transaction held every partition of its batch, so every partition is
   * forgotten here, state and carried results, and the source's assignment, applied
   * again, rebuilds each from what PostgreSQL holds, as on a restart. A partition
   * that really moved is then revoked by the rebalance as usual.
   */
  private forgetAll(): Promise<void> {
    return this.serial(async () => {
      await this.commits.catch(() => {});
      this.commits = Promise.resolve();
      const all = [...this.partitions.keys()];
      await this.ports.state.dropPartitions(all);
      this.evidenceStage.forget();
      await this.restoreResults(all, []);
      this.partitions.clear();
      this.retainedFrom.clear();
      this.lastFinalized.clear();
    });
  }

  /**
   * A committed offset outside what the source holds: past its end (the topic was
   * recreated or its log truncated) or before its start (retention deleted orders
   * that were never processed). Per the policy, fails the assignment with a clear
   * message and writes nothing, or moves the partition's progress to the earliest
   * or latest offset. Returns where the partition resumes after a move, null
   * without a gap.
   */
  private async checkGap(partition: number, committed: bigint, range: OffsetRange, whileConsuming = false): Promise<bigint | null> {
    const gap = findGap(partition, committed, range, this.opts.onOffsetGap, whileConsuming);
    if (gap === null) return null;
    this.events.safeEmit('offset:gap', gap);
    if (gap.policy === 'fail') throw gapError(gap, whileConsuming);
    const resumeAt = resumeAfterGap(gap);
    await this.ports.sink.resetProgress(partition, resumeAt);
    return resumeAt;
  }

  /**
   * An offset that does not follow the partition's position is usually harmless
   * (a redelivery; transaction markers and compaction leave holes), but it is also
   * how a Kafka client shows a topic recreated under it or a log trimmed by
   * retention: it silently starts over at the earliest offset. Those are told
   * apart by the offsets the source holds now.
   */
  private async checkJump(partition: number, position: bigint): Promise<void> {
    if (!this.offsetRange) return;
    // Detection only: when the source cannot say right now (a rebalance, a broker
    // hiccup), the batch goes on; the next irregular offset asks again.
    const range = await this.offsetRange(partition).catch(() => null);
    if (range) await this.checkGap(partition, position, range, true);
  }

  /**
   * Handles one micro-batch. Resolves once its results and offsets are committed.
   * Its DuckDB work starts after the previous batch's; its PostgreSQL commit after
   * the previous commit, so the commit of one batch overlaps the next one's rules.
   * `live`: the batch closed before it was full (see EngineOptions.precedence).
   */
  private async handle(messages: readonly SourceMessage[], decoded: readonly Decoded[], live: boolean): Promise<BatchStats | null> {
    const { precedence } = this.opts;
    // A full batch is a backlog being caught up on: throughput, not latency.
    const commit = await this.serial(() => (precedence && live ? precedence.first(() => this.compute(messages, decoded)) : this.compute(messages, decoded)));
    return commit ? commit() : null;
  }

  /**
   * Decodes a batch ahead of handling it. Decoding is pure and the costliest
   * JavaScript step, so the batch loop runs it for the next batch while DuckDB and
   * PostgreSQL work on the current one.
   */
  private decode(messages: readonly SourceMessage[]): Decoded[] {
    return messages.map((m) => (m.rejected ? { ok: false, reason: m.rejected.reason } : m.mark !== undefined ? MARK : this.ports.decode(m.value)));
  }

  /** The DuckDB part of a batch; returns its commit, already chained after the previous one. */
  private async compute(messages: readonly SourceMessage[], decoded: readonly Decoded[]): Promise<(() => Promise<BatchStats>) | null> {
    const { now } = this.opts;
    const fail = this.opts.failpoint ?? (() => {});
    fail('after-fetch');
    const t0 = performance.now();
    const fresh: IngestRow[] = [];
    const replay: IngestRow[] = [];
    const deadLetters: DeadLetter[] = [];
    const late: LateEvent[] = [];
    const advanced = new Map<number, { expected: bigint; next: bigint }>();
    const sentAt: number[] = [];
    let marks = 0;
    const arrival = now();

    for (let i = 0; i < messages.length; i++) {
      const m = messages[i]!;
      const p = this.partitions.get(m.partition);
      if (!p) continue; // revoked
      if (m.offset !== p.position) await this.checkJump(m.partition, p.position);
      if (m.offset < p.position) continue; // delivered twice by the source
      p.position = m.offset + 1n;
      const isReplay = m.offset < p.nextOffset;
      if (!isReplay) {
        const a = advanced.get(m.partition);
        if (a) a.next = m.offset + 1n;
        else advanced.set(m.partition, { expected: p.computedOffset, next: m.offset + 1n });
        p.lastArrivalMs = arrival;
      }
      if (m.mark !== undefined) {
        // How far its input partition has got: no order, but the watermark may move.
        marks++;
        if (m.origin) noteOrigin(p, m.origin, m.mark, m.idle === true);
        continue;
      }
      if (!isReplay) sentAt.push(m.timestampMs);
      if (isReplay && p.lateOffsets.has(m.offset)) continue;
      const d = decoded[i]!;
      if (!d.ok) {
        // A repartitioned message is recorded where it was first read, so a redelivery is recorded once.
        const at = m.origin ?? m;
        if (!isReplay && this.opts.recordsDeadLetters !== false) {
          deadLetters.push({
            topic: at.topic,
            partition: at.partition,
            offset: at.offset,
            key: m.key,
            value: m.value,
            reason: d.reason,
            bytes: m.rejected?.bytes,
          });
        }
        continue;
      }
      const watermark = this.watermarkOf(p) ?? -Infinity;
      if (d.order.eventUs < watermark) {
        if (!isReplay) late.push({ topic: m.topic, partition: m.partition, offset: m.offset, order: d.order, watermarkUs: watermark });
        continue;
      }
      noteOrigin(p, m.origin ?? null, d.order.eventUs);
      (isReplay ? replay : fresh).push({ order: d.order, partition: m.partition, offset: m.offset });
    }
    const t1 = performance.now();

    const { state, rules, sink } = this.ports;
    if (replay.length > 0) {
      // Rebuilding the retained orders after a restart: no rules, no output. The
      // rules' results were restored as committed (restoreResults).
      await state.ingest(replay, ++this.batchSeq);
      this.noteRetained(replay);
    }
    if (advanced.size === 0) return null; // only replayed (or stale) messages: nothing new to commit

    const batchId = ++this.batchSeq;
    const ingested = await state.ingest(fresh, batchId);
    this.noteRetained(fresh);
    fail('after-ingest');
    const t2 = performance.now();

    const results: RuleResult[] = [];
    const ruleSeconds: BatchStats['ruleSeconds'] = [];
    const resultSets: CommitInput['results'][number][] = [];
    if (ingested.inserted > 0) {
      await state.setBatch(batchId);
      for (const run of await rules.run({ keepChanged: sink.copiesRuleTables === true })) {
        ruleSeconds.push({ rule: run.rule.name, seconds: run.durationMs / 1000 });
        if (run.error) {
          this.events.safeEmit('rule:error', { rule: run.rule.name, diagnostic: run.error });
          continue;
        }
        const r = run.result!;
        resultSets.push({
          rule: run.rule.name,
          target: run.rule.target,
          key: run.rule.key,
          replace: run.rule.replace,
          grows: run.rule.grows,
          version: run.rule.version,
          alert: run.rule.alert,
          evidence: run.rule.evidence,
          ...r,
        });
        results.push({ rule: run.rule.name, target: run.rule.target, names: r.names, columns: r.columns, rowCount: r.rowCount });
      }
    }
    const alerts = this.alertStage && resultSets.length > 0 ? await this.alertStage.alerts(resultSets) : [];
    const evidence = resultSets.length > 0 ? await this.evidenceStage.evidence(resultSets) : [];
    fail('after-rules');
    const t3 = performance.now();

    const eventWatermarks = this.eventWatermarks();
    const horizonUs = this.horizonUs();
    if (now() - this.lastRetentionMs >= this.opts.retentionIntervalMs) {
      this.lastRetentionMs = now();
      this.stateOrders = await state.retain(eventWatermarks, horizonUs);
      await rules.trim(eventWatermarks, horizonUs);
      this.retainedFrom = await state.retainedFrom();
    }
    const retainedFrom = this.retainedFrom;
    const t4 = performance.now();

    const watermarks = this.effectiveWatermarks();
    const progress = [...advanced].map(([partition, a]) => ({
      partition,
      expected: a.expected,
      next: a.next,
      restoreFrom: minBig(retainedFrom.get(partition) ?? a.next, a.next),
      watermarkUs: watermarks.get(partition) ?? this.heardSoFar(partition),
    }));
    for (const a of progress) this.partitions.get(a.partition)!.computedOffset = a.next;
    // Marking rows final is housekeeping too: at most once per interval (a statement
    // per table in DuckDB and in PostgreSQL), not in every small batch.
    const finalizing = now() - this.lastFinalizeMs >= this.opts.retentionIntervalMs;
    const finalizers = finalizing ? this.finalizers() : [];
    if (finalizing) {
      this.lastFinalizeMs = now();
      await rules.finalize(watermarks);
    }

    const commitStage = async (): Promise<BatchStats> => {
      const t5 = performance.now();
      await this.ports.deadLetters.send(deadLetters);
      fail('before-commit');
      await sink.commit({ results: resultSets, deadLetters, late, progress, finalizers, watermarks, alerts, evidence });
      this.alertStage?.noteCommitted(alerts);
      fail('after-commit');
      for (const a of progress) {
        const p = this.partitions.get(a.partition);
        if (p) p.nextOffset = a.next;
      }
      if (finalizing) this.lastFinalized = watermarks;
      const t6 = performance.now();
      const committedAt = now();
      const stats: BatchStats = {
        batchId,
        messages: messages.length - marks,
        orders: ingested.inserted,
        replayed: replay.length,
        duplicates: ingested.duplicates,
        deadLetters: deadLetters.length,
        late: late.length,
        alerts: alerts.length,
        stateOrders: this.stateOrders,
        stages: { decode: (t1 - t0) / 1000, ingest: (t2 - t1) / 1000, rules: (t3 - t2) / 1000, retention: (t4 - t3) / 1000, sink: (t6 - t5) / 1000 },
        latenciesMs: sentAt.map((s) => committedAt - s),
        results,
        ruleSeconds,
        partitions: progress.map((a) => ({ partition: a.partition, nextOffset: a.next, watermarkUs: a.watermarkUs })),
      };
      this.events.safeEmit('batch:end', stats);
      return stats;
    };
    // Chained: a commit only runs once every earlier one succeeded.
    const committed = this.commits.then(commitStage);
    this.commits = committed;
    return () => committed;
  }

  /**
   * Closes windows on wall-clock time while input is idle: after `idleTimeoutMs`
   * without new messages, a partition's watermark advances with the clock.
   */
  tick(): Promise<void> {
    return this.finalizeWindows(true);
  }

  /** Marks final what the watermarks closed since the last time; `throttled`: not again within the retention interval. */
  private finalizeWindows(throttled: boolean): Promise<void> {
    return this.serial(async () => {
      // After a failed commit (fenced: the state is about to be rebuilt) nothing is closed.
      const committed = await this.commits.then(
        () => true,
        () => false,
      );
      if (!committed) return;
      if (throttled && this.opts.now() - this.lastFinalizeMs < this.opts.retentionIntervalMs) return; // a batch just did
      const wms = this.effectiveWatermarks();
      const changed = [...wms].some(([p, w]) => this.lastFinalized.get(p) !== w);
      if (!changed) return;
      await this.ports.sink.finalize(this.finalizers(), wms);
      await this.ports.rules.finalize(wms);
      this.lastFinalized = wms;
      this.lastFinalizeMs = this.opts.now();
      this.events.safeEmit('finalized', { watermarks: wms });
    });
  }

  private noteRetained(rows: readonly IngestRow[]): void {
    for (const r of rows) {
      const known = this.retainedFrom.get(r.partition);
      if (known === undefined || r.offset < known) this.retainedFrom.set(r.partition, r.offset);
    }
  }

  private eventWatermarks(): Map<number, number> {
    const out = new Map<number, number>();
    for (const [p, s] of this.partitions) {
      const wm = this.watermarkOf(s);
      if (wm !== null) out.set(p, wm);
    }
    return out;
  }

  /**
   * A partition's event-time watermark: the smallest, over the input partitions
   * feeding it, of their largest event time minus the allowed lateness. Through a
   * hop one input partition may be read far ahead of another (a backlog): the
   * slowest holds the watermark back, as each one alone would. One the hop
   * announced idle (read to its end and quiet) does not hold it back until it
   * sends again; one not heard from yet holds it where it is. Without a hop: the
   * partition's own largest event time minus the lateness.
   */
  private watermarkOf(s: PartitionState): number | null {
    const latenessUs = this.opts.latenessMs * 1000;
    let low = Infinity;
    let high = -Infinity;
    const ids = s.originCount > 0 ? Array.from({ length: s.originCount }, (_, i) => i) : [...s.origins.keys()];
    for (const id of ids) {
      const o = s.origins.get(id);
      // Not heard from, or only by a mark without an order yet: it holds the watermark
      // where it is, unless it was announced idle.
      if (!o || (o.maxEventUs === -Infinity && !o.idle)) return s.watermarkUs;
      high = Math.max(high, o.maxEventUs - latenessUs);
      if (!o.idle) low = Math.min(low, o.maxEventUs - latenessUs);
    }
    const wm = low !== Infinity ? low : Number.isFinite(high) ? high : null;
    if (wm !== null && (s.watermarkUs === null || wm > s.watermarkUs)) s.watermarkUs = wm;
    return s.watermarkUs;
  }

  /**
   * The watermark committed with a partition whose input partitions have not all
   * been heard from yet (through the hop, early in a backlog): the slowest of those
   * heard from. It only tells a restart which committed results to carry (see
   * restoreResults): with none committed, the partition would start over without
   * them, though its results were written. Null before any order.
   */
  private heardSoFar(partition: number): number | null {
    const s = this.partitions.get(partition);
    const heard = [...(s?.origins.values() ?? [])].map((o) => o.maxEventUs).filter((us) => us !== -Infinity);
    if (heard.length === 0) return null;
    return Math.min(...heard) - this.opts.latenessMs * 1000;
  }

  effectiveWatermarks(): Map<number, number> {
    const out = new Map<number, number>();
    const now = this.opts.now();
    for (const [p, s] of this.partitions) {
      const wm = this.watermarkOf(s);
      if (wm === null) continue;
      const idleMs = now - s.lastArrivalMs - this.opts.idleTimeoutMs;
      out.set(p, wm + Math.max(0, idleMs) * 1000);
    }
    return out;
  }

  private horizonUs(): number {
    const rules = this.ports.rules.prepared();
    return Math.max(0, ...rules.map((r) => r.rule.stateMicros)) + this.opts.latenessMs * 1000;
  }

  /**
   * The results rules read (result_<rule>) are state too: for new partitions they
   * are read back from the sink as last committed, so they match the offsets the
   * partition resumes from; for partitions that went they are forgotten.
   */
  private async restoreResults(gone: readonly number[], fresh: readonly number[]): Promise<void> {
    for (const p of this.ports.rules.prepared()) {
      if (!p.mirrored) continue;
      if (gone.length > 0) await this.ports.rules.restoreMirror(p.rule.name, gone, null);
      if (fresh.length === 0) continue;
      const rows = await this.ports.sink.openResults({ target: p.rule.target, columns: p.columns, finalAfter: p.rule.finalAfter }, fresh, this.horizonUs());
      await this.ports.rules.restoreMirror(p.rule.name, fresh, rows);
    }
  }

  private finalizers(): CommitInput['finalizers'] {
    return this.ports.rules
      .prepared()
      .filter((r) => r.rule.finalAfter !== null)
      .map((r) => ({ target: r.rule.target, finalAfter: r.rule.finalAfter! }));
  }
}

/** The sink refused a commit because another process advanced its partitions (see forgetAll). */
function isFenced(err: unknown): boolean {
  return err instanceof FraudSqlError && err.code === 'PG_FENCED';
}

/** A watermark mark is not decoded: it carries no order. */
const MARK: Decoded = { ok: false, reason: 'watermark mark' };

/** An order (or a mark) from an input partition: how far that partition has got in event time. */
function noteOrigin(p: PartitionState, from: SourceMessage['origin'] | null, eventUs: number, idle = false): void {
  const id = from?.partition ?? -1;
  if (from) p.originCount = from.partitions;
  const origin = p.origins.get(id);
  if (!origin) p.origins.set(id, { maxEventUs: eventUs, idle });
  else {
    if (eventUs > origin.maxEventUs) origin.maxEventUs = eventUs;
    origin.idle = idle;
  }
}

function minBig(a: bigint, b: bigint): bigint {
  return a < b ? a : b;
}
