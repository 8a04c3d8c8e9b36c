/** `fraud-sql generate`: realistic orders with labelled fraud scenarios to Kafka, a file or stdout. */
import type { CommandModule } from 'yargs';
import { FraudSqlError } from '../errors.js';
import { createLogger } from '../log.js';
import { generateOrders, SCENARIOS, type Scenario } from '../generator/orders.js';
import { pace, parseMix } from '../generator/pace.js';
import { kafkaOutput, lineOutput, type OrderOutput } from '../generator/output.js';
import { COMPRESSIONS, type Compression } from '../source/codecs.js';
import { configFrom, onSignals, withSettings } from './common.js';

interface GenerateArgs {
  rate: number;
  count?: number;
  duration?: number;
  seed?: number;
  start?: string;
  mix?: string;
  output: string;
  fast: boolean;
  compression: Compression;
}

export const generateCommand: CommandModule<object, GenerateArgs> = {
  command: 'generate',
  describe: 'produce realistic orders with labelled fraud scenarios to Kafka, a file or stdout',
  builder: (y) =>
    withSettings(y, ['brokers', 'topic', 'logLevel'])
      .option('rate', { type: 'number', default: 15, describe: 'orders per second (the original sent 10-20/s)' })
      .option('count', { type: 'number', describe: 'stop after this many orders' })
      .option('duration', { type: 'number', describe: 'stop after this many seconds' })
      .option('seed', { type: 'number', describe: 'same seed and options, same orders (default: random, printed)' })
      .option('start', { type: 'string', describe: 'event time of the first order, ISO-8601 (default: now)' })
      .option('mix', { type: 'string', describe: `scenario shares in percent, e.g. bot=10,late=1 (${SCENARIOS.join(', ')})` })
      .option('output', { type: 'string', default: 'kafka', describe: 'kafka, a file path, or stdout (JSON lines)' })
      .option('fast', { type: 'boolean', default: false, describe: 'ignore the rate and send as fast as possible (a backlog)' })
      .option('compression', { choices: COMPRESSIONS, default: 'none' as Compression, describe: 'compress the record batches sent to Kafka' }),
  handler: async (argv) => {
    const config = configFrom(argv);
    const problems: string[] = [];
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
    const out: OrderOutput =
      argv.output === 'kafka'
        ? await kafkaOutput(config.brokers, config.topic, { compression: argv.compression })
        : await lineOutput(toStdout ? '-' : argv.output);
    const tty = process.stderr.isTTY && !toStdout;
    const controller = new AbortController();
    const say = (s: string) => {
      if (!toStdout) process.stderr.write(s);
    };
    say(
      `generating to ${argv.output === 'kafka' ? `${config.topic} on ${config.brokers.join(',')}` : argv.output} (seed ${seed}, ${argv.fast ? 'as fast as possible' : `${argv.rate}/s`})\n`,
    );
    const counts: Partial<Record<Scenario, number>> = {};
    let sent = 0;
    const started = Date.now();
    const progress = () => {
      const s = (Date.now() - started) / 1000;
      process.stderr.write(
        `\rsent ${sent.toLocaleString('en-US')}  rate ${Math.round(sent / Math.max(s, 0.001)).toLocaleString('en-US')}/s  errors ${out.errors}   `,
      );
    };
    const timer = tty ? setInterval(progress, 500) : null;
    const finished = (async () => {
      const orders = generateOrders({ seed, rate: argv.rate, startMs, mix: mix as Record<string, number> });
      const r = await pace(
        orders,
        async (chunk) => {
          await out.write(chunk);
          sent += chunk.length;
          for (const o of chunk) counts[o.label] = (counts[o.label] ?? 0) + 1;
        },
        {
          rate: argv.rate,
          count: argv.count,
          durationMs: argv.duration !== undefined ? argv.duration * 1000 : undefined,
          fast: argv.fast,
          signal: controller.signal,
        },
      );
      if (timer) clearInterval(timer);
      await out.close();
      if (tty) progress();
      const mixText = Object.entries(counts)
        .map(([k, v]) => `${k}=${v}`)
        .join(' ');
      say(`\n${controller.signal.aborted ? 'stopped' : 'done'}: ${r.sent} orders in ${(r.elapsedMs / 1000).toFixed(1)} s, ${out.errors} errors (${mixText})\n`);
      if (out.errors > 0) process.exitCode = 1;
    })();
    // Ctrl-C stops sending and still prints the summary; a second one exits at once.
    onSignals(() => {
      controller.abort();
      return finished;
    }, createLogger(config.logLevel));
    await finished;
  },
};
