/**
 * `fraud-sql run`: Kafka in, PostgreSQL out, HTTP server on. Builds the adapters,
 * wires them to the engine and owns start/stop; resources are released in
 * reverse order of creation.
 */
import type { FastifyInstance } from 'fastify';
import type { CommandModule } from 'yargs';
import { kafkaSecurity, paramOverrides, redactUrl, type Config } from '../config.js';
import { formatMicros } from '../time.js';
import type { Engine } from '../engine/engine.js';
import type { Diagnostic, SourcePort } from '../engine/ports.js';
import { FraudSqlError } from '../errors.js';
import { Metrics } from '../http/metrics.js';
import { buildServer, listen } from '../http/server.js';
import { mountDashboard, ResultsDashboard } from '../http/dashboard.js';
import { createLogger, type Logger } from '../log.js';
import { retrying } from '../retry.js';
import { RuleSet, type RuleSelection } from '../rules/index.js';
import type { PgSink } from '../sink/postgres.js';
import { KafkaSource, openProducer } from '../source/kafka.js';
import { AlertPublisher } from '../alerts/publisher.js';
import { DecisionServer } from '../http/decisions-server.js';
import { LISTS_CHANNEL, readListEntries } from '../sink/list-entries.js';
import type { RuleResult } from '../types.js';
import { DuckState } from '../state/duckdb.js';
import { Precedence } from '../engine/precedence.js';
import { alongside, Lifecycle } from '../lifecycle.js';
import { failpoint } from '../failpoint.js';
import { formatDiagnostic, loadRules } from '../rules/loader.js';
import { KeyingSample, orderFieldValue, planPipelines, planShape, type Pipeline } from '../plan.js';
import { Repartitioner } from '../source/repartition.js';
import { decodeOrder } from '../source/decode.js';
import { watchDirectory } from '../watch.js';
import { consolePrinter, loopOptions, newEngine, openSink, wireEngine } from '../compose.js';
import { ALL_KEYS, configFrom, untilDone, withSettings } from './common.js';

/**
 * The longest one statement of a window engine waits for the per-order lane's batch
 * (see Precedence). At 1,000 orders/s the high-value p95 was 296 ms with a 20 ms
 * wait and 181 ms with 50 ms; the window engines' batches grow instead.
 */
const LANE_FIRST_MAX_WAIT_MS = 50;

/** One engine of the plan (src/plan.ts), with what it reads and writes. */
export interface RunningPipeline {
  plan: Pipeline;
  engine: Engine;
  source: KafkaSource;
  /** What the engine reads: the source, watched when the input is said to be keyed already. */
  input: SourcePort;
  sink: PgSink;
  rules: RuleSet;
  state: DuckState;
}

export interface RunningApp {
  /** The first pipeline's engine: it records dead letters and runs the rules that need no partitioning. */
  engine: Engine;
  pipelines: RunningPipeline[];
  /** The repartition hop, when a pipeline reads a repartition topic. */
  repartitioner: Repartitioner | null;
  /** Per input partition, the next offset done with here: forwarded by the hop, or committed by the engine reading the input. */
  inputOffsets(): Map<number, bigint>;
  metrics: Metrics;
  sink: PgSink;
  http: FastifyInstance;
  /** The address the HTTP server listens on. */
  url: string;
  /** The address of the decision lookup (GET /v1/decisions), on a thread and port of its own. */
  decisionsUrl: string;
  /** Resolves when the batch loops end (after stop(), or on a fatal error). */
  done: Promise<void>;
  stop(): Promise<void>;
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}

/**
 * The rules of the plan's `index`th pipeline, as long as an edit keeps the plan's
 * shape and every running rule in its pipeline (`running`: rule -> pipeline); else a
 * restart is needed. A rule moved to another engine would skip, or see again, the
 * orders between the two engines' offsets.
 */
function selectionFor(index: number, shape: string, planOpts: Parameters<typeof planPipelines>[1], running: () => Map<string, number>): RuleSelection {
  return (rules) => {
    const { plan, diagnostics } = planPipelines(rules, planOpts);
    if (diagnostics.length > 0) return { rules: [], problems: diagnostics };
    const now = running();
    const moved = rules.filter((r) => {
      const was = now.get(r.name);
      return was !== undefined && !plan.pipelines[was]!.rules.includes(r.name);
    });
    if (moved.length > 0)
      return {
        rules: [],
        problems: moved.map((r) => ({
          file: r.file,
          line: 1,
          column: 1,
          message: `${r.name} would move from the engine of group ${plan.pipelines[now.get(r.name)!]!.group} to that of ${plan.pipelines.find((p) => p.rules.includes(r.name))!.group}: restart fraud-sql to apply`,
        })),
      };
    if (planShape(plan) !== shape) {
      const file = rules[0]?.file ?? '';
      return {
        rules: [],
        problems: [
          {
            file,
            line: 1,
            column: 1,
            message: `the rules now need other repartition topics (${planShape(plan)}, running: ${shape}): restart fraud-sql to apply`,
          },
        ],
      };
    }
    const names = new Set(plan.pipelines[index]!.rules);
    return { rules: rules.filter((r) => names.has(r.name)), problems: [] };
  };
}

/** `fraud-sql run`: Kafka in, PostgreSQL out, HTTP server on. */
export async function startRun(config: Readonly<Config>, logger: Logger): Promise<RunningApp> {
  const life = new Lifecycle(logger);
  const signal = life.signal;
  const fail = failpoint(config.failpoint);
  try {
    const overrides = paramOverrides(config);
    const planOpts = { topic: config.topic, group: config.groupId, inputKeyedBy: config.inputKeyedBy || null };
    const { plan, diagnostics } = planPipelines(loadRules(config.queriesDir, overrides).rules, planOpts);
    if (diagnostics.length > 0)
      throw new FraudSqlError('RULES_INVALID', `invalid rules in ${config.queriesDir}:\n  ${diagnostics.map(formatDiagnostic).join('\n  ')}`);
    const shape = planShape(plan);
    // Edits keep the lane as it is: a removed per-order rule leaves it empty, a new one joins it or the others.
    const reloadOpts = { ...planOpts, lane: plan.pipelines.some((p) => p.perOrder) };
    const decodeOptions = { timeZone: config.timeZone, maxMessageBytes: config.maxMessageBytes };
    const metrics = new Metrics();
    const kafka = {
      brokers: config.brokers,
      sessionTimeoutMs: config.kafkaSessionTimeoutMs,
      security: kafkaSecurity(config),
      clientId: config.clientId,
      logger,
      signal,
      onRetry: () => metrics.retries.inc({ dependency: 'kafka' }),
    };

    // Migrates first; then holds what is not a pipeline's: the run-time list entries
    // and their notifications, and the alert publisher's claims.
    const control = await openSink(config, logger, { signal, onRetry: () => metrics.retries.inc({ dependency: 'postgres' }) });
    life.defer(() => control.close());
    let listEntries = await readListEntries(control);

    const pipelines: RunningPipeline[] = [];
    const print = consolePrinter(config);
    const running = () => new Map(pipelines.flatMap((p, i) => p.rules.prepared().map((r): [string, number] => [r.rule.name, i])));
    // The per-order lane's live batches go first: see Precedence.
    const precedence = plan.pipelines.some((p) => p.perOrder) ? new Precedence(LANE_FIRST_MAX_WAIT_MS) : null;
    for (const [i, p] of plan.pipelines.entries()) {
      // One DuckDB thread per engine: the engines already run side by side, and a
      // second thread each cost more than it gave. Fed 15 orders/s for 30 s, the
      // process used 2,754 CPU ticks (1/100 s) with two, 1,774 with one; a
      // 100,000-order backlog drained about as fast (18.9 s with two, 17.6 s with one).
      const state = await DuckState.open(':memory:', { threads: 1, yieldTo: p.perOrder ? null : precedence });
      life.defer(() => state.close());
      const rules = await RuleSet.load(state, config.queriesDir, overrides, selectionFor(i, shape, reloadOpts, running), () => listEntries);
      logger.info(`loaded ${rules.prepared().length} rules from ${config.queriesDir} for ${p.topic}`, {
        rules: rules
          .prepared()
          .map((r) => r.rule.name)
          .join(','),
      });
      const sink = await openSink(config, logger, {
        signal,
        onRetry: () => metrics.retries.inc({ dependency: 'postgres' }),
        tables: rules.tables(),
        consumerGroup: p.group,
        topic: p.topic,
      });
      life.defer(() => sink.close());
      const source = new KafkaSource({
        ...kafka,
        groupId: p.group,
        topic: p.topic,
        dlqTopic: config.dlqTopic,
        bufferMessages: config.batchMaxSize,
        onCrash: (restart) => metrics.consumerCrashes.inc({ outcome: restart ? 'restarted' : 'stopped' }),
        // A repartition topic is created by the hop, from the input's partition count.
        createTopics:
          config.createTopics && !p.repartitioned ? { partitions: config.topicPartitions, replicationFactor: config.topicReplicationFactor } : undefined,
        readsRepartitioned: p.repartitioned,
        failpoint: fail,
      });
      // The setting is a promise about the producers: checked on the first orders read.
      const sample = p.key !== null && !p.repartitioned ? new KeyingSample(p.key) : null;
      const input: SourcePort = sample
        ? {
            start: (onAssign) => source.start(onAssign),
            committed: (offsets) => source.committed(offsets),
            reassign: () => source.reassign(),
            offsetRange: (partition) => source.offsetRange(partition),
            next: async (max, waitMs, abort, free) => {
              const batch = await source.next(max, waitMs, abort, free);
              if (batch && !sample.done) {
                for (const m of batch) {
                  const d = decodeOrder(m.value, decodeOptions);
                  sample.add(m.key?.toString('utf8') ?? null, m.partition, d.ok ? orderFieldValue(d.order, p.key!) : null);
                }
                const verdict = sample.done ? sample.verdict() : null;
                if (verdict) logger.warn(verdict);
              }
              return batch;
            },
          }
        : source;
      const engine = newEngine(
        config,
        {
          state,
          sink,
          rules,
          deadLetters: {
            send: (dls) =>
              retrying(() => source.sendDeadLetters(dls), {
                shouldRetry: (e) => e instanceof FraudSqlError && e.retriable,
                signal,
                onRetry: (e, _a, wait) => {
                  metrics.retries.inc({ dependency: 'kafka' });
                  logger.warn(`${(e as Error).message}; retrying the dead-letter write in ${(wait / 1000).toFixed(1)} s`);
                },
              }),
          },
        },
        { failpoint: fail, recordsDeadLetters: p.deadLetters, alerts: true, precedence: p.perOrder ? (precedence ?? undefined) : undefined },
      );
      wireEngine(engine, logger, print, p.deadLetters);
      engine.events.on('batch:end', (b) =>
        logger.debug('batch committed', { topic: p.topic, group: p.group, batch: b.batchId, messages: b.messages, orders: b.orders }),
      );
      metrics.attach(engine.events, p.topic, { countsInput: p.deadLetters, alongside: p.perOrder });
      pipelines.push({ plan: p, engine, source, input, sink, rules, state });
    }
    const first = pipelines[0]!;

    const hop = plan.repartition;
    const repartitioner = hop
      ? new Repartitioner({
          ...kafka,
          topic: config.topic,
          groupId: hop.group,
          targets: hop.targets,
          deadLetterTopic: hop.deadLetterTopic,
          replicationFactor: config.topicReplicationFactor,
          createInput: config.createTopics ? { partitions: config.topicPartitions } : undefined,
          onOffsetGap: config.onOffsetGap,
          // Half the idle timeout: the engines' own idle timeout runs after the announcement.
          idleMs: config.idleTimeoutMs / 2,
          onGap: (g) => metrics.offsetGaps.inc({ kind: g.kind, policy: g.policy }),
          route: (value) => {
            const d = decodeOrder(value, decodeOptions);
            return d.ok ? { eventUs: d.order.eventUs, keys: new Map(hop.targets.map((t) => [t.key, orderFieldValue(d.order, t.key)])) } : { reason: d.reason };
          },
          failpoint: fail,
        })
      : null;

    // Hot reload: an edit under queries/ takes effect at the next batch; a broken
    // one leaves the running rules alone and is reported with file:line:column.
    let ruleProblems: Diagnostic[] = [];
    const reload = async () => {
      const results: Awaited<ReturnType<RuleSet['reload']>>[] = [];
      for (const p of pipelines)
        results.push(await p.engine.exclusive(() => p.rules.reload(config.queriesDir, overrides, (tables) => p.sink.ensureTables(tables))));
      const ok = results.every((r) => r.ok);
      const problems = results.find((r) => !r.ok)?.problems ?? [];
      metrics.ruleReloads.inc({ result: ok ? 'applied' : 'rejected' });
      metrics.rulesInvalid.set(problems.length);
      ruleProblems = problems;
      if (ok) {
        const list = (k: 'changed' | 'added' | 'removed') => results.flatMap((r) => r[k]).join(',') || undefined;
        logger.info('rules reloaded', { changed: list('changed'), added: list('added'), removed: list('removed') });
      } else {
        for (const d of problems) logger.error(`rule edit rejected, the previous rules keep running: ${formatDiagnostic(d)}`);
      }
      for (const p of pipelines) p.engine.events.safeEmit('rules:reloaded', { ok, problems });
    };
    // One reload at a time, in the order asked: a file edit and list changes in quick
    // succession apply in turn, the last read winning.
    let reloads = Promise.resolve();
    const inTurn = (what: string, fn: () => Promise<void>) => {
      reloads = reloads.then(fn).catch((err) => logger.error(`${what} failed: ${(err as Error).message}`));
    };
    life.defer(watchDirectory(config.queriesDir, () => inTurn('rule reload', reload)));
    // `fraud-sql lists add|remove`: applied as a list file edit is. Entries read while
    // a rule edit is broken apply with the next reload that succeeds.
    life.defer(
      control.listen(LISTS_CHANNEL, () =>
        inTurn('list entries reload', async () => {
          const entries = await readListEntries(control);
          if (JSON.stringify(entries) === JSON.stringify(listEntries)) return;
          listEntries = entries;
          await reload();
        }),
      ),
    );
    let lastBatch: { size: number; latencyMs: number; at: string } | null = null;
    for (const p of pipelines) {
      p.engine.events.on('batch:end', (b) => {
        const total = Object.values(b.stages).reduce((a, s) => a + s, 0);
        lastBatch = { size: b.messages, latencyMs: Math.round(total * 1000), at: new Date().toISOString() };
      });
    }
    let stopped: string | null = null;
    const consumerState = () => {
      if (stopped !== null) return { consuming: false, state: `stopped: ${stopped}` };
      const sources = [...(repartitioner ? [repartitioner] : []), ...pipelines.map((p) => p.source)];
      const waiting = sources.map((s) => s.healthState()).find((h) => !h.consuming);
      return waiting ?? { consuming: true, state: 'consuming' };
    };
    const lagByPartition = async () => {
      const lags = [];
      if (repartitioner) {
        for (const l of await withTimeout(repartitioner.lag(), 2_000)) {
          lags.push({
            topic: config.topic,
            partition: l.partition,
            committedOffset: l.committed.toString(),
            endOffset: l.end.toString(),
            lag: Number(l.end - l.committed),
            watermark: null as string | null,
          });
        }
      }
      for (const p of pipelines) {
        const ends = await withTimeout(p.source.endOffsets(), 2_000);
        const watermarks = p.engine.effectiveWatermarks();
        for (const [partition, next] of p.engine.committedOffsets()) {
          const end = ends.get(partition) ?? next;
          const wm = watermarks.get(partition);
          lags.push({
            topic: p.plan.topic,
            partition,
            committedOffset: next.toString(),
            endOffset: end.toString(),
            lag: Number(end - next),
            // The per-order lane's watermark is not the input's: its rules have no windows.
            watermark: wm === undefined || p.plan.perOrder ? null : formatMicros(wm),
          });
        }
      }
      // The input has more than one reader (the hop or the engine reading it directly,
      // and the per-order lane): its lag is the slowest one's.
      const merged = new Map<string, (typeof lags)[number]>();
      for (const l of lags) {
        const key = `${l.topic}\u0000${l.partition}`;
        const seen = merged.get(key);
        if (!seen || l.lag > seen.lag) merged.set(key, { ...l, watermark: l.watermark ?? seen?.watermark ?? null });
        else seen.watermark ??= l.watermark;
      }
      return [...merged.values()];
    };
    let decisions: DecisionServer | null = null;
    const http = buildServer(metrics, {
      ready: async () => {
        const [postgres, kafkaUp] = await Promise.all([
          withTimeout(first.sink.ping(), 2_000).catch(() => false),
          withTimeout(first.source.endOffsets(), 2_000).then(
            () => true,
            () => false,
          ),
        ]);
        const consumer = consumerState();
        const checks = {
          postgres,
          kafka: kafkaUp,
          consuming: consumer.consuming,
          partitionsAssigned: pipelines.some((p) => p.source.assigned().length > 0),
          decisionLookup: decisions?.alive ?? false,
        };
        return { ready: Object.values(checks).every(Boolean), checks, consumer: consumer.state };
      },
      status: async () => ({
        topic: config.topic,
        group: config.groupId,
        consumer: consumerState().state,
        pipelines: pipelines.map((p) => ({ key: p.plan.key, topic: p.plan.topic, group: p.plan.group, repartitioned: p.plan.repartitioned })),
        partitions: await lagByPartition().catch(() => []),
        lastBatch,
        rules: pipelines.flatMap((p) =>
          p.rules.prepared().map((r) => ({
            name: r.rule.name,
            file: r.rule.file,
            version: r.rule.version,
            target: r.rule.target,
            topic: p.plan.topic,
            state: 'active',
            ...metrics.ruleStatus(r.rule.name),
          })),
        ),
        ruleProblems: ruleProblems.map(formatDiagnostic),
      }),
      beforeScrape: async () => {
        metrics.consuming.set(consumerState().consuming ? 1 : 0);
        for (const l of await lagByPartition()) metrics.lag.set({ topic: l.topic, partition: String(l.partition) }, l.lag);
        let memory = 0;
        // An engine closing (shutdown) reports nothing rather than failing the scrape.
        for (const p of pipelines) memory += await p.state.memoryBytes().catch(() => 0);
        metrics.stateMemory.set(memory);
      },
    });
    mountDashboard(http, new ResultsDashboard(first.sink, { prepared: () => pipelines.flatMap((p) => p.rules.prepared()) }));
    const url = await listen(http, config.httpHost, config.httpPort);
    life.defer(() => http.close());
    logger.info(`metrics and health on ${url}`);

    decisions = await DecisionServer.start({
      host: config.httpHost,
      port: config.decisionsPort,
      onError: (err) => logger.error(`the decision lookup stopped: ${err.message}`),
    });
    life.defer(() => decisions.close());
    // The event-time clock: the slowest watermark of the engines, idle ones moving on the wall clock.
    const tellDecisions = () => decisions.update(first.rules.lists(), Math.min(...pipelines.flatMap((p) => [...p.engine.effectiveWatermarks().values()])));
    for (const p of pipelines) {
      p.engine.events.on('batch:end', (b) => {
        feedDecisions(decisions, p.rules, b.results);
        tellDecisions();
      });
      // Detections still open when the process stopped are read back with the rules'
      // results: a restart must not clear a bot that is still buying. Read on the
      // engine's turn, right after the assignment restored them: a statement beside a
      // batch's on the same DuckDB connection closes the batch's pending result, and
      // the batch fails ("Attempting to execute an unsuccessful or closed pending
      // query result").
      p.engine.events.on('assigned', () => {
        p.engine
          .exclusive(() => readOpenDetections(p.state, p.rules))
          .then(
            (results) => feedDecisions(decisions!, p.rules, results),
            (err: Error) => logger.warn(`the decision lookup could not read back open detections: ${err.message}`),
          );
      });
    }
    const clockTimer = setInterval(tellDecisions, 1_000);
    life.defer(() => clearInterval(clockTimer));
    tellDecisions();
    logger.info(`decision lookup on ${decisions.url}/v1/decisions`);

    const publisher = await startPublisher(config, logger, kafka, control, metrics);
    life.defer(() => publisher.stop());
    for (const p of pipelines) p.engine.events.on('batch:end', (b) => b.alerts > 0 && publisher.nudge());

    // All at once: each consumer's leaving waits for its fetch in flight (up to its
    // 2 s wait), so one after the other the waits added up.
    life.defer(async () => {
      await Promise.allSettled([...pipelines.map((p) => p.source.stop()), repartitioner?.stop()]);
    });
    // The hop creates the repartition topics the engines read: it starts first.
    const hopStarted = repartitioner ? repartitioner.start() : Promise.resolve();
    const done = alongside(
      (loopSignal) =>
        hopStarted.then(() =>
          // A hop that failed while starting: the engines do not start (their consumers
          // would join, or wait for a broker, under a process that is stopping).
          loopSignal.aborted
            ? undefined
            : Promise.all(pipelines.map((p) => p.engine.run(p.input, loopOptions(config, loopSignal, precedence !== null && !p.plan.perOrder)))),
        ),
      signal,
      repartitioner?.failed,
    );
    logger.info(
      `consuming ${config.topic} from ${config.brokers.join(',')} as group ${config.groupId}` +
        (hop ? `, repartitioned by ${hop.targets.map((t) => t.key).join(', ')} (${hop.targets.map((t) => t.topic).join(', ')})` : ''),
    );

    // Until the process exits, the probes say why consumption ended.
    done.catch((err: Error) => (stopped = err.message));
    const inputOffsets = () => (repartitioner ? repartitioner.forwardedOffsets() : first.engine.committedOffsets());
    return {
      engine: first.engine,
      pipelines,
      repartitioner,
      inputOffsets,
      metrics,
      sink: first.sink,
      http,
      url,
      decisionsUrl: decisions.url,
      done,
      stop: life.stopper(done),
    };
  } catch (err) {
    await life.release();
    throw err;
  }
}

/** The open rows of the detecting rules that last (burst rules), as restored into the engine's state. */
async function readOpenDetections(state: DuckState, rules: RuleSet): Promise<RuleResult[]> {
  const out: RuleResult[] = [];
  for (const p of rules.prepared()) {
    if (!p.rule.alert || p.rule.stateMicros === 0 || !p.mirrored) continue;
    const rows = await state.query(`SELECT * FROM "result_${p.rule.name}"`);
    out.push({ rule: p.rule.name, target: p.rule.target, names: rows.names, columns: rows.columns, rowCount: rows.rowCount });
  }
  return out;
}

/** The detecting rules' (those that alert) rows of a committed batch, to the decision lookup. */
function feedDecisions(index: DecisionServer, rules: RuleSet, results: readonly RuleResult[]): void {
  for (const r of results) {
    if (r.rowCount === 0) continue;
    const rule = rules.prepared().find((p) => p.rule.name === r.rule)?.rule;
    // Only detections that last (a window): a per-order rule's rows are not sent at all.
    if (!rule?.alert || rule.stateMicros === 0) continue;
    index.feed({
      rule: r.rule,
      severity: rule.alert.severity,
      activeMicros: rule.stateMicros,
      replace: rule.replace,
      names: r.names,
      columns: r.columns,
      rowCount: r.rowCount,
    });
  }
}

/**
 * Publishes what the batches write to the alert outbox: to the alerts topic (unless
 * none is set) and to the webhooks. Alerts wait in PostgreSQL while Kafka or a
 * receiver is down.
 */
async function startPublisher(
  config: Readonly<Config>,
  logger: Logger,
  kafka: Parameters<typeof openProducer>[0],
  sink: PgSink,
  metrics: Metrics,
): Promise<Pick<AlertPublisher, 'nudge' | 'stop'>> {
  const producer = config.alertsTopic
    ? await openProducer({ ...kafka, clientId: `${config.clientId}-alerts` }, config.alertsTopic, {
        partitions: config.topicPartitions,
        replicationFactor: config.topicReplicationFactor,
      })
    : null;
  const publisher = new AlertPublisher({
    transaction: (fn) => sink.transaction(fn),
    read: (sql) => sink.read(sql),
    producer,
    topic: config.alertsTopic,
    webhooks: config.alertWebhook.length > 0,
    webhookSecret: config.alertWebhookSecret,
    webhookTimeoutMs: config.alertWebhookTimeoutMs,
    webhookMaxAttempts: config.alertWebhookMaxAttempts,
    webhookRetryMs: config.alertWebhookRetryMs,
    pollMs: 1_000,
    logger,
    onEvent: (what) => metrics.alerts.inc({ outcome: what }),
  });
  publisher.start();
  return {
    nudge: () => publisher.nudge(),
    stop: async () => {
      await publisher.stop();
      await producer?.disconnect().catch(() => {});
    },
  };
}

export const runCommand: CommandModule<object, Record<string, unknown>> = {
  command: 'run',
  describe: 'consume orders from Kafka, run the rules in queries/, write results to PostgreSQL',
  builder: (y) => withSettings(y, ALL_KEYS),
  handler: async (argv) => {
    const config = configFrom(argv);
    const logger = createLogger(config.logLevel);
    logger.info('starting fraud-sql run', {
      brokers: config.brokers.join(','),
      database: redactUrl(config.databaseUrl),
      schema: config.pgSchema,
      topic: config.topic,
    });
    const app = await startRun(config, logger);
    await untilDone(app, logger);
  },
};
