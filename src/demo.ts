/**
 * `fraud-sql demo`: the embedded default. The order generator runs in-process into
 * the same engine and the same queries/; results live in a DuckDB file and show on
 * the built-in page. With a database URL, results go to PostgreSQL too.
 */
import { paramOverrides, type Config } from './config.js';
import { Engine, type SinkPort } from './engine/engine.js';
import { buildServer } from './http/server.js';
import { Metrics } from './http/metrics.js';
import { DuckDashboard, mountDashboard } from './http/dashboard.js';
import { listen } from './app.js';
import type { Logger } from './log.js';
import { RuleSet } from './rules/index.js';
import { DuckSink } from './sink/duck.js';
import { PgSink } from './sink/postgres.js';
import { DuckState } from './state/duckdb.js';
import { generateOrders, type Scenario } from './generator/orders.js';
import { pace } from './generator/pace.js';
import { Lifecycle, engineOptions, wireEngine } from './lifecycle.js';
import type { SourceMessage } from './types.js';

export interface DemoOptions {
  file: string;
  rate: number;
  seed: number;
  mix?: Partial<Record<Scenario, number>>;
  /** Also write results to this PostgreSQL database. */
  databaseUrl?: string;
  /** Stop after this many orders (tests); default: run until stopped. */
  count?: number;
}

const TOPIC = 'demo';

export interface RunningDemo {
  url: string;
  engine: Engine;
  state: DuckState;
  done: Promise<void>;
  stop(): Promise<void>;
}

export async function startDemo(config: Readonly<Config>, logger: Logger, opts: DemoOptions): Promise<RunningDemo> {
  const life = new Lifecycle(logger);
  try {
    const state = await DuckState.open(opts.file);
    life.defer(() => state.close());
    // Window state does not outlive a demo run; the results do.
    await state.run('DELETE FROM orders');
    const rules = await RuleSet.load(state, config.queriesDir, paramOverrides(config));
    const duckSink = await DuckSink.open(state, TOPIC);
    let sink: SinkPort = duckSink;
    if (opts.databaseUrl) {
      const pgSink = await PgSink.open({ databaseUrl: opts.databaseUrl, schema: config.pgSchema, consumerGroup: 'fraud-sql-demo', topic: TOPIC, logger, signal: life.signal });
      life.defer(() => pgSink.close());
      sink = {
        progress: async (starts) => {
          const p = await duckSink.progress(starts);
          for (const [partition, pr] of p) await pgSink.resetProgress(partition, pr.nextOffset);
          return p;
        },
        commit: async (input) => {
          await pgSink.commit(input);
          await duckSink.commit(input);
        },
        finalize: async (f, w) => {
          await pgSink.finalize(f, w);
          await duckSink.finalize(f, w);
        },
        // The demo's own file is where its results carry over from.
        openResults: (q, partitions, horizonUs) => duckSink.openResults(q, partitions, horizonUs),
      };
      logger.info('writing results to PostgreSQL too');
    }
    const engine = new Engine(
      { state, sink, rules, deadLetters: { send: async () => {} } },
      engineOptions(config, TOPIC),
    );
    wireEngine(engine, config, logger, life);
    const seek = await engine.assign([0], new Map([[0, 0n]]));
    let offset = seek.get(0)!;

    const metrics = new Metrics();
    metrics.attach(engine.events);
    const http = buildServer(metrics, {
      ready: async () => ({ ready: true, checks: { engine: true } }),
      status: async () => ({
        mode: 'demo',
        file: opts.file,
        committedOffset: engine.committedOffsets().get(0)?.toString(),
        rules: rules.prepared().map((p) => ({ name: p.rule.name, file: p.rule.file, version: p.rule.version, state: 'active' })),
      }),
    });
    mountDashboard(http, new DuckDashboard(state));
    const url = await listen(http, config.httpHost, config.httpPort);
    life.defer(() => http.close());

    const orders = generateOrders({ seed: opts.seed, rate: opts.rate, startMs: Date.now(), mix: opts.mix });
    const done = pace(
      orders,
      async (chunk) => {
        const now = Date.now();
        const messages: SourceMessage[] = chunk.map((o) => ({
          topic: TOPIC, partition: 0, offset: offset++, key: Buffer.from(o.key), value: Buffer.from(o.value), timestampMs: now,
        }));
        await engine.handle(messages);
      },
      { rate: opts.rate, count: opts.count, signal: life.signal, tickMs: 250 },
    ).then(() => undefined);

    return { url, engine, state, done, stop: life.stopper(done) };
  } catch (err) {
    await life.release();
    throw err;
  }
}
