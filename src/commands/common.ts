/** What the commands share: settings as flags, the validated configuration, signals. */
import type { Argv } from 'yargs';
import { loadConfig, SETTINGS, flagName, type Config } from '../config.js';
import type { Logger } from '../log.js';

const SHUTDOWN_GRACE_MS = 15_000;

export const ALL_KEYS = SETTINGS.map((s) => s.key);

/** Adds these settings as flags; their help names the environment variable and the default. */
export function withSettings<T>(y: Argv<T>, keys: readonly (keyof Config)[]): Argv<T> {
  for (const s of SETTINGS) {
    if (!keys.includes(s.key) || s.secret) continue;
    y.option(flagName(s.key), {
      describe: `${s.describe} [env ${s.env}] (default: ${Array.isArray(s.default) ? s.default.join(',') : String(s.default)})`,
      type: s.kind === 'bool' ? 'boolean' : 'string',
    });
  }
  return y;
}

/** The configuration from the flags the user actually typed (yargs fills in the rest with undefined) and the environment. */
export function configFrom(argv: Record<string, unknown>): Readonly<Config> {
  const flags: Record<string, unknown> = {};
  for (const s of SETTINGS) {
    const v = argv[flagName(s.key)];
    if (v !== undefined) flags[s.key] = v;
  }
  return loadConfig(flags, process.env);
}

/** Installs SIGINT/SIGTERM: the first stops gracefully, a second forces the exit. */
export function onSignals(stop: () => Promise<void>, logger: Logger): void {
  let signalled = false;
  const handler = (sig: NodeJS.Signals) => {
    if (signalled) {
      logger.warn(`${sig} again: exiting now`);
      process.exit(130);
    }
    signalled = true;
    logger.info(`${sig}: stopping (a second ${sig} forces it)`);
    setTimeout(() => {
      logger.error(`shutdown took longer than ${SHUTDOWN_GRACE_MS / 1000} s; exiting`);
      process.exit(1);
    }, SHUTDOWN_GRACE_MS).unref();
    void stop().then(
      () => process.exit(process.exitCode ?? 0),
      (err: Error) => {
        logger.error(`stopping failed: ${err.message}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}

/**
 * Runs a long-lived command until it ends: signals stop it gracefully; a failure
 * sets exit status 1, and the process exits even if releasing a resource hangs.
 */
export async function untilDone(app: { done: Promise<void>; stop: () => Promise<void> }, logger: Logger): Promise<void> {
  onSignals(async () => {
    await app.stop();
    // The last line says the stop finished: without it a quiet exit looks like a crash.
    logger.info('stopped');
  }, logger);
  await app.done.catch(() => {
    process.exitCode = 1;
    setTimeout(() => {
      logger.error(`shutdown took longer than ${SHUTDOWN_GRACE_MS / 1000} s; exiting`);
      process.exit(1);
    }, SHUTDOWN_GRACE_MS).unref();
  });
}
