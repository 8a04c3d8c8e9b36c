/**
 * Composition root: builds the adapters, wires them to the engine and owns
 * start/stop. Resources are released in reverse order of creation.
 */
import type { FastifyInstance } from 'fastify';
import type { Config } from './config.js';
import { Engine } from './engine/engine.js';
import { FraudSqlError } from './errors.js';
import { Metrics } from './http/metrics.js';
import { buildServer } from './http/server.js';
import type { Logger } from './log.js';
import { retrying } from './retry.js';
import { RuleSet } from './rules/index.js';
import { PgSink } from './sink/postgres.js';
import { KafkaSource } from './source/kafka.js';
import { DuckState } from './state/duckdb.js';
import { Lifecycle, engineOptions, wireEngine } from './lifecycle.js';

export interface RunningApp {
  engine: Engine;
  sink: PgSink;
  http: FastifyInstance;
  /** The address the HTTP server listens on. */
  url: string;
  /** Resolves when the batch loop ends (after stop(), or on a fatal error). */
  done: Promise<void>;
  stop(): Promise<void>;
}

export async function listen(http: FastifyInstance, host: string, port: number): Promise<string> {
  try {
    return await http.listen({ host, port });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      throw new FraudSqlError('PORT_IN_USE', `port ${port} on ${host} is already in use; choose another with --http-port`, { cause: err });
    }
    throw err;
  }
}

/** `fraud-sql run`: Kafka in, PostgreSQL out, HTTP server on. */
export async function startRun(config: Readonly<Config>, logger: Logger, opts: { paramOverrides?: ReadonlyMap<string, string> } = {}): Promise<RunningApp> {
  const life = new Lifecycle(logger);
  const signal = life.signal;
  try {
    const state = await DuckState.open(':memory:');
    life.defer(() => state.close());
    const rules = await RuleSet.load(state, config.queriesDir, opts.paramOverrides);
    logger.info(`loaded ${rules.prepared().length} rules from ${config.queriesDir}`, { rules: rules.prepared().map((p) => p.rule.name).join(',') });

    const sink = await PgSink.open({ databaseUrl: config.databaseUrl, schema: config.pgSchema, consumerGroup: config.groupId, topic: config.topic, logger, signal });
    life.defer(() => sink.close());

    const source = new KafkaSource({
      brokers: config.brokers, clientId: config.clientId, groupId: config.groupId, topic: config.topic, dlqTopic: config.dlqTopic,
      logger, bufferMessages: config.batchMaxSize * 4, signal,
    });

    const engine = new Engine(
      {
        state,
        sink,
        rules,
        deadLetters: {
          send: (dls) => retrying(() => source.sendDeadLetters(dls), {
            shouldRetry: (e) => e instanceof FraudSqlError && e.retriable,
            signal,
            onRetry: (e, _a, wait) => logger.warn(`${(e as Error).message}; retrying the dead-letter write in ${(wait / 1000).toFixed(1)} s`),
          }),
        },
      },
      engineOptions(config, config.topic),
    );
    engine.events.on('batch:end', (b) => {
      void source.commit(new Map(b.partitions.map((p) => [p.partition, p.nextOffset])));
      logger.debug('batch committed', { batch: b.batchId, messages: b.messages, orders: b.orders });
    });

    const metrics = new Metrics();
    metrics.attach(engine.events);
    let lastBatch: { size: number; latencyMs: number; at: string } | null = null;
    engine.events.on('batch:end', (b) => {
      const total = Object.values(b.stages).reduce((a, s) => a + s, 0);
      lastBatch = { size: b.messages, latencyMs: Math.round(total * 1000), at: new Date().toISOString() };
    });
    const lagByPartition = async () => {
      const ends = await source.endOffsets();
      const committed = engine.committedOffsets();
      return [...committed].map(([partition, next]) => {
        const end = ends.get(partition) ?? next;
        return { partition, committedOffset: next.toString(), endOffset: end.toString(), lag: Number(end - next) };
      });
    };
    const http = buildServer(metrics, {
      ready: async () => {
        const checks = { postgres: await sink.ping(), kafka: source.assigned().length > 0 };
        return { ready: checks.postgres && checks.kafka, checks };
      },
      status: async () => ({
        partitions: await lagByPartition().catch(() => []),
        lastBatch,
        rules: rules.prepared().map((p) => ({ name: p.rule.name, file: p.rule.file, version: p.rule.version, target: p.rule.target, state: 'active' })),
      }),
      beforeScrape: async () => {
        for (const l of await lagByPartition()) metrics.lag.set({ partition: String(l.partition) }, l.lag);
      },
    });
    const url = await listen(http, config.httpHost, config.httpPort);
    life.defer(() => http.close());
    logger.info(`metrics and health on ${url}`);

    // kafkajs' run() returns once fetching has started; the loop below pulls batches.
    await source.start((parts, low) => engine.assign(parts, low));
    life.defer(() => source.stop());

    wireEngine(engine, config, logger, life);

    const done = (async () => {
      while (!signal.aborted) {
        const batch = await source.next(config.batchMaxSize, config.batchMaxWaitMs, signal);
        if (batch.length > 0) await engine.handle(batch);
      }
    })();
    logger.info(`consuming ${config.topic} from ${config.brokers.join(',')} as group ${config.groupId}`);

    return { engine, sink, http, url, done, stop: life.stopper(done) };
  } catch (err) {
    await life.release();
    throw err;
  }
}
