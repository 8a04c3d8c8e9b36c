/**
 * The benchmark harness works end to end (a small run; the real figures come from
 * `npm run bench` on a quiet machine, never from a timed test).
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { BROKERS, PG_URL } from './helpers.js';

const run = promisify(execFile);
const root = new URL('../', import.meta.url).pathname;

t.test('npm run bench -- --smoke reports throughput, latency percentiles and RSS', async (t) => {
  const { stdout } = await run('npm', ['run', '-s', 'bench', '--', '--smoke'], {
    cwd: root,
    maxBuffer: 16 * 1024 * 1024,
    env: { ...process.env, BENCH_KAFKA_BROKERS: BROKERS.join(','), BENCH_DATABASE_URL: PG_URL },
  });
  t.match(stdout, /backlog drain: 20,000 orders in [\d.]+ s = [\d,]+ orders\/s/);
  t.match(stdout, /^\s+1000\s+\d+ \/ \d+ \/ \d+ \/ \d+/m, 'latency row for 1,000 orders/s');
  const r = JSON.parse(readFileSync(`${root}bench/results/smoke.json`, 'utf8'));
  t.equal(r.throughput.orders, 20_000);
  t.ok(r.throughput.ordersPerSecond > 0);
  t.ok(r.throughput.rss.length > 0 && r.throughput.maxRssMb > 0, 'RSS sampled');
  t.equal(r.latency[0].rate, 1000);
  t.ok(r.latency[0].highValue.n > 0, `high-value latencies measured (${r.latency[0].highValue.n})`);
  t.ok(r.latency[0].highValue.p50 <= r.latency[0].highValue.p99, 'percentiles ordered');
  for (const stage of ['decode', 'ingest', 'rules', 'sink']) t.ok(Number.isFinite(r.latency[0].msPerBatchByStage[stage]), `stage ${stage} reported`);
});
