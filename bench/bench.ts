/**
 * `npm run bench`: fraud-sql against the real Kafka broker and PostgreSQL.
 *
 * 1. Throughput: a pre-produced backlog drained by `fraud-sql run` (the built CLI,
 *    its own process) with the built-in rules: orders/s through to the PostgreSQL
 *    commit, RSS sampled every second.
 * 2. Latency at fixed input rates: orders produced at the rate for a while; for
 *    each high-value order, its produce time to its row committed in PostgreSQL;
 *    for each burst, the produce time of the order that made it detectable to its
 *    row; the engine's own per-stage times.
 *
 * Prints a table and writes JSON to bench/results/. Options:
 *   --orders N       backlog size (default 2,000,000)
 *   --rates a,b,c    input rates for the latency runs (default 1000,5000,10000,20000)
 *   --seconds S      length of each latency run (default 30)
 *   --smoke          a small run proving the harness works (CI)
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { Kafka, Partitioners, logLevel, type Producer } from 'kafkajs';
import pg from 'pg';
import { generateOrders, type GeneratedOrder } from '../src/generator/orders.js';

const args = process.argv.slice(2);
const opt = (name: string, def: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1]! : def;
};
const smoke = args.includes('--smoke');
const ORDERS = Number(opt('orders', smoke ? '20000' : '2000000'));
const RATES = opt('rates', smoke ? '1000' : '1000,5000,10000,20000')
  .split(',')
  .map(Number);
const SECONDS = Number(opt('seconds', smoke ? '5' : '30'));
const PARTITIONS = 4;
const BROKERS = (process.env.BENCH_KAFKA_BROKERS ?? '127.0.0.1:9092').split(',');
const PG_URL = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
// Compiled to dist-bench/bench/: the repository is two levels up.
const root = new URL('../../', import.meta.url).pathname;
const CLI = `${root}dist/cli.js`;
const stamp = new Date().toISOString().replace(/[:.]/g, '-');

const log = (s: string) => process.stderr.write(s + '\n');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const kafka = new Kafka({ clientId: 'fraud-sql-bench', brokers: BROKERS, logLevel: logLevel.NOTHING });

function pct(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

async function newTopic(name: string): Promise<string> {
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({
    topics: [
      { topic: name, numPartitions: PARTITIONS },
      { topic: `${name}.dlq`, numPartitions: 1 },
    ],
    waitForLeaders: true,
  });
  await admin.disconnect();
  return name;
}

/** A just-created topic can be unknown to the producer's metadata for a moment. */
async function send(producer: Producer, topic: string, messages: { key: string; value: string }[]): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await producer.send({ topic, acks: 1, messages });
      return;
    } catch (err) {
      if (attempt >= 10) throw err;
      await sleep(200 * attempt);
    }
  }
}

async function dropTopic(name: string): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  await admin.deleteTopics({ topics: [name, `${name}.dlq`] }).catch(() => {});
  await admin.disconnect();
}

function startRun(topic: string, schema: string): { child: ChildProcess; rss: { t: number; mb: number }[]; url: Promise<string> } {
  const child = spawn('node', [CLI, 'run'], {
    env: {
      ...process.env,
      FRAUD_SQL_BROKERS: BROKERS.join(','),
      FRAUD_SQL_TOPIC: topic,
      FRAUD_SQL_DLQ_TOPIC: `${topic}.dlq`,
      FRAUD_SQL_GROUP: `bench-${topic}`,
      FRAUD_SQL_DATABASE_URL: PG_URL,
      FRAUD_SQL_PG_SCHEMA: schema,
      FRAUD_SQL_HTTP_PORT: '0',
      FRAUD_SQL_LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  const url = new Promise<string>((resolve) => {
    child.stderr!.on('data', (d) => {
      err += d;
      const m = /metrics and health on (\S+)/.exec(err);
      if (m) resolve(m[1]!);
      if (/ERROR/.test(String(d))) process.stderr.write(d);
    });
  });
  const rss: { t: number; mb: number }[] = [];
  const start = Date.now();
  const timer = setInterval(() => {
    try {
      const kb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))![1]);
      rss.push({ t: (Date.now() - start) / 1000, mb: Math.round(kb / 1024) });
    } catch {
      clearInterval(timer);
    }
  }, 1_000);
  child.on('exit', () => clearInterval(timer));
  return { child, rss, url };
}

async function committed(pool: pg.Pool, schema: string, topic: string): Promise<bigint> {
  // Before fraud-sql has created its tables, nothing is committed.
  const r = await pool
    .query(`SELECT coalesce(sum(next_offset), 0)::text AS n FROM "${schema}".consumer_progress WHERE topic = $1`, [topic])
    .catch(() => ({ rows: [{ n: '0' }] }));
  return BigInt(r.rows[0].n);
}

async function produceAll(
  producer: Producer,
  topic: string,
  orders: Iterator<GeneratedOrder>,
  count: number,
  onSent?: (o: GeneratedOrder, at: number) => void,
): Promise<void> {
  const chunk = 10_000;
  let inflight: Promise<unknown>[] = [];
  for (let sent = 0; sent < count;) {
    const n = Math.min(chunk, count - sent);
    const batch: GeneratedOrder[] = [];
    for (let i = 0; i < n; i++) batch.push(orders.next().value as GeneratedOrder);
    const at = Date.now();
    if (onSent) for (const o of batch) onSent(o, at);
    inflight.push(
      send(
        producer,
        topic,
        batch.map((o) => ({ key: o.key, value: o.value })),
      ),
    );
    if (inflight.length >= 4) {
      await Promise.all(inflight);
      inflight = [];
    }
    sent += n;
    if (sent % 200_000 === 0) log(`  produced ${sent.toLocaleString('en-US')}`);
  }
  await Promise.all(inflight);
}

async function stageSeconds(url: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const stage of ['decode', 'ingest', 'rules', 'retention', 'sink']) {
    const sum = Number(new RegExp(`^fraud_sql_batch_stage_seconds_sum\\{stage="${stage}"\\} (\\S+)`, 'm').exec(text)?.[1] ?? NaN);
    const count = Number(new RegExp(`^fraud_sql_batch_stage_seconds_count\\{stage="${stage}"\\} (\\S+)`, 'm').exec(text)?.[1] ?? NaN);
    out[stage] = Math.round((sum / count) * 1e4) / 10; // ms per batch
  }
  const batches = Number(/^fraud_sql_batches_total (\S+)/m.exec(text)?.[1] ?? 0);
  const consumed = Number(/^fraud_sql_records_consumed_total (\S+)/m.exec(text)?.[1] ?? 0);
  out.avgBatchOrders = Math.round(consumed / Math.max(1, batches));
  return out;
}

async function main(): Promise<void> {
  execFileSync(`${root}scripts/kafka.sh`, ['start'], { stdio: 'inherit', env: { ...process.env, KAFKA_PORT: BROKERS[0]!.split(':').pop()! } });
  const pool = new pg.Pool({ connectionString: PG_URL, max: 2 });
  // One producer per topic: kafkajs keeps refreshing metadata of every topic a producer
  // ever sent to, and fails once a finished phase has deleted its topic.
  let producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, allowAutoTopicCreation: false });
  const freshProducer = async () => {
    await producer.disconnect().catch(() => {});
    producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, allowAutoTopicCreation: false });
    await producer.connect();
  };
  const schemas: string[] = [];
  const machine = `${os.cpus().length} cores (${os.cpus()[0]?.model.trim()}), ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
  const results: Record<string, unknown> = { date: new Date().toISOString(), machine, orders: ORDERS, partitions: PARTITIONS };
  try {
    // 1. Throughput: drain a backlog.
    {
      const topic = await newTopic(`bench-backlog-${stamp}`.toLowerCase());
      const schema = `bench_${stamp.replace(/-/g, '_').toLowerCase()}_backlog`;
      schemas.push(schema);
      await freshProducer();
      log(`backlog: producing ${ORDERS.toLocaleString('en-US')} orders to ${topic}`);
      const gen = generateOrders({ seed: 1, rate: 5_000, startMs: Date.now() - (ORDERS / 5_000) * 1000 });
      await produceAll(producer, topic, gen, ORDERS);
      log('backlog: draining with fraud-sql run');
      const started = Date.now();
      const run = startRun(topic, schema);
      let firstCommit = 0;
      for (;;) {
        const n = await committed(pool, schema, topic);
        if (n > 0n && !firstCommit) firstCommit = Date.now();
        if (n >= BigInt(ORDERS)) break;
        if (Date.now() - started > 30 * 60_000) throw new Error('backlog not drained in 30 minutes');
        await sleep(200);
      }
      const done = Date.now();
      const stages = await stageSeconds(await run.url);
      run.child.kill('SIGTERM');
      await new Promise((r) => run.child.on('exit', r));
      const seconds = (done - started) / 1000;
      const drainSeconds = (done - firstCommit) / 1000;
      results.throughput = {
        orders: ORDERS,
        secondsIncludingStartup: seconds,
        ordersPerSecond: Math.round(ORDERS / seconds),
        ordersPerSecondAfterFirstCommit: drainSeconds > 0 ? Math.round(ORDERS / drainSeconds) : null,
        maxRssMb: Math.max(...run.rss.map((r) => r.mb)),
        rss: run.rss,
        msPerBatchByStage: stages,
      };
      await dropTopic(topic);
    }

    // 2. Latency at fixed rates.
    const latency: unknown[] = [];
    for (const rate of RATES) {
      const topic = await newTopic(`bench-rate-${rate}-${stamp}`.toLowerCase());
      const schema = `bench_${stamp.replace(/-/g, '_').toLowerCase()}_r${rate}`;
      schemas.push(schema);
      await freshProducer();
      const run = startRun(topic, schema);
      const url = await run.url;
      await sleep(3_000); // joined and assigned
      log(`latency: ${rate} orders/s for ${SECONDS} s`);
      const sentAt = new Map<string, number>();
      const gen = generateOrders({ seed: 2, rate, startMs: Date.now() });
      const total = rate * SECONDS;
      const started = Date.now();
      const tickMs = 50;
      for (let sent = 0; sent < total;) {
        const due = Math.min(total, Math.floor(((Date.now() - started) / 1000) * rate));
        const batch: GeneratedOrder[] = [];
        while (sent + batch.length < due) batch.push(gen.next().value as GeneratedOrder);
        if (batch.length > 0) {
          const at = Date.now();
          for (const o of batch) sentAt.set(JSON.parse(o.value).order_id, at);
          await send(
            producer,
            topic,
            batch.map((o) => ({ key: o.key, value: o.value })),
          );
          sent += batch.length;
        }
        await sleep(Math.max(0, tickMs - ((Date.now() - started) % tickMs)));
      }
      const behind = Date.now() - started - SECONDS * 1000;
      for (;;) {
        if ((await committed(pool, schema, topic)) >= BigInt(total)) break;
        await sleep(100);
      }
      const hv = (await pool.query(`SELECT order_id, extract(epoch FROM created_at) * 1000 AS at FROM "${schema}".high_value_orders`)).rows;
      const hvLat = hv.map((r) => Number(r.at) - sentAt.get(r.order_id)!).filter((x) => Number.isFinite(x));
      // A burst becomes detectable with the order that makes its IP hot: the first row's creation
      // against the produce time of the newest order the burst contained then.
      const bursts = (
        await pool.query(`SELECT ip_address, extract(epoch FROM min(created_at)) * 1000 AS at FROM "${schema}".suspicious_ips GROUP BY ip_address`)
      ).rows;
      const byIp = new Map<string, number[]>();
      const gen2 = generateOrders({ seed: 2, rate, startMs: started });
      for (let i = 0; i < total; i++) {
        const o = JSON.parse(gen2.next().value!.value);
        (byIp.get(o.ip_address) ?? byIp.set(o.ip_address, []).get(o.ip_address)!).push(sentAt.get(o.order_id)!);
      }
      const susLat = bursts.map((b) => {
        const sends = byIp.get(b.ip_address)!.sort((a, c) => a - c);
        const detectable = sends.filter((s) => s <= Number(b.at));
        return Number(b.at) - detectable[detectable.length - 1]!;
      });
      const stages = await stageSeconds(url);
      run.child.kill('SIGTERM');
      await new Promise((r) => run.child.on('exit', r));
      const row = {
        rate,
        seconds: SECONDS,
        producerBehindMs: behind,
        highValue: { n: hvLat.length, p50: pct(hvLat, 50), p95: pct(hvLat, 95), p99: pct(hvLat, 99), max: hvLat.reduce((a, b) => Math.max(a, b), -Infinity) },
        suspicious: { n: susLat.length, p50: pct(susLat, 50), p99: pct(susLat, 99), max: susLat.reduce((a, b) => Math.max(a, b), -Infinity) },
        msPerBatchByStage: stages,
        maxRssMb: Math.max(...run.rss.map((r) => r.mb)),
      };
      latency.push(row);
      await dropTopic(topic);
    }
    results.latency = latency;
  } finally {
    await producer.disconnect();
    for (const s of schemas) await pool.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`).catch(() => {});
    await pool.end();
  }

  const t = results.throughput as {
    ordersPerSecond: number;
    ordersPerSecondAfterFirstCommit: number | null;
    secondsIncludingStartup: number;
    maxRssMb: number;
    msPerBatchByStage: Record<string, number>;
  };
  const lines = [
    `fraud-sql benchmark, ${results.date}`,
    `machine: ${machine}; broker and PostgreSQL on the same machine; ${PARTITIONS} partitions`,
    '',
    `backlog drain: ${ORDERS.toLocaleString('en-US')} orders in ${t.secondsIncludingStartup.toFixed(1)} s = ${t.ordersPerSecond.toLocaleString('en-US')} orders/s (${t.ordersPerSecondAfterFirstCommit === null ? 'one batch' : `${t.ordersPerSecondAfterFirstCommit.toLocaleString('en-US')}/s after the first commit`}), max RSS ${t.maxRssMb} MB`,
    `  ms per batch: ${Object.entries(t.msPerBatchByStage)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`,
    '',
    'rate/s   high-value ms p50 / p95 / p99 / max     burst detection ms p50 / p99 / max   batch orders  max RSS MB',
    ...(
      results.latency as {
        rate: number;
        highValue: Record<string, number>;
        suspicious: Record<string, number>;
        msPerBatchByStage: Record<string, number>;
        maxRssMb: number;
      }[]
    ).map(
      (r) =>
        `${String(r.rate).padStart(6)}   ${[r.highValue.p50, r.highValue.p95, r.highValue.p99, r.highValue.max]
          .map((x) => String(Math.round(x)))
          .join(' / ')
          .padEnd(30)}   ${[r.suspicious.p50, r.suspicious.p99, r.suspicious.max]
          .map((x) => String(Math.round(x)))
          .join(' / ')
          .padEnd(28)}   ${String(r.msPerBatchByStage.avgBatchOrders).padStart(11)}  ${r.maxRssMb}`,
    ),
  ];
  process.stdout.write(lines.join('\n') + '\n');
  mkdirSync(`${root}bench/results`, { recursive: true });
  const file = `${root}bench/results/${smoke ? 'smoke' : stamp}.json`;
  writeFileSync(file, JSON.stringify(results, null, 2) + '\n');
  process.stdout.write(`\nresults: ${file}\n`);
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${(err as Error).stack}\n`);
  process.exit(1);
});
