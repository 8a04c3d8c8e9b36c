/**
 * The real test bed: the local Kafka broker (scripts/kafka.sh) and PostgreSQL.
 * An end-to-end test starts with `scenario()`: its own topic, consumer group and
 * PostgreSQL schema (dropped afterwards), a deterministic input, the app under test
 * in-process or as the built CLI, and an exact comparison of every output table
 * with the independent oracle (./oracle.ts).
 */
import { randomBytes } from 'node:crypto';
import { cpSync } from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import type { Test } from 'tap';
import { generateOrders, type GeneratorOptions } from '../src/generator/orders.js';
import { entries, oracleOrder, readTables, recompute, type Expected, type OracleOrder } from './oracle.js';
import { Kafka, logLevel, type Producer } from 'kafkajs';
import pg from 'pg';
import { loadConfig, type Config } from '../src/config.js';
import { startRun, type RunningApp } from '../src/commands/run.js';
import { createLogger, silentLogger, type Logger } from '../src/log.js';

export const BROKERS = (process.env.TEST_KAFKA_BROKERS ?? '127.0.0.1:9092').split(',');
export const PG_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export const uniqueName = (prefix: string) => `${prefix}_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
const groupOf = (topic: string) => `g-${topic}`;
/** The repartition topics of the app consuming `topic` start with this (see src/plan.ts). */
const repartitionPrefix = (topic: string) => `${groupOf(topic)}.${topic}-by-`;

type Teardown = (fn: () => Promise<void> | void) => void;

async function kafkaTopic(teardown: Teardown, partitions: number): Promise<string> {
  const topic = uniqueName('orders').replace(/_/g, '-');
  const admin = new Kafka({ clientId: 'fraud-sql-test', brokers: BROKERS, logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  await admin.createTopics({
    topics: [
      { topic, numPartitions: partitions },
      { topic: `${topic}.dlq`, numPartitions: 1 },
    ],
    waitForLeaders: true,
  });
  await admin.disconnect();
  teardown(async () => {
    const a = new Kafka({ clientId: 'fraud-sql-test', brokers: BROKERS, logLevel: logLevel.NOTHING }).admin();
    await a.connect();
    const hops = (await a.listTopics().catch(() => [] as string[])).filter((x) => x.startsWith(repartitionPrefix(topic)));
    await a.deleteTopics({ topics: [topic, `${topic}.dlq`, ...hops] }).catch(() => {});
    await a.disconnect();
  });
  return topic;
}

export async function pgSchema(teardown: Teardown): Promise<{ schema: string; pool: pg.Pool }> {
  const schema = uniqueName('t');
  const pool = new pg.Pool({ connectionString: PG_URL, max: 2, options: `-c search_path=${schema} -c TimeZone=UTC` });
  // Some tests restart PostgreSQL: idle connections then fail, and are replaced.
  pool.on('error', () => {});
  teardown(async () => {
    await pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await pool.end();
  });
  return { schema, pool };
}

async function producer(teardown: Teardown): Promise<Producer> {
  const p = new Kafka({ clientId: 'fraud-sql-test', brokers: BROKERS, logLevel: logLevel.NOTHING }).producer();
  await p.connect();
  teardown(() => p.disconnect());
  return p;
}

export interface TestMessage {
  /** Null: no key, as the original design's producer sends (spread over partitions by the client). */
  key: string | null;
  value: string | Buffer;
  /** The partition to send to; by default the producer picks one from the key. */
  partition?: number;
}

/** What a test producer keys orders by: an order field, or nothing. */
export type KeyBy = 'ip_address' | 'order_id' | 'user_id' | 'none';

/**
 * Produces in chunks, in order (one in-flight request, so per-partition order is kept).
 * Takes any iterable, so a generated backlog is sent as it is generated.
 */
async function produce(p: Producer, topic: string, messages: Iterable<TestMessage>, chunk = 5_000): Promise<void> {
  let batch: TestMessage[] = [];
  const send = () => p.send({ topic, messages: batch.map((m) => ({ key: m.key, value: m.value, partition: m.partition })) });
  for (const m of messages) {
    batch.push(m);
    if (batch.length === chunk) {
      await send();
      batch = [];
    }
  }
  if (batch.length > 0) await send();
}

function testConfig(topic: string, schema: string, extra: Partial<Config> = {}): Readonly<Config> {
  return loadConfig(
    {},
    {},
    {
      brokers: BROKERS,
      topic,
      dlqTopic: `${topic}.dlq`,
      groupId: groupOf(topic),
      databaseUrl: PG_URL,
      pgSchema: schema,
      httpPort: 0,
      decisionsPort: 0,
      ...extra,
    },
  );
}

const testLogger = (): Logger => (process.env.TEST_LOG ? createLogger('debug') : silentLogger);

async function runApp(teardown: Teardown, config: Readonly<Config>): Promise<RunningApp> {
  const app = await startRun(config, testLogger());
  teardown(() => app.stop());
  return app;
}

/** Polls `behind` (what is not done yet) until it is empty, the app fails, or time is up. */
async function until(behind: () => Promise<string[]>, timeoutMs: number, failed: () => unknown = () => null): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = await behind();
    if (left.length === 0) return;
    const err = failed();
    if (err) throw err;
    if (Date.now() > deadline) throw new Error(`not drained after ${timeoutMs} ms: ${left.join(', ')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

type Admin = ReturnType<Kafka['admin']>;

const endOffsets = async (admin: Admin, topic: string) => new Map((await admin.fetchTopicOffsets(topic)).map((o) => [o.partition, BigInt(o.high)]));

const behindOf = (topic: string, ends: ReadonlyMap<number, bigint>, committed: ReadonlyMap<number, bigint>) =>
  [...ends].filter(([p, end]) => end > 0n && (committed.get(p) ?? -1n) < end).map(([p, end]) => `${topic}[${p}]: ${committed.get(p) ?? '-'}/${end}`);

/**
 * Waits until every message produced so far to `topic` is committed by the app:
 * forwarded by the repartition hop (when there is one), then committed by every
 * engine up to the end of the topic it reads.
 */
async function drained(app: RunningApp, topic: string, timeoutMs = Number(process.env.TEST_DRAIN_MS ?? 120_000)): Promise<void> {
  const admin = new Kafka({ clientId: 'fraud-sql-test', brokers: BROKERS, logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  let failed: unknown = null;
  app.done.catch((err) => (failed = err));
  try {
    const hop = app.repartitioner;
    if (hop) {
      const ends = await endOffsets(admin, topic);
      await until(
        async () => behindOf(topic, ends, new Map((await hop.lag()).map((l) => [l.partition, l.committed]))),
        timeoutMs,
        () => failed,
      );
    }
    for (const p of app.pipelines) {
      const ends = await endOffsets(admin, p.plan.topic);
      await until(
        async () => behindOf(p.plan.topic, ends, p.engine.committedOffsets()),
        timeoutMs,
        () => failed,
      );
    }
  } finally {
    await admin.disconnect();
  }
}

type DatasetOptions = Required<Pick<GeneratorOptions, 'seed' | 'rate' | 'startMs' | 'mix'>> & { count: number; keyBy: KeyBy };

/** The message key a producer keying by `keyBy` gives the order (malformed messages keep the generator's key). */
function keyOf(keyBy: KeyBy, generatedKey: string, value: string): string | null {
  if (keyBy === 'none') return null;
  if (keyBy === 'ip_address') return generatedKey;
  try {
    return String((JSON.parse(value) as Record<string, unknown>)[keyBy] ?? generatedKey);
  } catch {
    return generatedKey;
  }
}

/**
 * A seeded generator's messages and the oracle's view of them (every message but the
 * malformed ones), generated on first use. Streamed to the topic, a backlog of
 * millions is never held as messages (2,000,000 of them take 1.2 GB of heap):
 * only the oracle's orders are kept.
 */
class Dataset {
  #messages?: TestMessage[];
  #orders?: OracleOrder[];

  constructor(private readonly opts: DatasetOptions) {}

  get messages(): TestMessage[] {
    return (this.#messages ??= [...this.#generate()]);
  }

  get orders(): OracleOrder[] {
    if (!this.#orders) this.#messages = [...this.#generate()];
    return this.#orders!;
  }

  /** Every message, in order: from memory when generated already, else as it is generated. */
  stream(): Iterable<TestMessage> {
    return this.#messages ?? this.#generate();
  }

  /** The generator is deterministic: each full pass yields the same messages and orders. */
  *#generate(): Generator<TestMessage> {
    const gen = generateOrders(this.opts);
    const orders: OracleOrder[] = [];
    for (let i = 0; i < this.opts.count; i++) {
      const o = gen.next().value!;
      yield { key: keyOf(this.opts.keyBy, o.key, o.value), value: o.value };
      if (o.label === 'malformed') continue;
      orders.push(oracleOrder(JSON.parse(o.value)));
    }
    this.#orders = orders;
  }
}

export const CLI = new URL('../dist/cli.js', import.meta.url).pathname;

export interface RunProcess {
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output: () => string;
}

/** Starts `fraud-sql run` as its own process (the built CLI), as an operator would. */
function spawnRun(t: Test, topic: string, schema: string, env: Record<string, string> = {}): RunProcess {
  const child = spawn('node', [CLI, 'run'], {
    env: {
      ...process.env,
      FRAUD_SQL_BROKERS: BROKERS.join(','),
      FRAUD_SQL_TOPIC: topic,
      FRAUD_SQL_DLQ_TOPIC: `${topic}.dlq`,
      FRAUD_SQL_GROUP: groupOf(topic),
      FRAUD_SQL_DATABASE_URL: PG_URL,
      FRAUD_SQL_PG_SCHEMA: schema,
      FRAUD_SQL_HTTP_PORT: '0',
      FRAUD_SQL_DECISIONS_PORT: '0',
      // The broker's minimum: a killed instance's partitions move on sooner.
      FRAUD_SQL_KAFKA_SESSION_TIMEOUT_MS: '6000',
      FRAUD_SQL_LOG_LEVEL: process.env.TEST_LOG ? 'debug' : 'info',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => {
    out += d;
    if (process.env.TEST_LOG) process.stderr.write(d);
  });
  // 'close', not 'exit': its output is read to the end by then.
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal })),
  );
  t.teardown(async () => {
    // A failure the process caused says why in its own words: its last lines.
    if (!t.passing()) process.stderr.write(`--- last lines of fraud-sql run (${topic}):\n${out.split('\n').slice(-80).join('\n')}\n---\n`);
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  return { child, exited, output: () => out };
}

/**
 * Waits until the input is done with, whichever processes did it: forwarded by the
 * repartition hop (its group's offsets in Kafka) or committed in PostgreSQL by an
 * engine reading it directly; then every repartition topic committed in PostgreSQL.
 */
async function drainedInPg(pool: pg.Pool, topic: string, timeoutMs: number): Promise<void> {
  const admin = new Kafka({ clientId: 'fraud-sql-test', brokers: BROKERS, logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  // The input has two groups in PostgreSQL (the engine reading it directly, if any, and
  // the per-order lane): each is asked on its own.
  const inPg = async (t: string, group?: string) => {
    const rows = await pool
      .query('SELECT kafka_partition, next_offset::text FROM consumer_progress WHERE topic = $1 AND ($2::text IS NULL OR consumer_group = $2)', [
        t,
        group ?? null,
      ])
      .catch(() => ({ rows: [] as { kafka_partition: number; next_offset: string }[] }));
    return new Map(rows.rows.map((r) => [r.kafka_partition as number, BigInt(r.next_offset as string)]));
  };
  const inKafka = async (group: string) => {
    // Just after a broker restart the group coordinator answers "loading" for a while: not yet.
    const r = await admin.fetchOffsets({ groupId: group, topics: [topic] }).catch(() => []);
    return new Map((r[0]?.partitions ?? []).map((p) => [p.partition, BigInt(p.offset)]));
  };
  try {
    const ends = await endOffsets(admin, topic);
    const forwarded = async () => {
      // The per-order lane, once it has started: its own progress on the input.
      const lane = await inPg(topic, `${groupOf(topic)}.per-order`);
      const laneLeft = lane.size > 0 ? behindOf(topic, ends, lane) : [];
      if (laneLeft.length > 0) return laneLeft;
      for (const committed of [await inPg(topic, groupOf(topic)), await inKafka(groupOf(topic)), await inKafka(`${groupOf(topic)}.repartition`)]) {
        const left = behindOf(topic, ends, committed);
        if (left.length === 0) return [];
      }
      return behindOf(topic, ends, await inPg(topic, groupOf(topic)));
    };
    await until(forwarded, timeoutMs);
    for (const hop of (await admin.listTopics()).filter((x) => x.startsWith(repartitionPrefix(topic)))) {
      const hopEnds = await endOffsets(admin, hop);
      await until(async () => behindOf(hop, hopEnds, await inPg(hop)), timeoutMs);
    }
  } finally {
    await admin.disconnect();
  }
}

/** The result tables, and where the oracle keeps each. */
const RESULT_TABLES = {
  popular_products: 'popular',
  suspicious_ips: 'suspicious',
  high_value_orders: 'highValue',
  realtime_stats: 'stats',
  shared_ip_accounts: 'sharedIp',
  // Keyed by user_id: exact whatever the topic is keyed by, through the repartition topic by user_id.
  card_testing: 'cardTesting',
} as const satisfies Record<string, keyof Expected>;
export type ResultTable = keyof typeof RESULT_TABLES;

export interface ScenarioOptions {
  /** Partitions of the topic (its dead-letter topic has one). Default 4. */
  partitions?: number;
  /**
   * A seeded dataset of this many generated messages, produced by `produce()` and
   * compared by `expectExact()`. Without it, the test brings its own messages.
   */
  orders?: number;
  seed?: number;
  /** Orders per second of event time. Default 100. */
  rate?: number;
  /** Event time of the first order. Default: the last one's is about now, so windows and bursts are still open. */
  startMs?: number;
  mix?: GeneratorOptions['mix'];
  /** What the producer keys messages by. Default ip_address (as the generator does). */
  keyBy?: KeyBy;
}

/** One end-to-end scenario: its topic, schema and input, the app under test, the oracle. */
export class Scenario {
  /** The consumer group of the apps started here. */
  readonly group: string;
  #expected?: Expected;

  private constructor(
    private readonly t: Test,
    readonly topic: string,
    readonly schema: string,
    readonly pool: pg.Pool,
    private producer: Producer,
    private readonly data: Dataset | null,
  ) {
    this.group = groupOf(topic);
  }

  static async create(t: Test, opts: ScenarioOptions): Promise<Scenario> {
    const topic = await kafkaTopic(t.teardown, opts.partitions ?? 4);
    const { schema, pool } = await pgSchema(t.teardown);
    let data: Dataset | null = null;
    if (opts.orders !== undefined) {
      if (opts.seed === undefined) throw new Error('a generated dataset needs a seed');
      const rate = opts.rate ?? 100;
      data = new Dataset({
        seed: opts.seed,
        count: opts.orders,
        rate,
        startMs: opts.startMs ?? Date.now() - (opts.orders / rate) * 1000,
        mix: opts.mix ?? { normal: 85, bot: 10, burst: 2, near_miss: 2, high_value: 1 },
        keyBy: opts.keyBy ?? 'ip_address',
      });
    }
    return new Scenario(t, topic, schema, pool, await producer(t.teardown), data);
  }

  #dataset(): Dataset {
    if (!this.data) throw new Error('this scenario has no generated dataset: pass `orders` and `seed` to scenario()');
    return this.data;
  }

  /** Every generated message, in order, malformed ones included. */
  get messages(): TestMessage[] {
    return this.#dataset().messages;
  }

  /** The oracle's input: the generated orders that are valid. */
  get orders(): OracleOrder[] {
    return this.#dataset().orders;
  }

  /** The independent recomputation of `orders`. */
  get expected(): Expected {
    return (this.#expected ??= recompute(this.orders));
  }

  /** Produces `messages`, or by default the whole generated dataset. */
  async produce(messages?: Iterable<TestMessage>): Promise<void> {
    await produce(this.producer, this.topic, messages ?? this.#dataset().stream());
  }

  /** A new producer for what follows: one that lived through a broker stop may hold dead connections. */
  async reconnectProducer(): Promise<void> {
    this.producer = await producer(this.t.teardown);
  }

  /** Starts the pipeline in this process. */
  startApp(config: Partial<Config> = {}): Promise<RunningApp> {
    return runApp(this.t.teardown, testConfig(this.topic, this.schema, config));
  }

  /** Starts `fraud-sql run` as its own process; `env` adds to or overrides its FRAUD_SQL_* settings. */
  startCli(env: Record<string, string> = {}): RunProcess {
    return spawnRun(this.t, this.topic, this.schema, env);
  }

  /** Waits until the in-process `app` has committed every message produced so far. */
  drained(app: RunningApp, timeoutMs?: number): Promise<void> {
    return drained(app, this.topic, timeoutMs);
  }

  /** Waits until PostgreSQL's committed offsets reach the end of every partition, whichever process wrote them. */
  drainedInPg(timeoutMs = 120_000): Promise<void> {
    return drainedInPg(this.pool, this.topic, timeoutMs);
  }

  /**
   * Every result table (or those in `tables`) equals the independent recomputation of
   * `orders` (default: the generated dataset), exactly. `context` ends each message.
   */
  async expectExact(opts: { orders?: readonly OracleOrder[]; tables?: readonly ResultTable[]; context?: string } = {}): Promise<void> {
    const orders = opts.orders ?? this.orders;
    // Both sides empty would agree without proving anything.
    if (orders.length === 0) throw new Error('an exact comparison needs orders to recompute');
    const expected = opts.orders ? recompute(opts.orders) : this.expected;
    const actual = await readTables(this.pool);
    for (const table of opts.tables ?? (Object.keys(RESULT_TABLES) as ResultTable[])) {
      const want: Map<string, unknown> = expected[RESULT_TABLES[table]];
      const got: Map<string, unknown> = actual[RESULT_TABLES[table]];
      this.t.same(
        entries(got),
        entries(want),
        `${table} equals the recomputation${opts.context ? ` ${opts.context}` : ''} (${want.size} ${want.size === 1 ? 'row' : 'rows'})`,
      );
    }
  }
}

/**
 * Settings for an app (`app`) or a CLI process (`cli`) that reads the input
 * directly, with no repartition hop: the built-in rules but the user-keyed one,
 * the input keyed by IP. Its progress is then the engine's, in PostgreSQL, per
 * input offset (through the hop it is the group's offsets in Kafka, which Kafka
 * deletes with the topic; README, Scale out): for tests of offsets themselves.
 */
export function readDirectly(t: Test): { app: Partial<Config>; cli: Record<string, string> } {
  const dir = t.testdir();
  cpSync(new URL('../queries', import.meta.url).pathname, dir, { recursive: true, filter: (f) => !f.includes('card_testing') });
  return { app: { queriesDir: dir, inputKeyedBy: 'ip_address' }, cli: { FRAUD_SQL_QUERIES: dir, FRAUD_SQL_INPUT_KEYED_BY: 'ip_address' } };
}

/** Sets up a scenario for the test `t`; everything it creates is released when `t` ends. */
export const scenario = (t: Test, opts: ScenarioOptions = {}): Promise<Scenario> => Scenario.create(t, opts);
