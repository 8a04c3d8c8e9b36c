#!/usr/bin/env node
/**
 * The CLI: the only place that reads argv and the environment, exits, and installs
 * signal handlers.
 */
import yargs, { type Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { loadConfig, SETTINGS, flagName, redactUrl, type Config } from './config.js';
import { describe as describeError, FraudSqlError } from './errors.js';
import { createLogger, type Logger } from './log.js';
import { startRun } from './app.js';
import { PgSink } from './sink/postgres.js';
import { DuckState } from './state/duckdb.js';
import { checkRules } from './rules/index.js';
import { formatDiagnostic } from './rules/loader.js';

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
    logger.info(`${sig}: finishing the current batch and leaving the consumer group`);
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
    .command('rules <action>', 'work with the rule files', (y) =>
      y.command(
        'check',
        'validate every rule against the order schema (no Kafka or PostgreSQL needed)',
        (yy) => withSettings(yy, ['queriesDir']),
        async (argv) => {
          const config = configFrom(argv);
          const state = await DuckState.open(':memory:');
          try {
            const r = await checkRules(state, config.queriesDir);
            for (const p of r.prepared) process.stdout.write(`ok   ${p.rule.name} -> ${p.rule.target} (${p.rule.file}, version ${p.rule.version})\n`);
            for (const d of r.problems) process.stdout.write(`FAIL ${formatDiagnostic(d)}\n`);
            if (r.problems.length > 0) process.exitCode = 1;
          } finally {
            state.close();
          }
        },
      ).demandCommand(1, 'name an action: check'),
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
