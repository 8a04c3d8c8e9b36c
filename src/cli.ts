#!/usr/bin/env node
/**
 * The CLI: the only place that reads argv and the environment, exits, and installs
 * signal handlers.
 */
import yargs, { type Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { loadConfig, SETTINGS, flagName, paramOverrides, redactUrl, type Config } from './config.js';
import { describe as describeError, FraudSqlError } from './errors.js';
import { createLogger, type Logger } from './log.js';
import { startRun } from './app.js';
import { PgSink } from './sink/postgres.js';
import { DuckState } from './state/duckdb.js';
import { checkRules } from './rules/index.js';
import { formatDiagnostic } from './rules/loader.js';
import { startDemo } from './demo.js';
import path from 'node:path';
import { runFixtures } from './rules/fixtures.js';
import { backtest } from './backtest.js';
import { generateOrders, SCENARIOS, type Scenario } from './generator/orders.js';
import { pace, parseMix } from './generator/pace.js';
import { kafkaOutput, lineOutput, type OrderOutput } from './generator/output.js';

const SHUTDOWN_GRACE_MS = 15_000;

function withSettings(y: Argv, keys: readonly (keyof Config)[]): Argv {
  for (const s of SETTINGS) {
    if (!keys.includes(s.key) || s.secret) continue;
    y.option(flagName(s.key), {
      describe: `${s.describe} [env ${s.env}] (default: ${Array.isArray(s.default) ? s.default.join(',') : String(s.default)})`,
      type: s.kind === 'bool' ? 'boolean' : 'string',
    });
  }
  return y;
}

/** Only the flags the user actually typed: yargs fills in the rest with undefined. */
function flagsOf(argv: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const s of SETTINGS) {
    const v = argv[flagName(s.key)];
    if (v !== undefined) out[s.key] = v;
  }
  return out;
}

function configFrom(argv: Record<string, unknown>): Readonly<Config> {
  return loadConfig(flagsOf(argv), process.env);
}

const ALL_KEYS = SETTINGS.map((s) => s.key);

/** Installs SIGINT/SIGTERM: the first stops gracefully, a second forces the exit. */
function onSignals(stop: () => Promise<void>, logger: Logger): void {
  let signalled = false;
  const handler = (sig: NodeJS.Signals) => {
    if (signalled) {
      logger.warn(`${sig} again: exiting now`);
      process.exit(130);
    }
    signalled = true;
    logger.info(`${sig}: stopping after the current batch`);
    setTimeout(() => {
      logger.error(`shutdown took longer than ${SHUTDOWN_GRACE_MS / 1000} s; exiting`);
      process.exit(1);
    }, SHUTDOWN_GRACE_MS).unref();
    void stop().then(() => process.exit(0));
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}

async function main(): Promise<void> {
  await yargs(hideBin(process.argv))
    .scriptName('fraud-sql')
    .usage('$0 <command> [options]\n\nReal-time fraud detection: Kafka orders -> SQL rules on DuckDB -> PostgreSQL.')
    .command(
      'run',
      'consume orders from Kafka, run the rules in queries/, write results to PostgreSQL',
      (y) => withSettings(y, ALL_KEYS),
      async (argv) => {
        const config = configFrom(argv);
        const logger = createLogger(config.logLevel);
        logger.info('starting fraud-sql run', { brokers: config.brokers.join(','), database: redactUrl(config.databaseUrl), topic: config.topic });
        const app = await startRun(config, logger);
        onSignals(app.stop, logger);
        await app.done.catch(() => {
          process.exitCode = 1;
        });
      },
    )
    .command(
      'migrate',
      'create or upgrade the PostgreSQL tables (also done by run on start)',
      (y) => withSettings(y, ['databaseUrl', 'pgSchema', 'logLevel']),
      async (argv) => {
        const config = configFrom(argv);
        const logger = createLogger(config.logLevel);
        const sink = await PgSink.open({ databaseUrl: config.databaseUrl, schema: config.pgSchema, consumerGroup: config.groupId, topic: config.topic, logger });
        await sink.close();
        logger.info(`schema ${config.pgSchema} on ${redactUrl(config.databaseUrl)} is up to date`);
      },
    )
    .command(
      'demo',
      'the embedded default: generated orders, the same rules, results in a DuckDB file and on a web page (no Kafka or PostgreSQL needed)',
      (y) =>
        withSettings(y, ['queriesDir', 'params', 'httpHost', 'httpPort', 'latenessMs', 'console', 'logLevel'])
          .option('rate', { type: 'number', default: 20, describe: 'orders per second' })
          .option('seed', { type: 'number', describe: 'seed of the order generator (default: random)' })
          .option('mix', { type: 'string', describe: `scenario shares in percent, e.g. bot=10,burst=1 (${SCENARIOS.join(', ')})` })
          .option('file', { type: 'string', default: 'fraud-sql-demo.duckdb', describe: 'DuckDB file for the results' })
          .option('database-url', { type: 'string', describe: 'also write results to this PostgreSQL database [env FRAUD_SQL_DATABASE_URL]' }),
      async (argv) => {
        const config = configFrom(argv);
        const logger = createLogger(config.logLevel);
        const mix = argv.mix ? parseMix(argv.mix, SCENARIOS) : {};
        if (typeof mix === 'string') throw new FraudSqlError('CONFIG_INVALID', `--mix: ${mix}`);
        if (!(argv.rate > 0)) throw new FraudSqlError('CONFIG_INVALID', `--rate: must be above 0, got ${argv.rate}`);
        const seed = argv.seed ?? Math.floor(Math.random() * 2 ** 31);
        const databaseUrl = (argv['database-url'] as string | undefined) ?? process.env.FRAUD_SQL_DATABASE_URL;
        const demo = await startDemo(config, logger, { file: argv.file, rate: argv.rate, seed, mix, databaseUrl });
        logger.info(`demo running: open ${demo.url} (orders: ${argv.rate}/s, seed ${seed}, results in ${argv.file}); Ctrl-C stops`);
        onSignals(demo.stop, logger);
        await demo.done;
      },
    )
    .command(
      'generate',
      'produce realistic orders with labelled fraud scenarios to Kafka, a file or stdout',
      (y) =>
        withSettings(y, ['brokers', 'topic'])
          .option('rate', { type: 'number', default: 15, describe: 'orders per second (the original sent 10-20/s)' })
          .option('count', { type: 'number', describe: 'stop after this many orders' })
          .option('duration', { type: 'number', describe: 'stop after this many seconds' })
          .option('seed', { type: 'number', describe: 'same seed and options, same orders (default: random, printed)' })
          .option('start', { type: 'string', describe: 'event time of the first order, ISO-8601 (default: now)' })
          .option('mix', { type: 'string', describe: `scenario shares in percent, e.g. bot=10,late=1 (${SCENARIOS.join(', ')})` })
          .option('output', { type: 'string', default: 'kafka', describe: 'kafka, a file path, or stdout (JSON lines)' })
          .option('fast', { type: 'boolean', default: false, describe: 'ignore the rate and send as fast as possible (a backlog)' }),
      async (argv) => {
        const problems: string[] = [];
        const brokers = (argv.brokers as string | undefined ?? process.env.FRAUD_SQL_BROKERS ?? 'localhost:9092').split(',');
        const topic = (argv.topic as string | undefined) ?? process.env.FRAUD_SQL_TOPIC ?? 'orders';
        if (!(argv.rate > 0)) problems.push(`--rate: must be above 0, got ${argv.rate}`);
        if (argv.count !== undefined && !(argv.count > 0)) problems.push(`--count: must be above 0, got ${argv.count}`);
        if (argv.duration !== undefined && !(argv.duration > 0)) problems.push(`--duration: must be above 0, got ${argv.duration}`);
        const mix = argv.mix ? parseMix(argv.mix, SCENARIOS) : {};
        if (typeof mix === 'string') problems.push(`--mix: ${mix}`);
        const startMs = argv.start ? Date.parse(argv.start) : Date.now();
        if (Number.isNaN(startMs)) problems.push(`--start: "${argv.start}" is not an ISO-8601 time`);
        if (problems.length > 0) throw new FraudSqlError('CONFIG_INVALID', `invalid options:\n  - ${problems.join('\n  - ')}`);
        const seed = argv.seed ?? Math.floor(Math.random() * 2 ** 31);
        const toStdout = argv.output === '-' || argv.output === 'stdout';
        const out: OrderOutput = argv.output === 'kafka' ? await kafkaOutput(brokers, topic) : await lineOutput(toStdout ? '-' : argv.output);
        const tty = process.stderr.isTTY && !toStdout;
        const controller = new AbortController();
        let interrupted = false;
        const onSig = () => {
          if (interrupted) process.exit(130);
          interrupted = true;
          controller.abort();
        };
        process.on('SIGINT', onSig);
        process.on('SIGTERM', onSig);
        if (!toStdout) process.stderr.write(`generating to ${argv.output === 'kafka' ? `${topic} on ${brokers.join(',')}` : argv.output} (seed ${seed}, ${argv.fast ? 'as fast as possible' : `${argv.rate}/s`})\n`);
        const counts: Partial<Record<Scenario, number>> = {};
        let sent = 0;
        const started = Date.now();
        const progress = () => {
          const s = (Date.now() - started) / 1000;
          process.stderr.write(`\rsent ${sent.toLocaleString('en-US')}  rate ${Math.round(sent / Math.max(s, 0.001)).toLocaleString('en-US')}/s  errors ${out.errors}   `);
        };
        const timer = tty ? setInterval(progress, 500) : null;
        const orders = generateOrders({ seed, rate: argv.rate, startMs, mix: mix as Record<string, number> });
        const r = await pace(
          orders,
          async (chunk) => {
            await out.write(chunk);
            sent += chunk.length;
            for (const o of chunk) counts[o.label] = (counts[o.label] ?? 0) + 1;
          },
          { rate: argv.rate, count: argv.count, durationMs: argv.duration !== undefined ? argv.duration * 1000 : undefined, fast: argv.fast, signal: controller.signal },
        );
        if (timer) clearInterval(timer);
        await out.close();
        if (!toStdout) {
          if (tty) progress();
          const mixText = Object.entries(counts).map(([k, v]) => `${k}=${v}`).join(' ');
          process.stderr.write(`\n${interrupted ? 'stopped' : 'done'}: ${r.sent} orders in ${(r.elapsedMs / 1000).toFixed(1)} s, ${out.errors} errors (${mixText})\n`);
        }
        if (out.errors > 0) process.exitCode = 1;
      },
    )
    .command(
      'backtest',
      'run the rules over recorded orders (JSON lines) with event-time semantics; with labels, recall and precision',
      (y) =>
        withSettings(y, ['queriesDir', 'params'])
          .option('input', { type: 'string', demandOption: true, describe: 'orders as JSON lines (e.g. from fraud-sql generate --output file)' })
          .option('compare', { type: 'string', describe: 'another rules directory: show the rows each set writes that the other does not' }),
      async (argv) => {
        const config = configFrom(argv);
        const tty = process.stderr.isTTY;
        const report = await backtest({
          input: argv.input,
          dir: config.queriesDir,
          overrides: paramOverrides(config),
          compare: argv.compare,
          progress: tty ? (s) => process.stderr.write(`\r${s}   `) : undefined,
        });
        if (tty) process.stderr.write('\n');
        process.stdout.write(report.lines.join('\n') + '\n');
      },
    )
    .command('rules <action>', 'work with the rule files', (y) =>
      y.command(
        'check',
        'validate every rule against the order schema (no Kafka or PostgreSQL needed)',
        (yy) => withSettings(yy, ['queriesDir', 'params']),
        async (argv) => {
          const config = configFrom(argv);
          const state = await DuckState.open(':memory:');
          try {
            const r = await checkRules(state, config.queriesDir, paramOverrides(config));
            for (const p of r.prepared) process.stdout.write(`ok   ${p.rule.name} -> ${p.rule.target} (${p.rule.file}, version ${p.rule.version})\n`);
            for (const d of r.problems) process.stdout.write(`FAIL ${formatDiagnostic(d)}\n`);
            if (r.problems.length > 0) process.exitCode = 1;
          } finally {
            state.close();
          }
        },
      ).command(
        'test [rule]',
        'run the rules\' fixtures (queries/fixtures/<rule>/*.json) in memory: no Kafka or PostgreSQL needed',
        (yy) => withSettings(yy, ['queriesDir', 'params']).positional('rule', { type: 'string', describe: 'only this rule\'s fixtures' }),
        async (argv) => {
          const config = configFrom(argv);
          const outcomes = await runFixtures(config.queriesDir, paramOverrides(config), argv.rule as string | undefined);
          for (const o of outcomes) {
            process.stdout.write(`${o.ok ? 'ok  ' : 'FAIL'} ${o.rule}: ${path.basename(o.file, '.json')} (${Math.round(o.ms)} ms)${o.description ? ` - ${o.description}` : ''}\n`);
            if (o.problem) process.stdout.write(`${o.problem.split('\n').map((l) => `       ${l.trim()}`).join('\n')}\n`);
          }
          const failed = outcomes.filter((o) => !o.ok).length;
          process.stdout.write(`${outcomes.length - failed} passed, ${failed} failed\n`);
          if (failed > 0 || outcomes.length === 0) process.exitCode = 1;
          if (outcomes.length === 0) process.stderr.write(`no fixtures under ${path.join(config.queriesDir, 'fixtures')}\n`);
        },
      ).demandCommand(1, 'name an action: check or test'),
    )
    .demandCommand(1, 'name a command; see --help')
    .strict()
    .env(false)
    .help()
    .fail((msg, err, y) => {
      if (err) throw err;
      process.stderr.write(`${y.help()}\n\n${msg}\n`);
      process.exit(2);
    })
    .parseAsync();
}

main().catch((err: unknown) => {
  const code = err instanceof FraudSqlError ? err.code : 'UNEXPECTED';
  process.stderr.write(`fraud-sql: ${describeError(err)}\n`);
  if (!(err instanceof FraudSqlError)) process.stderr.write(`${(err as Error)?.stack ?? ''}\n`);
  process.exit(code === 'CONFIG_INVALID' ? 2 : 1);
});
