/**
 * What every command composes the same way: the engine from the configuration,
 * the PostgreSQL sink, and the in-memory run of recorded orders (`rules test`,
 * `backtest`). Commands differ only in their source and sink.
 */
import { readFileSync } from 'node:fs';
import { paramOverrides, pgSsl, type Config } from './config.js';
import { detectionPrinter } from './console.js';
import { Engine } from './engine/engine.js';
import type { Precedence } from './engine/precedence.js';
import type { EngineEmitter } from './engine/events.js';
import type { EnginePorts, FailpointName, LoopOptions, SinkPort } from './engine/ports.js';
import type { Logger } from './log.js';
import { replaceList } from './rules/lists.js';
import { RuleSet } from './rules/index.js';
import { DuckSink } from './sink/duck.js';
import { PgSink, type SinkOptions } from './sink/postgres.js';
import { decodeOrder } from './source/decode.js';
import { RecordedSource, type RecordedMessage } from './source/recorded.js';
import { DuckState } from './state/duckdb.js';

/**
 * An engine over these ports, with the configured lateness, idle timeout and
 * decoder. `eventTimeOnly`: the clock stands still (no window closes on wall-clock
 * time) and retention runs after every batch, so recorded input always gives the
 * same result.
 */
export function newEngine(
  config: Readonly<Config>,
  ports: Omit<EnginePorts, 'decode'>,
  opts: { failpoint?: (name: FailpointName) => void; eventTimeOnly?: boolean; recordsDeadLetters?: boolean; alerts?: boolean; precedence?: Precedence } = {},
): Engine {
  const decodeOptions = { timeZone: config.timeZone, maxMessageBytes: config.maxMessageBytes };
  return new Engine(
    { ...ports, decode: (value) => decodeOrder(value, decodeOptions) },
    {
      latenessMs: config.latenessMs,
      idleTimeoutMs: config.idleTimeoutMs,
      retentionIntervalMs: opts.eventTimeOnly ? 0 : 1_000,
      now: opts.eventTimeOnly ? () => 0 : Date.now,
      onOffsetGap: config.onOffsetGap,
      failpoint: opts.failpoint,
      recordsDeadLetters: opts.recordsDeadLetters ?? true,
      alerts: opts.alerts ?? false,
      precedence: opts.precedence,
    },
  );
}

/**
 * The batch loop's settings; idle windows close once a second. A window engine next
 * to the per-order lane (`besideLane`) is spaced by --window-batch-interval-ms: its
 * detections can wait that long, the lane's cannot.
 */
export function loopOptions(config: Readonly<Config>, signal: AbortSignal, besideLane = false): LoopOptions {
  return {
    batchMaxSize: config.batchMaxSize,
    batchMaxWaitMs: config.batchMaxWaitMs,
    tickMs: 1_000,
    signal,
    minBatchIntervalMs: besideLane ? config.windowBatchIntervalMs : 0,
  };
}

/** The console printer shared by a process's engines; `countsInput`: the engine whose late orders it counts. */
type Printer = (events: Engine['events'], countsInput?: boolean) => void;

/** The --console printer of a process (null without --console): one for all its engines. */
export function consolePrinter(config: Readonly<Config>): Printer | null {
  return config.console ? detectionPrinter((line) => process.stdout.write(line + '\n')) : null;
}

/** Rule failures and idle-window failures logged, and `--console` output (`print`). */
export function wireEngine(engine: Engine, logger: Logger, print: Printer | null, countsInput = true): void {
  engine.events.on('rule:error', ({ diagnostic }) =>
    logger.error(`rule failed and was skipped for this batch: ${diagnostic.file}:${diagnostic.line}:${diagnostic.column}: ${diagnostic.message}`),
  );
  engine.events.on('tick:error', (err) => logger.warn(`closing idle windows failed: ${err.message}`));
  engine.events.on('fenced', (err) => logger.warn(`${err.message}; its partitions are rebuilt from PostgreSQL`));
  print?.(engine.events, countsInput);
}

/** The PostgreSQL sink with the configured URL, schema and TLS: the one way every command opens it. */
export function openSink(
  config: Readonly<Config>,
  logger: Logger,
  opts: Pick<SinkOptions, 'signal' | 'onRetry' | 'tables' | 'readOnly'> & { consumerGroup?: string; topic?: string } = {},
): Promise<PgSink> {
  return PgSink.open({
    databaseUrl: config.databaseUrl,
    ssl: pgSsl(config, (f) => readFileSync(f, 'utf8')),
    schema: config.pgSchema,
    consumerGroup: opts.consumerGroup ?? config.groupId,
    topic: opts.topic ?? config.topic,
    logger,
    signal: opts.signal,
    onRetry: opts.onRetry,
    tables: opts.tables,
    readOnly: opts.readOnly,
    alertWebhooks: config.alertWebhook,
  });
}

/**
 * Writes every batch to the DuckDB sink and to PostgreSQL, with the DuckDB file's
 * progress: the embedded run is the one that counts, PostgreSQL follows it.
 */
export function teeSink(duck: DuckSink, pg: PgSink): SinkPort {
  return {
    concurrentCommit: false,
    copiesRuleTables: true,
    progress: async (starts) => {
      const p = await duck.progress(starts);
      for (const [partition, pr] of p) await pg.resetProgress(partition, pr.nextOffset);
      return p;
    },
    commit: async (input) => {
      await pg.commit(input);
      await duck.commit(input);
    },
    evidenceEnds: (detections) => duck.evidenceEnds(detections),
    finalize: async (f, w) => {
      await pg.finalize(f, w);
      await duck.finalize(f, w);
    },
    resetProgress: async (partition, offset) => {
      await pg.resetProgress(partition, offset);
      await duck.resetProgress(partition, offset);
    },
    // The DuckDB file is where results carry over from.
    openResults: (q, partitions, horizonUs) => duck.openResults(q, partitions, horizonUs),
  };
}

/**
 * Runs the rules of `dir` over recorded micro-batches with the real engine on an
 * in-memory DuckDB, results kept in its result tables. Event time only (the clock
 * stands still), so the same input gives the same result. The caller closes the
 * returned state. `listen` subscribes to the engine's events before the first
 * batch; `onBatch` follows progress.
 */
export async function runInMemory(
  config: Readonly<Config>,
  dir: string,
  batches: Iterable<readonly RecordedMessage[]>,
  hooks: {
    onBatch?: (messages: number) => void;
    listen?: (events: EngineEmitter) => void;
    /** Written to as well, with its tables created from the rules (the sinks' parity test). */
    postgres?: PgSink;
    /** Entries that stand in for these lists' (a fixture's own). */
    lists?: Record<string, Record<string, string>[]>;
  } = {},
): Promise<{ state: DuckState; rules: RuleSet }> {
  const state = await DuckState.open(':memory:', { threads: 1 });
  try {
    const rules = await RuleSet.load(state, dir, paramOverrides(config));
    for (const [name, entries] of Object.entries(hooks.lists ?? {})) await replaceList(state, dir, name, entries);
    const duck = await DuckSink.open(state, 'input', rules.tables());
    await hooks.postgres?.ensureTables(rules.tables());
    const sink = hooks.postgres ? teeSink(duck, hooks.postgres) : duck;
    const engine = newEngine(config, { state, sink, rules, deadLetters: { send: async () => {} } }, { eventTimeOnly: true });
    hooks.listen?.(engine.events);
    const { onBatch } = hooks;
    if (onBatch) engine.events.on('batch:end', (b) => onBatch(b.messages));
    await engine.run(new RecordedSource(batches), { batchMaxSize: config.batchMaxSize, batchMaxWaitMs: 0, tickMs: 0, signal: new AbortController().signal });
    return { state, rules };
  } catch (err) {
    state.close();
    throw err;
  }
}
