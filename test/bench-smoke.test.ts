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

t.test('npm run bench -- --smoke reports throughput, latency percentiles and RSS, through the repartition topic and without it', async (t) => {
  const { stdout } = await run('npm', ['run', '-s', 'bench', '--', '--smoke'], {
    cwd: root,
    maxBuffer: 16 * 1024 * 1024,
    env: { ...process.env, BENCH_KAFKA_BROKERS: BROKERS.join(','), BENCH_DATABASE_URL: PG_URL },
  });
  for (const setup of ['hop', 'direct']) {
    t.match(stdout, new RegExp(`^${setup}: backlog drain: 20,000 orders in [\\d.]+ s = [\\d,]+ orders/s`, 'm'), `${setup}: drain rate`);
  }
  t.match(stdout, /^\s+1000\s+\d+ \/ \d+ \/ \d+ \/ \d+/m, 'latency row for 1,000 orders/s');
  t.match(stdout, /^cpu \(% of one core, all processes\): idle [\d.]+, at 15 orders\/s [\d.]+$/m, 'CPU idle and at 15 orders/s');
  t.match(
    stdout,
    /^ {2}a plain kafkajs consumer writing each batch to PostgreSQL, cpu \(% of one core\): idle [\d.]+, at 15 orders\/s [\d.]+$/m,
    'the control consumer: CPU idle and at 15 orders/s',
  );
  t.match(
    stdout,
    /^ {2}a plain HTTP server answering a constant, asked 1,000 times a second while fraud-sql \(hop\) takes 1,000 orders\/s: ms p50 \/ p99 \/ max [\d.]+ \/ [\d.]+ \/ [\d.]+$/m,
    'the control server: lookup latency',
  );
  const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  for (const target of ['backlog drain >= 50,000 orders/s', 'backlog drain max RSS <= 500 MB', '1,000 orders/s high-value p50 <= 50 ms']) {
    t.match(stdout, new RegExp(`^  (met |MISS)  hop: ${escape(target)}: [\\d.]+$`, 'm'), `a verdict: ${target}`);
  }
  // With the control's figure beside it.
  for (const target of ['decision lookup p99 at 1,000 requests/s <= 5 ms', 'CPU at 15 orders/s <= 5 % of a core', 'CPU idle <= 1 % of a core']) {
    t.match(stdout, new RegExp(`^  (met |MISS)  hop: ${escape(target)}: [\\d.]+ \\([\\d.]+\\)$`, 'm'), `a verdict: ${target}, with the control's`);
  }
  const r = JSON.parse(readFileSync(`${root}bench/results/smoke.json`, 'utf8'));
  t.ok(r.control.cpu.at15PerSecondPercent > 0 && r.control.decisions.n > 0, `the control measured (${JSON.stringify(r.control.cpu)})`);
  t.same(
    r.setups.map((s: { setup: string }) => s.setup),
    ['hop', 'direct'],
  );
  for (const { setup, throughput, latency, cpu } of r.setups) {
    t.equal(throughput.orders, 20_000);
    t.ok(throughput.ordersPerSecond > 0, `${setup}: throughput measured`);
    t.ok(throughput.rss.length > 0 && throughput.maxRssMb > 0, `${setup}: RSS sampled`);
    t.equal(latency[0].rate, 1000);
    t.ok(latency[0].highValue.n > 0, `${setup}: high-value latencies measured (${latency[0].highValue.n})`);
    t.ok(latency[0].highValue.p50 <= latency[0].highValue.p99, `${setup}: percentiles ordered`);
    for (const stage of ['decode', 'ingest', 'rules', 'sink']) t.ok(Number.isFinite(latency[0].msPerBatchByStage[stage]), `${setup}: stage ${stage} reported`);
    t.ok(cpu.idlePercent >= 0 && cpu.at15PerSecondPercent > 0, `${setup}: CPU measured (idle ${cpu.idlePercent} %, 15 orders/s ${cpu.at15PerSecondPercent} %)`);
  }
});

t.test('npm run bench:rules prints each built-in rule its milliseconds per batch, and the engine stages', async (t) => {
  const { stdout } = await run('npm', ['run', '-s', 'bench:rules', '--', '--seconds', '6', '--rate', '200', '--batch', '100'], { cwd: root });
  t.match(stdout, /^1,200 orders at 200\/s in batches of 100, rules of .*queries; [\d,]+ orders retained at the end; [\d.]+ s$/m);
  const rules = [...stdout.matchAll(/^ {2}(\w+) +([\d.]+) +([\d.]+)$/gm)].map((m) => m[1]);
  t.same(rules.sort(), ['blocked_activity', 'card_testing', 'high_value_orders', 'popular_products', 'realtime_stats', 'shared_ip_accounts', 'suspicious_ips']);
  t.match(stdout, /^ {2}stage rules +[\d.]+ +[\d.]+$/m, 'the engine stages too');
});
