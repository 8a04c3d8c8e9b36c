/**
 * `npm run bench:rules`: what each rule costs per micro-batch in DuckDB alone, no
 * Kafka and no PostgreSQL. Generated orders (the generator's usual mix, bots
 * included) at a fixed rate are cut into batches of a fixed size and run through
 * the real engine on an in-memory DuckDB, as `rules test` runs them: every rule in
 * one engine, retention after every batch. Prints per rule its milliseconds per
 * batch, median and 90th percentile, over the second half of the run (the state
 * then holds from half to all of the run's orders, at most what the rules keep:
 * ten minutes of event time for the built-in card_testing), and the engine's own
 * stages.
 *
 * Where `npm run bench` says how fast fraud-sql is, this says where a batch's time
 * goes, and whether it grows with the batch or with the state: run it with two
 * batch sizes, or two lengths. Options:
 *   --rate N      orders per second of event time (default 1000)
 *   --seconds S   event time covered (default 240)
 *   --batch B     orders per micro-batch (default 250: a window engine's batch at
 *                 1,000 orders/s, started every 250 ms)
 *   --queries D   the rules directory (default: the built-in queries/)
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../src/config.js';
import { runInMemory } from '../src/compose.js';
import { generateOrders } from '../src/generator/orders.js';
import type { RecordedMessage } from '../src/source/recorded.js';
import { opt, pct } from './options.js';

const RATE = Number(opt('rate', '1000'));
const SECONDS = Number(opt('seconds', '240'));
const BATCH = Number(opt('batch', '250'));
const QUERIES = path.resolve(opt('queries', fileURLToPath(new URL('../../queries', import.meta.url))));
const problems = [
  ...(Number.isFinite(RATE) && RATE > 0 ? [] : ['--rate: a number of orders per second above 0']),
  ...(Number.isFinite(SECONDS) && SECONDS > 0 ? [] : ['--seconds: a number of seconds above 0']),
  ...(Number.isInteger(BATCH) && BATCH >= 1 ? [] : ['--batch: a whole number of orders, at least 1']),
];
if (problems.length > 0) {
  console.error(`bench:rules: ${problems.join('; ')}`);
  process.exit(2);
}

const total = Math.round(RATE * SECONDS);
const batches = Math.ceil(total / BATCH);

function* cut(): Generator<RecordedMessage[]> {
  const orders = generateOrders({ seed: 7, rate: RATE, startMs: Date.now() - SECONDS * 1000 });
  for (let b = 0; b < batches; b++) {
    const batch: RecordedMessage[] = [];
    for (let i = 0; i < BATCH && b * BATCH + i < total; i++) batch.push({ partition: 0, value: Buffer.from(orders.next().value!.value) });
    yield batch;
  }
}

const config = loadConfig({}, {}, { queriesDir: QUERIES });
const perRule = new Map<string, number[]>();
const perStage = new Map<string, number[]>();
let seen = 0;
const started = performance.now();
const { state } = await runInMemory(config, QUERIES, cut(), {
  listen: (events) =>
    events.on('batch:end', (b) => {
      seen++;
      if (seen % Math.max(1, Math.floor(batches / 10)) === 0) process.stderr.write(`  ${Math.round((seen / batches) * 100)} % of ${batches} batches\n`);
      if (seen <= batches / 2) return;
      for (const r of b.ruleSeconds) (perRule.get(r.rule) ?? perRule.set(r.rule, []).get(r.rule)!).push(r.seconds * 1000);
      for (const [stage, s] of Object.entries(b.stages)) (perStage.get(stage) ?? perStage.set(stage, []).get(stage)!).push(s * 1000);
    }),
});
const retained = Number((await state.query('SELECT count(*) FROM orders')).columns[0]![0]);
state.close();

console.log(
  `${total.toLocaleString('en-US')} orders at ${RATE}/s in batches of ${BATCH}, rules of ${QUERIES}; ` +
    `${retained.toLocaleString('en-US')} orders retained at the end; ${((performance.now() - started) / 1000).toFixed(1)} s`,
);
console.log('ms per batch, over the second half     p50      p90');
for (const [rule, ms] of [...perRule].sort((a, b) => pct(b[1], 50) - pct(a[1], 50)))
  console.log(`  ${rule.padEnd(34)} ${pct(ms, 50).toFixed(1).padStart(6)}   ${pct(ms, 90).toFixed(1).padStart(6)}`);
for (const [stage, ms] of perStage) console.log(`  stage ${stage.padEnd(28)} ${pct(ms, 50).toFixed(1).padStart(6)}   ${pct(ms, 90).toFixed(1).padStart(6)}`);
