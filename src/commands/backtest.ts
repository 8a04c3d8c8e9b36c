/**
 * `fraud-sql backtest --input orders.jsonl`: the rules over recorded orders, with
 * event-time semantics, in memory. Prints rows per rule; with the generator's
 * labels, recall and precision; with `--compare <dir>`, the rows one rule set
 * writes that the other does not.
 */
import { createReadStream, constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import type { CommandModule } from 'yargs';
import type { Config } from '../config.js';
import { FraudSqlError } from '../errors.js';
import { TARGET_KEYS } from '../sink/schema.js';
import type { DuckState } from '../state/duckdb.js';
import { rowsOf } from '../types.js';
import { ipActivity, maxWithin } from '../generator/truth.js';
import { runInMemory } from '../compose.js';
import { configFrom, withSettings } from './common.js';
import { RULE_RUN_KEYS } from './rules.js';

interface Recorded {
  lines: string[];
  labels: Map<string, string>; // order_id -> label
}

async function readInput(file: string): Promise<Recorded> {
  try {
    await access(file, constants.R_OK);
  } catch (err) {
    throw new FraudSqlError('INPUT_INVALID', `cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  const lines: string[] = [];
  const labels = new Map<string, string>();
  const rl = createInterface({ input: createReadStream(file, 'utf8'), crlfDelay: Infinity });
  for await (const line of rl) {
    if (line.trim() === '') continue;
    lines.push(line);
    try {
      const o = JSON.parse(line);
      if (typeof o?.label === 'string' && typeof o?.order_id === 'string') labels.set(o.order_id, o.label);
    } catch {
      // A malformed line is the engine's business: it becomes a dead letter.
    }
  }
  return { lines, labels };
}

async function run(config: Readonly<Config>, dir: string, input: Recorded, progress: (done: number) => void) {
  const size = config.batchMaxSize;
  function* batches() {
    for (let i = 0; i < input.lines.length; i += size) {
      // One partition: the file's order is the arrival order.
      yield input.lines.slice(i, i + size).map((l) => ({ partition: 0, value: Buffer.from(l) }));
    }
  }
  let done = 0;
  return runInMemory(config, dir, batches(), { onBatch: (n) => progress((done += n)) });
}

async function tableRows(state: DuckState, table: string) {
  return rowsOf(await state.query(`SELECT * FROM ${table}`));
}

export interface BacktestReport {
  lines: string[];
  counts: Record<string, number>;
  recall?: Record<string, { recall: number; precision: number; truth: number; found: number }>;
}

export async function backtest(config: Readonly<Config>, opts: { input: string; compare?: string; progress?: (s: string) => void }): Promise<BacktestReport> {
  const dir = config.queriesDir;
  const input = await readInput(opts.input);
  const say = (s: string) => opts.progress?.(s);
  const started = Date.now();
  const tick = (label: string) => (n: number) => say(`${label}: ${n.toLocaleString('en-US')} / ${input.lines.length.toLocaleString('en-US')} orders, ${Math.round(n / Math.max(0.001, (Date.now() - started) / 1000)).toLocaleString('en-US')}/s`);
  const main = await run(config, dir, input, tick(dir));
  const out: string[] = [];
  const counts: Record<string, number> = {};
  try {
    out.push(`${input.lines.length.toLocaleString('en-US')} orders from ${opts.input}, rules from ${dir}`);
    for (const p of main.rules.prepared()) {
      const n = Number((await main.state.query(`SELECT count(*) FROM ${p.rule.target}`)).columns[0]![0]);
      counts[p.rule.name] = n;
      out.push(`  ${p.rule.name.padEnd(20)} ${String(n).padStart(8)} rows in ${p.rule.target}`);
    }
    for (const t of ['dead_letters', 'late_events']) {
      out.push(`  ${t.padEnd(20)} ${String(Number((await main.state.query(`SELECT count(*) FROM ${t}`)).columns[0]![0])).padStart(8)}`);
    }
    let recall: BacktestReport['recall'];
    if (input.labels.size > 0) {
      recall = await score(main.state, input);
      out.push('against the labels:');
      for (const [k, v] of Object.entries(recall)) {
        out.push(`  ${k.padEnd(20)} recall ${(100 * v.recall).toFixed(1)}% (${v.truth} expected)  precision ${(100 * v.precision).toFixed(1)}% (${v.found} found)`);
      }
    }
    if (opts.compare) {
      const other = await run(config, opts.compare, input, tick(opts.compare));
      try {
        out.push(`compared with ${opts.compare}:`);
        for (const table of new Set([...main.rules.prepared(), ...other.rules.prepared()].map((p) => p.rule.target))) {
          const key = TARGET_KEYS[table]!;
          const id = (r: Record<string, unknown>) => key.map((k) => String(r[k])).join('|');
          const a = new Map((await tableRows(main.state, table)).map((r) => [id(r), r]));
          const b = new Map((await tableRows(other.state, table)).map((r) => [id(r), r]));
          const onlyA = [...a.keys()].filter((k) => !b.has(k));
          const onlyB = [...b.keys()].filter((k) => !a.has(k));
          // Values of a row, without the bookkeeping columns that always differ between runs.
          const values = (r: Record<string, unknown>) =>
            JSON.stringify(Object.entries(r).filter(([c]) => !['rule_version', 'created_at', 'updated_at'].includes(c)));
          const changed = [...a.keys()].filter((k) => b.has(k) && values(a.get(k)!) !== values(b.get(k)!));
          out.push(`  ${table}: ${onlyB.length} rows only with ${opts.compare}, ${onlyA.length} rows only with ${dir}, ${changed.length} rows with other values`);
          for (const k of onlyB.slice(0, 5)) out.push(`    + ${k}`);
          for (const k of onlyA.slice(0, 5)) out.push(`    - ${k}`);
          for (const k of changed.slice(0, 5)) out.push(`    ~ ${k}`);
        }
      } finally {
        other.state.close();
      }
    }
    return { lines: out, counts, recall };
  } finally {
    main.state.close();
  }
}

/**
 * Recall and precision against the generator's labels: an IP labelled bot or
 * burst should be flagged once its orders reach 10 within 60 s; an order of
 * 500,000 KRW or more is high value whatever its label.
 */
async function score(state: DuckState, input: Recorded): Promise<NonNullable<BacktestReport['recall']>> {
  const orders = input.lines.flatMap((l) => {
    try {
      const o = JSON.parse(l);
      return typeof o.price === 'number' && typeof o.quantity === 'number' ? [o] : [];
    } catch {
      return [];
    }
  });
  const byIp = ipActivity(orders);
  const flagged = new Set((await tableRows(state, 'suspicious_ips')).map((r) => String(r.ip_address)));
  const truthIps = new Set([...byIp].filter(([, e]) => (e.label === 'bot' || e.label === 'burst') && maxWithin(e.times) >= 10).map(([ip]) => ip));
  const hvFound = new Set((await tableRows(state, 'high_value_orders')).map((r) => String(r.order_id)));
  const hvTruth = new Set(orders.filter((o) => o.price * o.quantity >= 500_000 && input.labels.get(o.order_id) !== 'late').map((o) => o.order_id as string));
  const ratio = (a: number, b: number) => (b === 0 ? 1 : a / b);
  const tpIps = [...truthIps].filter((ip) => flagged.has(ip)).length;
  const tpHv = [...hvTruth].filter((id) => hvFound.has(id)).length;
  return {
    'bot bursts': { recall: ratio(tpIps, truthIps.size), precision: ratio(tpIps, flagged.size), truth: truthIps.size, found: flagged.size },
    'high-value orders': { recall: ratio(tpHv, hvTruth.size), precision: ratio(tpHv, hvFound.size), truth: hvTruth.size, found: hvFound.size },
  };
}

export const backtestCommand: CommandModule<object, { input: string; compare?: string }> = {
  command: 'backtest',
  describe: 'run the rules over recorded orders (JSON lines) with event-time semantics; with labels, recall and precision',
  builder: (y) =>
    withSettings(y, [...RULE_RUN_KEYS, 'batchMaxSize'])
      .option('input', { type: 'string', demandOption: true, describe: 'orders as JSON lines (e.g. from fraud-sql generate --output file)' })
      .option('compare', { type: 'string', describe: 'another rules directory: show the rows each set writes that the other does not' }),
  handler: async (argv) => {
    const config = configFrom(argv);
    const tty = process.stderr.isTTY;
    const report = await backtest(config, { input: argv.input, compare: argv.compare, progress: tty ? (s) => process.stderr.write(`\r${s}   `) : undefined });
    if (tty) process.stderr.write('\n');
    process.stdout.write(report.lines.join('\n') + '\n');
  },
};
