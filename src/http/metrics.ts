/** Prometheus metrics, fed by engine events. */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { EngineEmitter } from '../engine/events.js';

export class Metrics {
  readonly registry = new Registry();
  readonly messages = new Counter({ name: 'fraud_sql_messages_total', help: 'Kafka messages handled (new, not replayed)', registers: [this.registry] });
  readonly orders = new Counter({ name: 'fraud_sql_records_consumed_total', help: 'Valid orders ingested', registers: [this.registry] });
  readonly replayed = new Counter({
    name: 'fraud_sql_replayed_total',
    help: 'Messages re-read after a restart to rebuild window state',
    registers: [this.registry],
  });
  readonly duplicates = new Counter({
    name: 'fraud_sql_duplicate_orders_total',
    help: 'Orders whose order_id was already counted',
    registers: [this.registry],
  });
  readonly deadLetters = new Counter({
    name: 'fraud_sql_dead_letters_total',
    help: 'Malformed messages sent to the dead-letter topic and table',
    registers: [this.registry],
  });
  readonly late = new Counter({
    name: 'fraud_sql_late_events_total',
    help: 'Orders later than the allowed lateness (recorded, not applied)',
    registers: [this.registry],
  });
  readonly batches = new Counter({ name: 'fraud_sql_batches_total', help: 'Micro-batches committed', registers: [this.registry] });
  readonly ruleErrors = new Counter({ name: 'fraud_sql_rule_errors_total', help: 'Rule runs that failed', labelNames: ['rule'], registers: [this.registry] });
  readonly stage = new Histogram({
    name: 'fraud_sql_batch_stage_seconds',
    help: 'Time per micro-batch stage',
    labelNames: ['stage'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });
  readonly batchDuration = new Histogram({
    name: 'fraud_sql_batch_duration_seconds',
    help: 'Time to process one micro-batch, decode to commit',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly latency = new Histogram({
    name: 'fraud_sql_end_to_end_latency_seconds',
    help: "From an order's Kafka timestamp to its results committed in PostgreSQL",
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly ruleDuration = new Histogram({
    name: 'fraud_sql_rule_duration_seconds',
    help: 'Time one rule took on one micro-batch',
    labelNames: ['rule'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    registers: [this.registry],
  });
  readonly retries = new Counter({
    name: 'fraud_sql_retries_total',
    help: 'Retried operations against an unreachable dependency',
    labelNames: ['dependency'],
    registers: [this.registry],
  });
  readonly alerts = new Counter({
    name: 'fraud_sql_alerts_total',
    help: 'Alerts by outcome: published (to the alerts topic), delivered (to a webhook), retried (a failed webhook attempt), dead_lettered (a webhook gave up)',
    labelNames: ['outcome'],
    registers: [this.registry],
  });
  readonly fenced = new Counter({
    name: 'fraud_sql_fenced_commits_total',
    help: 'Commits refused because another process had committed their partitions first (a rebalance): the batches in flight were dropped and the partitions rebuilt from PostgreSQL',
    labelNames: ['topic'],
    registers: [this.registry],
  });
  readonly ruleReloads = new Counter({
    name: 'fraud_sql_rule_reloads_total',
    help: 'Reloads of queries/ after an edit',
    labelNames: ['result'],
    registers: [this.registry],
  });
  readonly rulesInvalid = new Gauge({
    name: 'fraud_sql_rules_invalid',
    help: 'Problems in the rule files on disk (the last valid rules keep running)',
    registers: [this.registry],
  });
  readonly lag = new Gauge({
    name: 'fraud_sql_consumer_lag',
    help: 'Messages in Kafka not yet committed, per topic (the input, and the repartition topics) and partition',
    labelNames: ['topic', 'partition'],
    registers: [this.registry],
  });
  readonly watermark = new Gauge({
    name: 'fraud_sql_watermark_seconds',
    help: 'Event-time watermark per topic and partition (Unix seconds)',
    labelNames: ['topic', 'partition'],
    registers: [this.registry],
  });
  readonly lastBatchSize = new Gauge({ name: 'fraud_sql_last_batch_messages', help: 'Messages in the last micro-batch', registers: [this.registry] });
  readonly consumerCrashes = new Counter({
    name: 'fraud_sql_consumer_crashes_total',
    help: 'Crashes of the Kafka consumer; restarted: kafkajs restarts it, stopped: consumption ended and the process exits',
    labelNames: ['outcome'],
    registers: [this.registry],
  });
  readonly consuming = new Gauge({
    name: 'fraud_sql_consuming',
    help: '1 while the Kafka consumer is consuming, 0 while it waits, restarts or has stopped',
    registers: [this.registry],
  });
  readonly offsetGaps = new Counter({
    name: 'fraud_sql_offset_gaps_total',
    help: 'Partitions whose committed offset was outside the topic (past-end: recreated or truncated; before-start: deleted by retention)',
    labelNames: ['kind', 'policy'],
    registers: [this.registry],
  });
  readonly ruleRows = new Counter({
    name: 'fraud_sql_rule_rows_written_total',
    help: 'Result rows a rule handed to the sink in committed batches (an identical row leaves its table as it was)',
    labelNames: ['rule'],
    registers: [this.registry],
  });
  readonly ruleLastWrite = new Gauge({
    name: 'fraud_sql_rule_last_write_seconds',
    help: 'When a rule last had result rows committed (Unix seconds)',
    labelNames: ['rule'],
    registers: [this.registry],
  });
  /** Per rule, for /status: rows written and when last (ISO time), since the process started. */
  private readonly ruleWrites = new Map<string, { rowsWritten: number; lastWriteAt: string | null }>();
  readonly stateMemory = new Gauge({
    name: 'fraud_sql_state_memory_bytes',
    help: "Memory DuckDB holds for the window state and the rules' work, all engines together",
    registers: [this.registry],
  });
  readonly stateOrders = new Gauge({
    name: 'fraud_sql_state_orders',
    help: 'Orders retained in the window state, per topic the rules read',
    labelNames: ['topic'],
    registers: [this.registry],
  });

  // prom-client's default process metrics include gauges named *_total, which
  // Prometheus' linter rejects: these few are what an operator needs.
  readonly rss = new Gauge({
    name: 'fraud_sql_process_resident_memory_bytes',
    help: 'Resident memory of the process (DuckDB included)',
    registers: [this.registry],
    collect() {
      this.set(process.memoryUsage.rss());
    },
  });
  readonly heap = new Gauge({
    name: 'fraud_sql_process_heap_used_bytes',
    help: 'V8 heap in use',
    registers: [this.registry],
    collect() {
      this.set(process.memoryUsage().heapUsed);
    },
  });
  readonly cpu = new Gauge({
    name: 'fraud_sql_process_cpu_seconds',
    help: 'CPU time used by the process since it started (user + system)',
    registers: [this.registry],
    collect() {
      const u = process.cpuUsage();
      this.set((u.user + u.system) / 1e6);
    },
  });

  /** A rule's figures for /status. */
  ruleStatus(rule: string): { rowsWritten: number; lastWriteAt: string | null } {
    return { ...(this.ruleWrites.get(rule) ?? { rowsWritten: 0, lastWriteAt: null }) };
  }

  /**
   * Counts an engine's batches; `topic`: the topic it consumes. Every order reaches
   * more than one engine (one per repartition field, and the per-order lane): only
   * the engine that records dead letters (`countsInput`) counts messages, orders and
   * the end-to-end latency, so each input message is counted once. An engine that
   * reads the input alongside another one (the per-order lane) does not count its
   * offset gaps again, and its watermarks and state (a few seconds of orders) are
   * not reported under the input's name.
   */
  attach(events: EngineEmitter, topic: string, { countsInput = true, alongside = false } = {}): void {
    events.on('fenced', () => this.fenced.inc({ topic }));
    events.on('batch:end', (b) => {
      this.batches.inc();
      if (countsInput) {
        this.messages.inc(b.messages - b.replayed);
        this.orders.inc(b.orders);
        this.replayed.inc(b.replayed);
        this.duplicates.inc(b.duplicates);
        this.deadLetters.inc(b.deadLetters);
        this.late.inc(b.late);
        for (const ms of b.latenciesMs) this.latency.observe(ms / 1000);
      }
      this.lastBatchSize.set(b.messages);
      if (!alongside) this.stateOrders.set({ topic }, b.stateOrders);
      let total = 0;
      for (const [stage, s] of Object.entries(b.stages)) {
        this.stage.observe({ stage }, s);
        total += s;
      }
      this.batchDuration.observe(total);
      for (const r of b.ruleSeconds) this.ruleDuration.observe({ rule: r.rule }, r.seconds);
      if (!alongside)
        for (const p of b.partitions) if (p.watermarkUs !== null) this.watermark.set({ topic, partition: String(p.partition) }, p.watermarkUs / 1e6);
      const now = Date.now();
      for (const r of b.results) {
        const w = this.ruleWrites.get(r.rule) ?? { rowsWritten: 0, lastWriteAt: null };
        this.ruleWrites.set(r.rule, w);
        if (r.rowCount === 0) continue;
        w.rowsWritten += r.rowCount;
        w.lastWriteAt = new Date(now).toISOString();
        this.ruleRows.inc({ rule: r.rule }, r.rowCount);
        this.ruleLastWrite.set({ rule: r.rule }, now / 1000);
      }
    });
    events.on('rule:error', (e) => this.ruleErrors.inc({ rule: e.rule }));
    if (!alongside) events.on('offset:gap', (g) => this.offsetGaps.inc({ kind: g.kind, policy: g.policy }));
  }
}
