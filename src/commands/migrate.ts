/**
 * `fraud-sql migrate`: creates or upgrades the PostgreSQL tables: the operational
 * ones, and each rule's result table as its file in queries/ defines it (run does
 * it on start too).
 */
import type { CommandModule } from 'yargs';
import { paramOverrides, redactUrl } from '../config.js';
import { createLogger } from '../log.js';
import { RuleSet } from '../rules/index.js';
import { DuckState } from '../state/duckdb.js';
import { openSink } from '../compose.js';
import { configFrom, withSettings } from './common.js';

export const migrateCommand: CommandModule<object, Record<string, unknown>> = {
  command: 'migrate',
  describe: "create or upgrade the PostgreSQL tables, the rules' result tables included (also done by run on start)",
  builder: (y) => withSettings(y, ['databaseUrl', 'pgSchema', 'pgSslMode', 'pgSslCa', 'queriesDir', 'params', 'logLevel']),
  handler: async (argv) => {
    const config = configFrom(argv);
    const logger = createLogger(config.logLevel);
    // The rules are checked (not run) on an empty DuckDB: that is where their output types come from.
    const state = await DuckState.open(':memory:', { threads: 1 });
    try {
      const rules = await RuleSet.load(state, config.queriesDir, paramOverrides(config));
      const sink = await openSink(config, logger, { tables: rules.tables() });
      await sink.close();
    } finally {
      state.close();
    }
    logger.info(`schema ${config.pgSchema} on ${redactUrl(config.databaseUrl)} is up to date`);
  },
};
