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
 * Each runs per setup: `hop`, input keyed by order_id (as most order topics are), so
 * the IP rules read it through the repartition topic; `direct`, input keyed by IP
 * and read as it is (`--input-keyed-by ip_address`); `hop-x2`, the hop with two
 * processes in one group.
 *
 * Prints a table and writes JSON to bench/results/. Options:
 *   --orders N       backlog size (default 2,000,000)
 *   --rates a,b,c    input rates for the latency runs (default 1000,5000,10000,20000)
 *   --seconds S      length of each latency run (default 60)
 *   --setups a,b     which setups (default hop,direct,hop-x2; --smoke: hop,direct)
 *   --cpu-seconds S  length of the idle and the 15 orders/s CPU runs (default 60)
 *   --smoke          a small run proving the harness works (CI)
 *
 * Then, in a run of its own at 1,000 orders/s (so as not to slow the latency runs
 * down), a checkout's question, GET /v1/decisions for an IP of the traffic (bots
 * included), is asked 1,000 times a second by a client process of its own (as a
 * checkout is): its latency, p50 / p99 / max.
 *
 * 3. CPU: the processes' user + system time while idle (no input) and at 15
 *    orders/s (the original design's rate), as a share of one core.
 *
 * 4. Control, the same work without fraud-sql: a plain kafkajs consumer writing
 *    each batch to PostgreSQL (bench/control-consumer.ts), idle and at 15 orders/s;
 *    and a plain HTTP server answering a constant (bench/plain-server.ts), asked as
 *    the decision lookup is while fraud-sql (the first setup) takes 1,000 orders/s.
 *    What the machine gives before any detection runs: a target below it is out of
 *    reach here. Then the same consumer running the per-order rules' SQL in DuckDB
 *    on each batch: the least the per-order lane does, whose batches stay one order
 *    each at 15 orders/s (the 15 orders/s target shows this one).
 *
 * Ends with a verdict per target (see TARGETS), with the control's figure where
 * there is one.
 */
import { spawn, execFileSync, fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { Kafka, Partitioners, logLevel, type Producer } from 'kafkajs';
import pg from 'pg';
import { generateOrders, type GeneratedOrder } from '../src/generator/orders.js';
import type { LookupMessage } from './lookups.js';
import { opt, pct } from './options.js';

const args = process.argv.slice(2);
const smoke = args.includes('--smoke');
const ORDERS = Number(opt('orders', smoke ? '20000' : '2000000'));
const RATES = opt('rates', smoke ? '1000' : '1000,5000,10000,20000')
  .split(',')
  .map(Number);
const SECONDS = Number(opt('seconds', smoke ? '5' : '60'));
const CPU_SECONDS = Number(opt('cpu-seconds', smoke ? '5' : '60'));
const SETUPS = opt('setups', smoke ? 'hop,direct' : 'hop,direct,hop-x2')
  .split(',')
  .map((name) => {
    const m = /^(hop|direct)(?:-x(\d+))?$/.exec(name);
    if (!m) throw new Error(`--setups: "${name}" is not hop, direct or hop-xN`);
    return { name, direct: m[1] === 'direct', processes: Number(m[2] ?? 1) };
  });
type Setup = (typeof SETUPS)[number];

interface LatencyRow {
  rate: number;
  seconds: number;
  producerBehindMs: number;
  highValue: Record<string, number>;
  suspicious: Record<string, number>;
  msPerBatchByStage: Record<string, number>;
  maxRssMb: number;
}

/** CPU use of the setup's processes, in % of one core. */
interface CpuRow {
  seconds: number;
  idlePercent: number;
  at15PerSecondPercent: number;
  /** At 15 orders/s, over every engine of the first process. */
  msPerBatchByStage: Record<string, number>;
}

interface SetupResult {
  setup: string;
  throughput: {
    orders: number;
    secondsIncludingStartup: number;
    ordersPerSecond: number;
    ordersPerSecondAfterFirstCommit: number | null;
    maxRssMb: number;
    rss: { t: number; mb: number }[];
    msPerBatchByStage: Record<string, number>;
  };
  latency: LatencyRow[];
  /** GET /v1/decisions at DECISION_RATE requests/s during a run of its own at 1,000 orders/s, in ms. */
  decisions: Record<string, number>;
  cpu: CpuRow;
}
/** The same work without fraud-sql (see the header, 4). */
interface Control {
  /** The plain consumer's CPU, in % of one core. */
  cpu: { idlePercent: number; at15PerSecondPercent: number };
  /** The same consumer also running the per-order lane's rules in DuckDB (its least work; see bench/control-consumer.ts). */
  laneCpu: { idlePercent: number; at15PerSecondPercent: number };
  /** The plain server's answers, in ms, while fraud-sql takes DECISION_ORDER_RATE orders/s. */
  decisions: Record<string, number>;
}
const PARTITIONS = 4;
const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

/** A run that ended has failed: its last lines say why. */
function assertAlive(runs: Run[]): void {
  const dead = runs.find((r) => r.child.exitCode !== null || r.child.signalCode !== null);
  if (dead)
    throw new Error(
      `${dead.child.spawnargs.slice(1).join(' ')} exited (${dead.child.signalCode ?? `status ${dead.child.exitCode}`}):\n${dead.stderr().split('\n').slice(-15).join('\n')}`,
    );
}

/** User + system CPU seconds the runs' processes have used so far (/proc/<pid>/stat, fields 14 and 15). */
function cpuSeconds(runs: Run[]): number {
  assertAlive(runs);
  let ticks = 0;
  for (const r of runs) {
    const fields = readFileSync(`/proc/${r.child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks / CLOCK_TICKS;
}

/** The targets the project holds itself to (issue: fast at every rate), checked per setup. */
const TARGETS: {
  what: string;
  value: (r: SetupResult) => number | undefined;
  /** The same figure without fraud-sql (see Control), for this setup's row. */
  control?: (c: Control, r: SetupResult) => number | undefined;
  max?: number;
  min?: number;
  unit: string;
}[] = [
  { what: 'backlog drain', value: (r) => r.throughput.ordersPerSecond, min: 50_000, unit: 'orders/s' },
  { what: 'backlog drain max RSS', value: (r) => r.throughput.maxRssMb, max: 500, unit: 'MB' },
  { what: '1,000 orders/s high-value p50', value: (r) => r.latency.find((l) => l.rate === 1000)?.highValue.p50, max: 50, unit: 'ms' },
  { what: '1,000 orders/s high-value p99', value: (r) => r.latency.find((l) => l.rate === 1000)?.highValue.p99, max: 120, unit: 'ms' },
  { what: '10,000 orders/s high-value p50', value: (r) => r.latency.find((l) => l.rate === 10_000)?.highValue.p50, max: 100, unit: 'ms' },
  { what: '10,000 orders/s high-value p99', value: (r) => r.latency.find((l) => l.rate === 10_000)?.highValue.p99, max: 250, unit: 'ms' },
  {
    what: 'decision lookup p99 at 1,000 requests/s',
    value: (r) => r.decisions.p99,
    // Measured under the first setup's load only.
    control: (c, r) => (r.setup === SETUPS[0]!.name ? c.decisions.p99 : undefined),
    max: 5,
    unit: 'ms',
  },
  // Against the lane's least work: every order through the per-order rules and committed on its own.
  { what: 'CPU at 15 orders/s', value: (r) => r.cpu.at15PerSecondPercent, control: (c) => c.laneCpu.at15PerSecondPercent, max: 5, unit: '% of a core' },
  { what: 'CPU idle', value: (r) => r.cpu.idlePercent, control: (c) => c.cpu.idlePercent, max: 1, unit: '% of a core' },
];
const BROKERS = (process.env.BENCH_KAFKA_BROKERS ?? '127.0.0.1:9092').split(',');
const PG_URL = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
// Compiled to dist-bench/bench/: the repository is two levels up.
const root = new URL('../../', import.meta.url).pathname;
const CLI = `${root}dist/cli.js`;
const here = new URL('.', import.meta.url).pathname;
const stamp = new Date().toISOString().replace(/[:.]/g, '-');

const log = (s: string) => process.stderr.write(s + '\n');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const kafka = new Kafka({ clientId: 'fraud-sql-bench', brokers: BROKERS, logLevel: logLevel.NOTHING });

/** Lookups per second, and the input rate meanwhile. */
const DECISION_RATE = 1_000;
const DECISION_ORDER_RATE = 1_000;

/**
 * Asks `url`/v1/decisions about `ips` (in turn) at DECISION_RATE a second, from a
 * process of its own (bench/lookups.ts), until `until` resolves; returns each
 * answer's latency in ms. A failed answer fails the bench.
 */
async function lookups(url: string, ips: () => string[], until: Promise<unknown>): Promise<number[]> {
  const client = fork(new URL('./lookups.js', import.meta.url).pathname, [url, String(DECISION_RATE)]);
  const send = (m: LookupMessage) => client.send(m);
  let told = 0;
  const tell = setInterval(() => {
    const known = ips();
    if (known.length !== told) send({ type: 'ips', ips: [...known] });
    told = known.length;
  }, 100);
  await until;
  clearInterval(tell);
  const done = new Promise<{ latencies: number[]; failure: string | null }>((resolve, reject) => {
    client.once('message', (m) => resolve(m as { latencies: number[]; failure: string | null }));
    client.once('error', reject);
    client.once('exit', (code) => reject(new Error(`the lookup client exited (${code}) before answering`)));
  });
  send({ type: 'stop' });
  const { latencies, failure } = await done;
  if (failure) throw new Error(`decision lookup: ${failure}`);
  return latencies;
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
async function send(producer: Producer, topic: string, messages: { key: string | null; value: string }[]): Promise<void> {
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

/** The message key a producer in this setup gives an order: its IP (direct) or its order_id (through the hop). */
function keyOf(setup: Setup, o: GeneratedOrder): string | null {
  if (setup.direct) return o.key;
  try {
    return (JSON.parse(o.value) as { order_id?: string }).order_id ?? o.key;
  } catch {
    return o.key;
  }
}

type Run = {
  child: ChildProcess;
  rss: { t: number; mb: number }[];
  url: Promise<string>;
  /** Where the decision lookup listens (its own port). */
  decisionsUrl: Promise<string>;
  /** Resolves with the first group of `re` once the process has logged it. */
  logged: (re: RegExp) => Promise<string>;
  stderr: () => string;
};

/** The setup's processes, one group. */
function startRuns(topic: string, schema: string, setup: Setup): Run[] {
  return Array.from({ length: setup.processes }, () => startRun(topic, schema, setup));
}

function startRun(topic: string, schema: string, setup: Setup): Run {
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
      FRAUD_SQL_DECISIONS_PORT: '0',
      FRAUD_SQL_LOG_LEVEL: 'info',
      FRAUD_SQL_INPUT_KEYED_BY: setup.direct ? 'ip_address' : '',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  return watch(child);
}

/** The control consumer (see bench/control-consumer.ts) on `topic`; with `queries`, running the per-order rules in them too. */
function startControl(topic: string, schema: string, queries?: string): Run {
  const child = spawn('node', [`${here}control-consumer.js`, BROKERS.join(','), topic, schema, ...(queries ? [queries] : [])], {
    env: { ...process.env, BENCH_DATABASE_URL: PG_URL },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  return watch(child);
}

/** A process of the bench's: its stderr kept (errors echoed), its RSS sampled every second. */
function watch(child: ChildProcess): Run {
  let err = '';
  // A process that dies before it logs the line fails the bench instead of leaving it waiting.
  const logged = (re: RegExp) => {
    const line = new Promise<string>((resolve, reject) => {
      const look = () => {
        const m = re.exec(err);
        if (m) resolve(m[1]!);
      };
      look();
      child.stderr!.on('data', look);
      child.on('exit', (code, signal) =>
        reject(new Error(`${child.spawnargs.slice(1).join(' ')} exited (${signal ?? `status ${code}`}):\n${err.split('\n').slice(-15).join('\n')}`)),
      );
    });
    line.catch(() => {}); // rejected only matters to whoever awaits it
    return line;
  };
  child.stderr!.on('data', (d) => {
    err += d;
    if (/ERROR/.test(String(d))) process.stderr.write(d);
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
  return {
    child,
    rss,
    url: logged(/metrics and health on (\S+)/),
    decisionsUrl: logged(/decision lookup on (\S+)\/v1\/decisions/),
    logged,
    stderr: () => err,
  };
}

interface Status {
  pipelines?: { topic: string }[];
  partitions?: { topic: string; partition: number; committedOffset: string; lag: number }[];
}

/**
 * How far the processes of a run are, from their /status: the input offsets done
 * with (forwarded by the hop, or committed by the engine reading it), and whether
 * every partition of every topic the rules read is committed to its end.
 */
async function progress(runs: Run[], topic: string): Promise<{ input: bigint; caughtUp: boolean }> {
  const statuses = await Promise.all(
    runs.map(async (r): Promise<Status> => {
      try {
        return (await (await fetch(`${await r.url}/status`)).json()) as Status;
      } catch {
        return {}; // not answering (yet)
      }
    }),
  );
  const input = new Map<number, bigint>();
  const read = new Map<string, number>();
  const ruleTopics = new Set(statuses.flatMap((st) => (st.pipelines ?? []).map((p) => p.topic)));
  for (const st of statuses) {
    for (const p of st.partitions ?? []) {
      if (p.topic === topic)
        input.set(
          p.partition,
          [input.get(p.partition) ?? 0n, BigInt(p.committedOffset)].reduce((a, b) => (a > b ? a : b)),
        );
      if (ruleTopics.has(p.topic)) read.set(`${p.topic}/${p.partition}`, Math.min(read.get(`${p.topic}/${p.partition}`) ?? Infinity, p.lag));
    }
  }
  const caughtUp = ruleTopics.size > 0 && read.size === ruleTopics.size * PARTITIONS && [...read.values()].every((lag) => lag === 0);
  return { input: [...input.values()].reduce((a, b) => a + b, 0n), caughtUp };
}

/** Resolves once the runs have committed `total` input messages through to PostgreSQL; calls `onFirst` at the first progress. */
async function drained(runs: Run[], topic: string, total: number, timeoutMs: number, onFirst?: () => void): Promise<void> {
  const started = Date.now();
  for (;;) {
    assertAlive(runs);
    const p = await progress(runs, topic);
    if (p.input > 0n) onFirst?.();
    if (p.input >= BigInt(total) && p.caughtUp) return;
    if (Date.now() - started > timeoutMs) throw new Error(`not drained in ${timeoutMs / 60_000} minutes`);
    await sleep(200);
  }
}

/**
 * The share of one core `runs` use while idle, then while `topic` gets 15 orders/s,
 * for CPU_SECONDS each, once started, joined and assigned (5 s).
 */
async function idleThenSlow(runs: Run[], producer: Producer, topic: string, setup: Setup): Promise<{ idlePercent: number; at15PerSecondPercent: number }> {
  await sleep(5_000);
  const idleFrom = cpuSeconds(runs);
  await sleep(CPU_SECONDS * 1000);
  const idleCpu = cpuSeconds(runs) - idleFrom;
  const slow = generateOrders({ seed: 3, rate: 15, startMs: Date.now() });
  const busyFrom = cpuSeconds(runs);
  const slowStart = Date.now();
  for (let i = 0; i < 15 * CPU_SECONDS; i++) {
    const o = slow.next().value as GeneratedOrder;
    await send(producer, topic, [{ key: keyOf(setup, o), value: o.value }]);
    await sleep(Math.max(0, slowStart + ((i + 1) * 1000) / 15 - Date.now()));
  }
  const busyCpu = cpuSeconds(runs) - busyFrom;
  const busySeconds = (Date.now() - slowStart) / 1000;
  return {
    idlePercent: Math.round((idleCpu / CPU_SECONDS) * 1000) / 10,
    at15PerSecondPercent: Math.round((busyCpu / busySeconds) * 1000) / 10,
  };
}

const stopRuns = async (runs: Run[]) => {
  for (const r of runs) r.child.kill('SIGTERM');
  await Promise.all(runs.map((r) => new Promise((done) => (r.child.exitCode !== null ? done(null) : r.child.on('exit', done)))));
};

async function produceAll(
  producer: Producer,
  topic: string,
  setup: Setup,
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
        batch.map((o) => ({ key: keyOf(setup, o), value: o.value })),
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
  const bySetup: SetupResult[] = [];
  results.setups = bySetup;
  const control: Control = { cpu: { idlePercent: NaN, at15PerSecondPercent: NaN }, laneCpu: { idlePercent: NaN, at15PerSecondPercent: NaN }, decisions: {} };
  results.control = control;
  // The control's HTTP server (bench/plain-server.ts), started when first asked; it sends its URL.
  const plain: { child?: ChildProcess; url?: Promise<string> } = {};
  const plainServer = () => {
    if (!plain.url) {
      const child = (plain.child = fork(`${here}plain-server.js`));
      plain.url = new Promise<string>((resolve) => child.once('message', (url) => resolve(String(url))));
    }
    return plain.url;
  };
  try {
    for (const setup of SETUPS) {
      const tag = `${setup.name}-${stamp}`.toLowerCase();
      const schemaOf = (what: string) => `bench_${tag.replace(/-/g, '_')}_${what}`;
      // 1. Throughput: drain a backlog.
      const topic = await newTopic(`bench-backlog-${tag}`);
      const schema = schemaOf('backlog');
      schemas.push(schema);
      await freshProducer();
      log(`${setup.name}: producing a backlog of ${ORDERS.toLocaleString('en-US')} orders to ${topic}`);
      const gen = generateOrders({ seed: 1, rate: 5_000, startMs: Date.now() - (ORDERS / 5_000) * 1000 });
      await produceAll(producer, topic, setup, gen, ORDERS);
      log(`${setup.name}: draining with ${setup.processes} fraud-sql run process${setup.processes > 1 ? 'es' : ''}`);
      const started = Date.now();
      const runs = startRuns(topic, schema, setup);
      let firstCommit = 0;
      await drained(runs, topic, ORDERS, 30 * 60_000, () => (firstCommit ||= Date.now()));
      const done = Date.now();
      const stages = await stageSeconds(await runs[0]!.url);
      await stopRuns(runs);
      const seconds = (done - started) / 1000;
      const drainSeconds = (done - firstCommit) / 1000;
      const throughput = {
        orders: ORDERS,
        secondsIncludingStartup: seconds,
        ordersPerSecond: Math.round(ORDERS / seconds),
        ordersPerSecondAfterFirstCommit: drainSeconds > 0 ? Math.round(ORDERS / drainSeconds) : null,
        maxRssMb: Math.max(...runs.map((r) => Math.max(...r.rss.map((x) => x.mb)))),
        rss: runs[0]!.rss,
        msPerBatchByStage: stages,
      };
      await dropTopic(topic);

      // 2. Latency at fixed rates.
      const latency: LatencyRow[] = [];
      let decisions: Record<string, number> = {};
      // The lookups are asked of fraud-sql, then (once) of the plain server while fraud-sql works.
      const asks: { rate: number; ask: 'fraud-sql' | 'plain' | null }[] = [
        ...RATES.map((rate) => ({ rate, ask: null })),
        { rate: DECISION_ORDER_RATE, ask: 'fraud-sql' as const },
        ...(setup === SETUPS[0] ? [{ rate: DECISION_ORDER_RATE, ask: 'plain' as const }] : []),
      ];
      for (const { rate, ask } of asks) {
        const topic = await newTopic(`bench-rate-${rate}${ask ? `-${ask}` : ''}-${tag}`);
        const schema = schemaOf(`r${rate}${ask ? `_${ask.replace('-', '_')}` : ''}`);
        schemas.push(schema);
        await freshProducer();
        const runs = startRuns(topic, schema, setup);
        const url = await runs[0]!.url;
        await sleep(3_000); // joined and assigned
        const askWhat = ask === 'plain' ? 'a plain HTTP server (the control)' : 'GET /v1/decisions';
        log(`${setup.name}: ${rate} orders/s for ${SECONDS} s${ask ? `, asked ${askWhat} ${DECISION_RATE} times a second` : ''}`);
        const sentAt = new Map<string, number>();
        const gen = generateOrders({ seed: 2, rate, startMs: Date.now() });
        const total = rate * SECONDS;
        const started = Date.now();
        const tickMs = 50;
        const ips: string[] = [];
        let producing!: () => void;
        const produced = new Promise<void>((r) => (producing = r));
        const asking = ask ? lookups(ask === 'plain' ? await plainServer() : await runs[0]!.decisionsUrl, () => ips, produced) : null;
        for (let sent = 0; sent < total;) {
          const due = Math.min(total, Math.floor(((Date.now() - started) / 1000) * rate));
          const batch: GeneratedOrder[] = [];
          while (sent + batch.length < due) batch.push(gen.next().value as GeneratedOrder);
          if (batch.length > 0) {
            const at = Date.now();
            for (const o of batch) {
              const order = JSON.parse(o.value);
              sentAt.set(order.order_id, at);
              if (asking && ips.length < 10_000) ips.push(order.ip_address);
            }
            await send(
              producer,
              topic,
              batch.map((o) => ({ key: keyOf(setup, o), value: o.value })),
            );
            sent += batch.length;
          }
          await sleep(Math.max(0, tickMs - ((Date.now() - started) % tickMs)));
        }
        const behind = Date.now() - started - SECONDS * 1000;
        producing();
        const lookupMs = asking ? await asking : null;
        await drained(runs, topic, total, 10 * 60_000);
        if (lookupMs) {
          const answers = { n: lookupMs.length, p50: pct(lookupMs, 50), p99: pct(lookupMs, 99), max: lookupMs.reduce((a, b) => Math.max(a, b), -Infinity) };
          if (ask === 'plain') control.decisions = answers;
          else decisions = answers;
          await stopRuns(runs);
          await dropTopic(topic);
          continue;
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
        await stopRuns(runs);
        latency.push({
          rate,
          seconds: SECONDS,
          producerBehindMs: behind,
          highValue: { n: hvLat.length, p50: pct(hvLat, 50), p95: pct(hvLat, 95), p99: pct(hvLat, 99), max: hvLat.reduce((a, b) => Math.max(a, b), -Infinity) },
          suspicious: { n: susLat.length, p50: pct(susLat, 50), p99: pct(susLat, 99), max: susLat.reduce((a, b) => Math.max(a, b), -Infinity) },
          msPerBatchByStage: stages,
          maxRssMb: Math.max(...runs.map((r) => Math.max(...r.rss.map((x) => x.mb)))),
        });
        await dropTopic(topic);
      }

      // 3. CPU: idle, then at 15 orders/s.
      const cpuTopic = await newTopic(`bench-cpu-${tag}`);
      schemas.push(schemaOf('cpu'));
      await freshProducer();
      const cpuRuns = startRuns(cpuTopic, schemaOf('cpu'), setup);
      await cpuRuns[0]!.url;
      log(`${setup.name}: idle for ${CPU_SECONDS} s, then 15 orders/s for ${CPU_SECONDS} s`);
      const shares = await idleThenSlow(cpuRuns, producer, cpuTopic, setup);
      await drained(cpuRuns, cpuTopic, 15 * CPU_SECONDS, 5 * 60_000);
      const cpuStages = await stageSeconds(await cpuRuns[0]!.url);
      await stopRuns(cpuRuns);
      await dropTopic(cpuTopic);
      const cpu: CpuRow = { seconds: CPU_SECONDS, ...shares, msPerBatchByStage: cpuStages };
      bySetup.push({ setup: setup.name, throughput, latency, decisions, cpu });
    }

    // 4. Control: the plain consumer, then the same with the per-order rules, idle and
    // at 15 orders/s (the lookup's control figure came with the first setup).
    for (const lane of [false, true]) {
      const tag = `${lane ? 'lane' : 'plain'}-${stamp}`.toLowerCase();
      const controlTopic = await newTopic(`bench-control-${tag}`);
      const controlSchema = `bench_control_${tag.replace(/-/g, '_')}`;
      schemas.push(controlSchema);
      await freshProducer();
      const controlRun = startControl(controlTopic, controlSchema, lane ? `${root}queries` : undefined);
      await controlRun.logged(/(control consumer ready)/);
      log(
        `control: a plain consumer writing to PostgreSQL${lane ? ', running the per-order rules in DuckDB' : ''}, idle for ${CPU_SECONDS} s, then 15 orders/s for ${CPU_SECONDS} s`,
      );
      const shares = await idleThenSlow([controlRun], producer, controlTopic, SETUPS[0]!);
      if (lane) control.laneCpu = shares;
      else control.cpu = shares;
      await stopRuns([controlRun]);
      await dropTopic(controlTopic);
    }
  } finally {
    plain.child?.kill();
    await producer.disconnect();
    for (const s of schemas) await pool.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`).catch(() => {});
    await pool.end();
  }

  const ms = (xs: number[]) => xs.map((x) => String(Math.round(x))).join(' / ');
  const lines = [
    `fraud-sql benchmark, ${results.date}`,
    `machine: ${machine}; broker and PostgreSQL on the same machine; ${PARTITIONS} partitions`,
    'setups: hop = input keyed by order_id, IP rules through the repartition topic; direct = input keyed by IP, read as it is; -xN: N processes',
    ...bySetup.flatMap(({ setup, throughput: t, latency, decisions, cpu }) => [
      '',
      `${setup}: backlog drain: ${ORDERS.toLocaleString('en-US')} orders in ${t.secondsIncludingStartup.toFixed(1)} s = ${t.ordersPerSecond.toLocaleString('en-US')} orders/s (${t.ordersPerSecondAfterFirstCommit === null ? 'one batch' : `${t.ordersPerSecondAfterFirstCommit.toLocaleString('en-US')}/s after the first commit`}), max RSS ${t.maxRssMb} MB`,
      `  ms per batch: ${Object.entries(t.msPerBatchByStage)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}`,
      'rate/s   high-value ms p50 / p95 / p99 / max     burst detection ms p50 / p99 / max   batch orders  max RSS MB',
      ...latency.map(
        (r) =>
          `${String(r.rate).padStart(6)}   ${ms([r.highValue.p50, r.highValue.p95, r.highValue.p99, r.highValue.max]).padEnd(30)}   ${ms([r.suspicious.p50, r.suspicious.p99, r.suspicious.max]).padEnd(28)}   ${String(r.msPerBatchByStage.avgBatchOrders).padStart(11)}  ${r.maxRssMb}`,
      ),
      `decision lookups at ${DECISION_RATE.toLocaleString('en-US')}/s during ${DECISION_ORDER_RATE.toLocaleString('en-US')} orders/s: ${decisions.n!.toLocaleString('en-US')} answers, ms p50 / p99 / max ${[decisions.p50!, decisions.p99!, decisions.max!].map((x) => x.toFixed(2)).join(' / ')}`,
      `cpu (% of one core, all processes): idle ${cpu.idlePercent}, at 15 orders/s ${cpu.at15PerSecondPercent}`,
      `  at 15 orders/s, ms per batch: ${Object.entries(cpu.msPerBatchByStage)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}`,
    ]),
    '',
    'control, the same work without fraud-sql:',
    `  a plain kafkajs consumer writing each batch to PostgreSQL, cpu (% of one core): idle ${control.cpu.idlePercent}, at 15 orders/s ${control.cpu.at15PerSecondPercent}`,
    `  the same, each batch also through the per-order rules in DuckDB (the lane's least work), cpu: idle ${control.laneCpu.idlePercent}, at 15 orders/s ${control.laneCpu.at15PerSecondPercent}`,
    ...(control.decisions.n === undefined
      ? []
      : [
          `  a plain HTTP server answering a constant, asked ${DECISION_RATE.toLocaleString('en-US')} times a second while fraud-sql (${SETUPS[0]!.name}) takes ${DECISION_ORDER_RATE.toLocaleString('en-US')} orders/s: ms p50 / p99 / max ${[control.decisions.p50!, control.decisions.p99!, control.decisions.max!].map((x) => x.toFixed(2)).join(' / ')}`,
        ]),
    '',
    'targets (in brackets: the control):',
    ...bySetup.flatMap((r) =>
      TARGETS.flatMap((target) => {
        const v = target.value(r);
        if (v === undefined || !Number.isFinite(v)) return [];
        const met = target.max !== undefined ? v <= target.max : v >= target.min!;
        const bound = target.max !== undefined ? `<= ${target.max.toLocaleString('en-US')}` : `>= ${target.min!.toLocaleString('en-US')}`;
        const c = target.control?.(control, r);
        const without = c === undefined || !Number.isFinite(c) ? '' : ` (${Math.round(c * 10) / 10})`;
        return [`  ${met ? 'met ' : 'MISS'}  ${r.setup}: ${target.what} ${bound} ${target.unit}: ${Math.round(v * 10) / 10}${without}`];
      }),
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
