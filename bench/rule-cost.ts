/**
 * `npm run bench:rules`: what each rule costs per micro-batch in DuckDB alone, no
 * Kafka and no PostgreSQL. Generated orders (the generator's usual mix, bots
 * included) at a fixed rate are cut into batches of a fixed size and run through
 * the real engine on an in-memory DuckDB, as `rules test` runs them: every rule in
 * one engine, retention after every batch. Once the state holds what the rules
 * keep (the second half of the run), prints per rule its milliseconds per batch,
 * median and 90th percentile, and the engine's own stages.
 *
 * Where `npm run bench` says how fast fraud-sql is, this says where a batch's time
 * goes, and whether it grows with the batch or with the state: run it with two
 * batch sizes, or two lengths. Options:
 *   --rate N      orders per second of event time (default 1000)
 *   --seconds S   event time covered (default 240; the second half is measured)
 *   --batch B     orders per micro-batch (default 250: a window engine's batch at
 *                 1,000 orders/s, started every 250 ms)
 *   --queries D   the rules directory (default: the built-in queries/)
 */
import path from 'node:path';
import { loadConfig } from '../src/config.js';
import { runInMemory } from '../src/compose.js';
import { generateOrders } from '../src/generator/orders.js';
import type { RecordedMessage } from '../src/source/recorded.js';

const args = process.argv.slice(2);
const opt = (name: string, def: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1]! : def;
};
const RATE = Number(opt('rate', '1000'));
const SECONDS = Number(opt('seconds', '240'));
const BATCH = Number(opt('batch', '250'));
const QUERIES = path.resolve(opt('queries', new URL('../../queries', import.meta.url).pathname));

const total = RATE * SECONDS;
const batches = Math.ceil(total / BATCH);

function* cut(): Generator<RecordedMessage[]> {
  const orders = generateOrders({ seed: 7, rate: RATE, startMs: Date.now() - SECONDS * 1000 });
  for (let b = 0; b < batches; b++) {
    const batch: RecordedMessage[] = [];
    for (let i = 0; i < BATCH && b * BATCH + i < total; i++) batch.push({ partition: 0, value: Buffer.from(orders.next().value!.value) });
    yield batch;
  }
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

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
