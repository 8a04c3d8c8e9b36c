/** `fraud-sql migrate`: creates or upgrades the PostgreSQL tables (run does it on start too). */
import type { CommandModule } from 'yargs';
import { redactUrl } from '../config.js';
import { createLogger } from '../log.js';
import { openSink } from '../compose.js';
import { configFrom, withSettings } from './common.js';

export const migrateCommand: CommandModule<object, Record<string, unknown>> = {
  command: 'migrate',
  describe: 'create or upgrade the PostgreSQL tables (also done by run on start)',
  builder: (y) => withSettings(y, ['databaseUrl', 'pgSchema', 'pgSslMode', 'pgSslCa', 'logLevel']),
  handler: async (argv) => {
    const config = configFrom(argv);
    const logger = createLogger(config.logLevel);
    const sink = await openSink(config, logger);
    await sink.close();
    logger.info(`schema ${config.pgSchema} on ${redactUrl(config.databaseUrl)} is up to date`);
  },
};
