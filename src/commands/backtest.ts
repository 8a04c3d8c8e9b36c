/**
 * `fraud-sql backtest --input orders.jsonl`: the rules over recorded orders, with
 * event-time semantics, in memory. Prints rows per rule; with the generator's
 * labels, recall and precision of every rule that names its label; with
 * `--output <dir>`, every rule's rows as CSV; with `--compare <dir>`, the rows one
 * rule set writes that the other does not.
 */
import { createReadStream, constants } from 'node:fs';
import { access, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { CommandModule } from 'yargs';
import type { Config } from '../config.js';
import { FraudSqlError } from '../errors.js';
import type { DuckState } from '../state/duckdb.js';
import { rowsOf } from '../types.js';
import { expectedKeys, keyOf, type TruthOrder } from '../generator/truth.js';
import type { RuleLabel } from '../rules/loader.js';
import { parseEventTime } from '../time.js';
import { toCsv } from '../csv.js';
import { quoteIdent, shownColumns } from '../rules/view.js';
import { runInMemory } from '../compose.js';
import { configFrom, withSettings } from './common.js';
import { RULE_RUN_KEYS } from './rules.js';

async function readInput(file: string): Promise<string[]> {
  try {
    await access(file, constants.R_OK);
  } catch (err) {
    throw new FraudSqlError('INPUT_INVALID', `cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  const lines: string[] = [];
  const rl = createInterface({ input: createReadStream(file, 'utf8'), crlfDelay: Infinity });
  for await (const line of rl) if (line.trim() !== '') lines.push(line);
  return lines;
}

async function run(config: Readonly<Config>, dir: string, lines: readonly string[], progress: (done: number) => void) {
  const size = config.batchMaxSize;
  function* batches() {
    for (let i = 0; i < lines.length; i += size) {
      // One partition, so a line's offset is its index: the file's order is the arrival order.
      yield lines.slice(i, i + size).map((l) => ({ partition: 0, value: Buffer.from(l) }));
    }
  }
  let done = 0;
  return runInMemory(config, dir, batches(), { onBatch: (n) => progress((done += n)) });
}

async function tableRows(state: DuckState, table: string) {
  return rowsOf(await state.query(`SELECT * FROM ${table}`));
}

export interface RuleScore {
  /** The rule's label with its parameters' values, and the key it is scored by. */
  label: string;
  keyFields: string[];
  /** Key values the rule should flag, flags, and flags that are right. */
  expected: number;
  found: number;
  hits: number;
  /** Key values with a labelled order, whether it meets the condition or not. */
  labelled: number;
  /** Null when there is nothing to divide by: no order meets the label, or the rule found nothing. */
  recall: number | null;
  precision: number | null;
}

export interface BacktestReport {
  lines: string[];
  counts: Record<string, number>;
  /** Per rule with a label. */
  scores: Record<string, RuleScore>;
}

/** How a rule is scored, printed with the scores: see queries/README.md, "Backtesting a rule". */
export const SCORE_DEFINITION =
  "found: the values of a rule's key columns that name order fields in its rows; expected: those of the accepted orders with the rule's label that meet its condition at the rule's parameters";

export async function backtest(
  config: Readonly<Config>,
  opts: { input: string; compare?: string; output?: string; progress?: (s: string) => void },
): Promise<BacktestReport> {
  const dir = config.queriesDir;
  const lines = await readInput(opts.input);
  const say = (s: string) => opts.progress?.(s);
  const started = Date.now();
  const tick = (label: string) => (n: number) =>
    say(
      `${label}: ${n.toLocaleString('en-US')} / ${lines.length.toLocaleString('en-US')} orders, ${Math.round(n / Math.max(0.001, (Date.now() - started) / 1000)).toLocaleString('en-US')}/s`,
    );
  const main = await run(config, dir, lines, tick(dir));
  const out: string[] = [];
  const counts: Record<string, number> = {};
  const scores: Record<string, RuleScore> = {};
  try {
    out.push(`${lines.length.toLocaleString('en-US')} orders from ${opts.input}, rules from ${dir}`);
    for (const p of main.rules.prepared()) {
      const n = Number((await main.state.query(`SELECT count(*) FROM ${p.rule.target}`)).columns[0]![0]);
      counts[p.rule.name] = n;
      out.push(`  ${p.rule.name.padEnd(20)} ${String(n).padStart(8)} rows in ${p.rule.target}`);
    }
    for (const t of ['dead_letters', 'late_events']) {
      out.push(`  ${t.padEnd(20)} ${String(Number((await main.state.query(`SELECT count(*) FROM ${t}`)).columns[0]![0])).padStart(8)}`);
    }
    const orders = await acceptedOrders(main.state, lines, config.timeZone);
    // Unlabelled input (a recording of real traffic) has nothing to score against.
    if (orders.some((o) => o.label !== '')) out.push(`against the labels (${SCORE_DEFINITION}):`);
    for (const { rule } of orders.some((o) => o.label !== '') ? main.rules.prepared() : []) {
      if (!rule.label) {
        out.push(`  ${rule.name.padEnd(20)} no label: rows only`);
        continue;
      }
      const v = await score(main.state, rule.target, rule.label, orders);
      scores[rule.name] = v;
      // "100.0% (0 of 0)" would read as a pass; with nothing to score there is no figure.
      const pct = (x: number | null) => (x === null ? 'n/a' : `${(100 * x).toFixed(1)}%`);
      out.push(
        `  ${rule.name.padEnd(20)} recall ${pct(v.recall)} (${v.hits} of ${v.expected} expected)  precision ${pct(v.precision)} (${v.hits} of ${v.found} found)`,
      );
      out.push(`  ${''.padEnd(20)} label ${v.label}, per ${v.keyFields.join(', ')}: ${v.labelled} values labelled, ${v.expected} of them meet the condition`);
    }
    if (opts.output) {
      await mkdir(opts.output, { recursive: true });
      for (const p of main.rules.prepared()) {
        const { rule } = p;
        const file = path.join(opts.output, `${rule.name}.csv`);
        const columns = shownColumns(p).map(quoteIdent);
        await writeFile(
          file,
          toCsv(await main.state.query(`SELECT ${columns.join(', ')} FROM ${quoteIdent(rule.target)} ORDER BY ${rule.key.map(quoteIdent).join(', ')}`)),
        );
      }
      out.push(`rows of every rule written to ${path.join(opts.output, '<rule>.csv')}`);
    }
    if (opts.compare) {
      const other = await run(config, opts.compare, lines, tick(opts.compare));
      try {
        out.push(`compared with ${opts.compare}:`);
        const mine = new Set(main.rules.prepared().map((p) => p.rule.target));
        const theirs = new Set(other.rules.prepared().map((p) => p.rule.target));
        for (const table of new Set([...mine, ...theirs])) {
          // A rule one side has and the other not (added or removed): its rows, with nothing to match them against.
          if (!mine.has(table) || !theirs.has(table)) {
            const [side, state] = mine.has(table) ? [dir, main.state] : [opts.compare, other.state];
            const n = (await tableRows(state, table)).length;
            out.push(`  ${table}: written only by the rules of ${side} (${n} ${n === 1 ? 'row' : 'rows'})`);
            continue;
          }
          const key = [...main.rules.tables(), ...other.rules.tables()].find((t) => t.name === table)!.key;
          const id = (r: Record<string, unknown>) => key.map((k) => String(r[k])).join('|');
          const a = new Map((await tableRows(main.state, table)).map((r) => [id(r), r]));
          const b = new Map((await tableRows(other.state, table)).map((r) => [id(r), r]));
          const onlyA = [...a.keys()].filter((k) => !b.has(k));
          const onlyB = [...b.keys()].filter((k) => !a.has(k));
          // Values of a row, without the bookkeeping columns that always differ between runs.
          const values = (r: Record<string, unknown>) =>
            JSON.stringify(Object.entries(r).filter(([c]) => !['rule_version', 'created_at', 'updated_at'].includes(c)));
          const changed = [...a.keys()].filter((k) => b.has(k) && values(a.get(k)!) !== values(b.get(k)!));
          out.push(
            `  ${table}: ${onlyB.length} rows only with ${opts.compare}, ${onlyA.length} rows only with ${dir}, ${changed.length} rows with other values`,
          );
          for (const k of onlyB.slice(0, 5)) out.push(`    + ${k}`);
          for (const k of onlyA.slice(0, 5)) out.push(`    - ${k}`);
          for (const k of changed.slice(0, 5)) out.push(`    ~ ${k}`);
        }
      } finally {
        other.state.close();
      }
    }
    return { lines: out, counts, scores };
  } finally {
    main.state.close();
  }
}

/**
 * The orders the rules saw, for the oracle: every line that became neither a dead
 * letter nor a late event (one partition: a line's offset is its index), each
 * order once, as the engine keeps the first delivery of an order_id and timestamp.
 */
async function acceptedOrders(state: DuckState, lines: readonly string[], timeZone: string): Promise<TruthOrder[]> {
  const rejected = new Set(
    rowsOf(await state.query('SELECT kafka_offset FROM dead_letters UNION ALL SELECT kafka_offset FROM late_events')).map((r) => Number(r.kafka_offset)),
  );
  const seen = new Set<string>();
  const orders: TruthOrder[] = [];
  lines.forEach((line, offset) => {
    if (rejected.has(offset)) return;
    const fields = JSON.parse(line) as Record<string, unknown>;
    const eventUs = parseEventTime(String(fields.timestamp), timeZone) as number;
    const id = `${String(fields.order_id)}@${eventUs}`;
    if (seen.has(id)) return;
    seen.add(id);
    orders.push({ fields, eventUs, label: typeof fields.label === 'string' ? fields.label : '' });
  });
  return orders;
}

/** Recall and precision of one rule's rows against the independent oracle in generator/truth.ts. */
async function score(state: DuckState, target: string, label: RuleLabel, orders: readonly TruthOrder[]): Promise<RuleScore> {
  const { expected, labelled } = expectedKeys(orders, label);
  const found = new Set(rowsOf(await state.query(`SELECT DISTINCT ${label.keyFields.join(', ')} FROM ${target}`)).map((r) => keyOf(label.keyFields, r)));
  const hits = [...found].filter((k) => expected.has(k)).length;
  const ratio = (a: number, b: number) => (b === 0 ? null : a / b);
  return {
    label: label.text,
    keyFields: label.keyFields,
    expected: expected.size,
    found: found.size,
    hits,
    labelled: labelled.size,
    recall: ratio(hits, expected.size),
    precision: ratio(hits, found.size),
  };
}

export const backtestCommand: CommandModule<object, { input: string; compare?: string; output?: string }> = {
  command: 'backtest',
  describe: 'run the rules over recorded orders (JSON lines) with event-time semantics; with labels, recall and precision',
  builder: (y) =>
    withSettings(y, [...RULE_RUN_KEYS, 'batchMaxSize'])
      .option('input', { type: 'string', demandOption: true, describe: 'orders as JSON lines (e.g. from fraud-sql generate --output file)' })
      .option('compare', { type: 'string', describe: 'another rules directory: show the rows each set writes that the other does not' })
      .option('output', { type: 'string', describe: "a directory: every rule's rows as <rule>.csv (text quoted, formulas neutralised)" }),
  handler: async (argv) => {
    const config = configFrom(argv);
    const tty = process.stderr.isTTY;
    const report = await backtest(config, {
      input: argv.input,
      compare: argv.compare,
      output: argv.output,
      progress: tty ? (s) => process.stderr.write(`\r${s}   `) : undefined,
    });
    if (tty) process.stderr.write('\n');
    process.stdout.write(report.lines.join('\n') + '\n');
  },
};
