#!/usr/bin/env node
/**
 * The CLI: yargs wiring only. Each command composes itself in src/commands/; this
 * file turns a failure into one line and an exit code.
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { describe as describeError, FraudSqlError } from './errors.js';
import { backtestCommand } from './commands/backtest.js';
import { dashboardCommand } from './commands/dashboard.js';
import { demoCommand } from './commands/demo.js';
import { generateCommand } from './commands/generate.js';
import { migrateCommand } from './commands/migrate.js';
import { rulesCommand } from './commands/rules.js';
import { listsCommand } from './commands/lists.js';
import { explainCommand } from './commands/explain.js';
import { runCommand } from './commands/run.js';

async function main(): Promise<void> {
  await yargs(hideBin(process.argv))
    .scriptName('fraud-sql')
    .usage('$0 <command> [options]\n\nReal-time fraud detection: Kafka orders -> SQL rules on DuckDB -> PostgreSQL.')
    .command(runCommand)
    .command(migrateCommand)
    .command(listsCommand)
    .command(explainCommand)
    .command(demoCommand)
    .command(generateCommand)
    .command(backtestCommand)
    .command(rulesCommand)
    .command(dashboardCommand)
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
