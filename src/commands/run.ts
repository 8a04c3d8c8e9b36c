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
import type { Diagnostic } from '../engine/ports.js';
import { FraudSqlError } from '../errors.js';
import { Metrics } from '../http/metrics.js';
import { buildServer, listen } from '../http/server.js';
import { mountDashboard, ResultsDashboard } from '../http/dashboard.js';
import { createLogger, type Logger } from '../log.js';
import { retrying } from '../retry.js';
import { RuleSet } from '../rules/index.js';
import type { PgSink } from '../sink/postgres.js';
import { KafkaSource } from '../source/kafka.js';
import { DuckState } from '../state/duckdb.js';
import { Lifecycle } from '../lifecycle.js';
import { failpoint } from '../failpoint.js';
import { formatDiagnostic } from '../rules/loader.js';
import { watchDirectory } from '../watch.js';
import { loopOptions, newEngine, openSink, wireEngine } from '../compose.js';
import { ALL_KEYS, configFrom, untilDone, withSettings } from './common.js';

export interface RunningApp {
  engine: Engine;
  metrics: Metrics;
  sink: PgSink;
  http: FastifyInstance;
  /** The address the HTTP server listens on. */
  url: string;
  /** Resolves when the batch loop ends (after stop(), or on a fatal error). */
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

/** `fraud-sql run`: Kafka in, PostgreSQL out, HTTP server on. */
export async function startRun(config: Readonly<Config>, logger: Logger): Promise<RunningApp> {
  const life = new Lifecycle(logger);
  const signal = life.signal;
  const fail = failpoint(config.failpoint);
  try {
    const state = await DuckState.open(':memory:');
    life.defer(() => state.close());
    const rules = await RuleSet.load(state, config.queriesDir, paramOverrides(config));
    logger.info(`loaded ${rules.prepared().length} rules from ${config.queriesDir}`, {
      rules: rules
        .prepared()
        .map((p) => p.rule.name)
        .join(','),
    });

    const metrics = new Metrics();
    const sink = await openSink(config, logger, { signal, onRetry: () => metrics.retries.inc({ dependency: 'postgres' }), tables: rules.tables() });
    life.defer(() => sink.close());

    const source = new KafkaSource({
      brokers: config.brokers,
      sessionTimeoutMs: config.kafkaSessionTimeoutMs,
      security: kafkaSecurity(config),
      clientId: config.clientId,
      groupId: config.groupId,
      topic: config.topic,
      dlqTopic: config.dlqTopic,
      logger,
      bufferMessages: config.batchMaxSize * 2,
      signal,
      onRetry: () => metrics.retries.inc({ dependency: 'kafka' }),
      onCrash: (restart) => metrics.consumerCrashes.inc({ outcome: restart ? 'restarted' : 'stopped' }),
      createTopics: config.createTopics ? { partitions: config.topicPartitions, replicationFactor: config.topicReplicationFactor } : undefined,
      failpoint: fail,
    });

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
      { failpoint: fail },
    );
    wireEngine(engine, config, logger);
    engine.events.on('batch:end', (b) => logger.debug('batch committed', { batch: b.batchId, messages: b.messages, orders: b.orders }));

    metrics.attach(engine.events);
    // Hot reload: an edit under queries/ takes effect at the next batch; a broken
    // one leaves the running rules alone and is reported with file:line:column.
    let ruleProblems: Diagnostic[] = [];
    const reload = async () => {
      const r = await engine.exclusive(() => rules.reload(config.queriesDir, paramOverrides(config), (tables) => sink.ensureTables(tables)));
      metrics.ruleReloads.inc({ result: r.ok ? 'applied' : 'rejected' });
      metrics.rulesInvalid.set(r.problems.length);
      ruleProblems = r.problems;
      if (r.ok) {
        logger.info('rules reloaded', {
          changed: r.changed.join(',') || undefined,
          added: r.added.join(',') || undefined,
          removed: r.removed.join(',') || undefined,
        });
      } else {
        for (const d of r.problems) logger.error(`rule edit rejected, the previous rules keep running: ${formatDiagnostic(d)}`);
      }
      engine.events.safeEmit('rules:reloaded', { ok: r.ok, problems: r.problems });
    };
    life.defer(watchDirectory(config.queriesDir, () => void reload().catch((err) => logger.error(`rule reload failed: ${(err as Error).message}`))));
    let lastBatch: { size: number; latencyMs: number; at: string } | null = null;
    engine.events.on('batch:end', (b) => {
      const total = Object.values(b.stages).reduce((a, s) => a + s, 0);
      lastBatch = { size: b.messages, latencyMs: Math.round(total * 1000), at: new Date().toISOString() };
    });
    let stopped: string | null = null;
    const consumerState = () => (stopped === null ? source.healthState() : { consuming: false, state: `stopped: ${stopped}` });
    const lagByPartition = async () => {
      const ends = await withTimeout(source.endOffsets(), 2_000);
      const committed = engine.committedOffsets();
      const watermarks = engine.effectiveWatermarks();
      return [...committed].map(([partition, next]) => {
        const end = ends.get(partition) ?? next;
        const wm = watermarks.get(partition);
        return {
          partition,
          committedOffset: next.toString(),
          endOffset: end.toString(),
          lag: Number(end - next),
          watermark: wm === undefined ? null : formatMicros(wm),
        };
      });
    };
    const http = buildServer(metrics, {
      ready: async () => {
        const [postgres, kafka] = await Promise.all([
          withTimeout(sink.ping(), 2_000).catch(() => false),
          withTimeout(source.endOffsets(), 2_000).then(
            () => true,
            () => false,
          ),
        ]);
        const consumer = consumerState();
        const checks = { postgres, kafka, consuming: consumer.consuming, partitionsAssigned: source.assigned().length > 0 };
        return { ready: checks.postgres && checks.kafka && checks.consuming && checks.partitionsAssigned, checks, consumer: consumer.state };
      },
      status: async () => ({
        topic: config.topic,
        group: config.groupId,
        consumer: consumerState().state,
        partitions: await lagByPartition().catch(() => []),
        lastBatch,
        rules: rules.prepared().map((p) => ({
          name: p.rule.name,
          file: p.rule.file,
          version: p.rule.version,
          target: p.rule.target,
          state: 'active',
          ...metrics.ruleStatus(p.rule.name),
        })),
        ruleProblems: ruleProblems.map(formatDiagnostic),
      }),
      beforeScrape: async () => {
        metrics.consuming.set(consumerState().consuming ? 1 : 0);
        for (const l of await lagByPartition()) metrics.lag.set({ partition: String(l.partition) }, l.lag);
      },
    });
    mountDashboard(http, new ResultsDashboard(sink, rules));
    const url = await listen(http, config.httpHost, config.httpPort);
    life.defer(() => http.close());
    logger.info(`metrics and health on ${url}`);

    life.defer(() => source.stop());
    const done = engine.run(source, loopOptions(config, signal));
    logger.info(`consuming ${config.topic} from ${config.brokers.join(',')} as group ${config.groupId}`);

    // Until the process exits, the probes say why consumption ended.
    done.catch((err: Error) => (stopped = err.message));
    return { engine, metrics, sink, http, url, done, stop: life.stopper(done) };
  } catch (err) {
    await life.release();
    throw err;
  }
}

export const runCommand: CommandModule<object, Record<string, unknown>> = {
  command: 'run',
  describe: 'consume orders from Kafka, run the rules in queries/, write results to PostgreSQL',
  builder: (y) => withSettings(y, ALL_KEYS),
  handler: async (argv) => {
    const config = configFrom(argv);
    const logger = createLogger(config.logLevel);
    logger.info('starting fraud-sql run', { brokers: config.brokers.join(','), database: redactUrl(config.databaseUrl), topic: config.topic });
    const app = await startRun(config, logger);
    await untilDone(app, logger);
  },
};
