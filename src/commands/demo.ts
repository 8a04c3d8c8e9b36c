/**
 * `fraud-sql demo`: the embedded default. The order generator runs in-process into
 * the same engine, batch loop and queries/; results live in a DuckDB file and show
 * on the built-in page. With a database URL configured, results go to PostgreSQL too.
 */
import type { CommandModule } from 'yargs';
import { paramOverrides, type Config } from '../config.js';
import type { Engine } from '../engine/engine.js';
import type { SinkPort } from '../engine/ports.js';
import { FraudSqlError } from '../errors.js';
import { buildServer, listen } from '../http/server.js';
import { Metrics } from '../http/metrics.js';
import { mountDashboard, ResultsDashboard } from '../http/dashboard.js';
import { createLogger, type Logger } from '../log.js';
import { RuleSet } from '../rules/index.js';
import { DuckSink } from '../sink/duck.js';
import { DuckState } from '../state/duckdb.js';
import { generateOrders, SCENARIOS, type Scenario } from '../generator/orders.js';
import { parseMix } from '../generator/pace.js';
import { GeneratorSource } from '../generator/source.js';
import { Lifecycle } from '../lifecycle.js';
import { consolePrinter, loopOptions, newEngine, openSink, teeSink, wireEngine } from '../compose.js';
import { configFrom, untilDone, withSettings } from './common.js';

export interface DemoOptions {
  file: string;
  rate: number;
  seed: number;
  mix?: Partial<Record<Scenario, number>>;
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
    const duckSink = await DuckSink.open(state, TOPIC, rules.tables());
    let sink: SinkPort = duckSink;
    if (config.databaseConfigured) {
      const pgSink = await openSink(config, logger, { signal: life.signal, consumerGroup: 'fraud-sql-demo', topic: TOPIC, tables: rules.tables() });
      life.defer(() => pgSink.close());
      sink = teeSink(duckSink, pgSink);
      logger.info('writing results to PostgreSQL too');
    }
    const engine = newEngine(config, { state, sink, rules, deadLetters: { send: async () => {} } });
    wireEngine(engine, logger, consolePrinter(config));

    const metrics = new Metrics();
    metrics.attach(engine.events, 'generator');
    const http = buildServer(metrics, {
      ready: async () => ({ ready: true, checks: { engine: true } }),
      status: async () => ({
        mode: 'demo',
        file: opts.file,
        committedOffset: engine.committedOffsets().get(0)?.toString(),
        rules: rules
          .prepared()
          .map((p) => ({ name: p.rule.name, file: p.rule.file, version: p.rule.version, state: 'active', ...metrics.ruleStatus(p.rule.name) })),
      }),
    });
    mountDashboard(http, new ResultsDashboard(state, rules));
    const url = await listen(http, config.httpHost, config.httpPort);
    life.defer(() => http.close());

    const orders = generateOrders({ seed: opts.seed, rate: opts.rate, startMs: Date.now(), mix: opts.mix });
    const source = new GeneratorSource(orders, {
      rate: opts.rate,
      count: opts.count,
      signal: life.signal,
      topic: TOPIC,
      bufferMessages: config.batchMaxSize * 2,
    });
    const done = engine.run(source, loopOptions(config, life.signal));
    return { url, engine, state, done, stop: life.stopper(done) };
  } catch (err) {
    await life.release();
    throw err;
  }
}

interface DemoArgs {
  rate: number;
  seed?: number;
  mix?: string;
  file: string;
}

export const demoCommand: CommandModule<object, DemoArgs> = {
  command: 'demo',
  describe: 'the embedded default: generated orders, the same rules, results in a DuckDB file and on a web page (no Kafka or PostgreSQL needed)',
  builder: (y) =>
    withSettings(y, [
      'queriesDir',
      'params',
      'httpHost',
      'httpPort',
      'latenessMs',
      'idleTimeoutMs',
      'batchMaxSize',
      'batchMaxWaitMs',
      'timeZone',
      'console',
      'logLevel',
      'databaseUrl',
      'pgSchema',
      'pgSslMode',
      'pgSslCa',
    ])
      // The demo writes to PostgreSQL only when told where: no default applies here.
      .describe(
        'database-url',
        'also write the results to PostgreSQL at this URL (off unless given; a password belongs in the environment, or in PGPASSWORD) [env FRAUD_SQL_DATABASE_URL]',
      )
      .option('rate', { type: 'number', default: 20, describe: 'orders per second' })
      .option('seed', { type: 'number', describe: 'seed of the order generator (default: random)' })
      .option('mix', { type: 'string', describe: `scenario shares in percent, e.g. bot=10,burst=1 (${SCENARIOS.join(', ')})` })
      .option('file', { type: 'string', default: 'fraud-sql-demo.duckdb', describe: 'DuckDB file for the results' }),
  handler: async (argv) => {
    const config = configFrom(argv);
    const logger = createLogger(config.logLevel);
    const mix = argv.mix ? parseMix(argv.mix, SCENARIOS) : {};
    if (typeof mix === 'string') throw new FraudSqlError('CONFIG_INVALID', `--mix: ${mix}`);
    if (!(argv.rate > 0)) throw new FraudSqlError('CONFIG_INVALID', `--rate: must be above 0, got ${argv.rate}`);
    const seed = argv.seed ?? Math.floor(Math.random() * 2 ** 31);
    const demo = await startDemo(config, logger, { file: argv.file, rate: argv.rate, seed, mix });
    logger.info(`demo running: open ${demo.url} (orders: ${argv.rate}/s, seed ${seed}, results in ${argv.file}); Ctrl-C stops`);
    await untilDone(demo, logger);
  },
};
