/**
 * Input from every real producer: record batches compressed with each codec Kafka
 * has, written by librdkafka (kcat) and by the Java client, run through the
 * pipeline and compared exactly with the recomputation. And the
 * generator's own compressed output, read back by kafkajs and by librdkafka.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import kafkajs from 'kafkajs';
import { COMPRESSIONS, compressionType } from '../src/source/codecs.js';
import { generateOrders } from '../src/generator/orders.js';
import { BROKERS, scenario, uniqueName } from './helpers.js';

const { CompressionCodecs, Kafka, logLevel } = kafkajs;
const CODECS = COMPRESSIONS.filter((c) => c !== 'none');
const KAFKA_SH = new URL('../scripts/kafka.sh', import.meta.url).pathname;
const CLI = new URL('../dist/cli.js', import.meta.url).pathname;

function run(command: string, args: string[], input?: string): string {
  const r = spawnSync(command, args, { input, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.error) throw new Error(`${command} is needed for this test: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${command} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

const kcat = (args: string[], input?: string) => run('kcat', ['-b', BROKERS.join(','), ...args], input);

/** Each writes "key<TAB>value" lines to a topic as one real client does. */
const PRODUCERS: Record<string, (topic: string, codec: string, lines: string) => void> = {
  // librdkafka, as C, Go, Python and .NET producers use it (apt-get install kcat).
  kcat: (topic, codec, lines) => kcat(['-P', '-t', topic, '-z', codec, '-K', '\t'], lines),
  // The Java client, which frames snappy and streams lz4 and zstd its own way.
  'the Java client': (topic, codec, lines) =>
    run(
      KAFKA_SH,
      [
        'tool',
        'org.apache.kafka.tools.ConsoleProducer',
        '--bootstrap-server',
        BROKERS.join(','),
        '--topic',
        topic,
        '--compression-codec',
        codec,
        '--property',
        'parse.key=true',
        '--property',
        'key.separator=\t',
      ],
      lines,
    ),
};

for (const [producer, produce] of Object.entries(PRODUCERS)) {
  for (const codec of CODECS) {
    t.test(`${codec} from ${producer}: orders keyed by order_id give exact results`, async (t) => {
      // One partition: the codec is under test here. Keyed by order_id over several
      // partitions, one IP's orders are split between them, and bursts are still
      // found per partition (no repartitioning by rule key yet).
      const s = await scenario(t, { partitions: 1, orders: 4_000, seed: 31, rate: 100, startMs: Date.now() - 60_000 });
      // One message a line: JSON.stringify never writes a raw tab or newline.
      produce(s.topic, codec, s.messages.map((m) => `${JSON.parse(String(m.value)).order_id}\t${m.value}\n`).join(''));
      // The built CLI in its own process: only the codecs the program itself registers count.
      const fraudSql = s.startCli();
      // 4,000 orders drain in seconds; a partition the consumer cannot decode never drains.
      await s.drainedInPg(60_000).catch((err: Error) => {
        throw new Error(`${err.message}; fraud-sql said:\n${fraudSql.output()}`);
      });
      await s.expectExact();
      const { rows } = await s.pool.query('SELECT count(*)::int AS n FROM dead_letters');
      t.equal(rows[0].n, 0, 'no dead letters');
      fraudSql.child.kill('SIGTERM');
      t.same(await fraudSql.exited, { code: 0, signal: null }, 'a clean stop');
    });
  }
}

t.test('the generator compresses with each codec; kafkajs and librdkafka read it back', async (t) => {
  const kafka = new Kafka({ clientId: 'fraud-sql-test', brokers: BROKERS, logLevel: logLevel.NOTHING });
  for (const codec of CODECS) {
    const topic = uniqueName(`gen-${codec}`).replace(/_/g, '-');
    t.teardown(async () => {
      const admin = kafka.admin();
      await admin.connect();
      await admin.deleteTopics({ topics: [topic] }).catch(() => {});
      await admin.disconnect();
    });
    const start = new Date(Date.now() - 60_000).toISOString();
    // The command a user runs: `fraud-sql generate --compression <codec>`.
    run('node', [
      CLI,
      'generate',
      '--brokers',
      BROKERS.join(','),
      '--topic',
      topic,
      '--seed',
      '7',
      '--rate',
      '50',
      '--start',
      start,
      '--count',
      '500',
      '--fast',
      '--compression',
      codec,
    ]);
    const gen = generateOrders({ seed: 7, rate: 50, startMs: Date.parse(start) });
    const sent = Array.from({ length: 500 }, () => gen.next().value!.value).sort();

    // Counting the codec's calls shows the batches really are compressed with it.
    const registered = CompressionCodecs[compressionType(codec) as 1 | 2 | 3 | 4]();
    const decompress = registered.decompress;
    let batches = 0;
    registered.decompress = (buffer: Buffer) => {
      batches++;
      return decompress.call(registered, buffer);
    };
    const consumer = kafka.consumer({ groupId: `g-${topic}` });
    const read: string[] = [];
    try {
      await consumer.connect();
      await consumer.subscribe({ topic, fromBeginning: true });
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${codec}: read ${read.length} of ${sent.length}`)), 30_000);
        void consumer.run({
          eachMessage: async ({ message }) => {
            read.push(String(message.value));
            if (read.length === sent.length) {
              clearTimeout(timer);
              resolve();
            }
          },
        });
      });
    } finally {
      registered.decompress = decompress;
      await consumer.disconnect();
    }
    t.same(read.sort(), sent, `${codec}: kafkajs reads every order`);
    t.ok(batches > 0, `${codec}: ${batches} batches decompressed with ${codec}`);
    const viaLibrdkafka = kcat(['-C', '-t', topic, '-e', '-q', '-f', '%s\n']).split('\n').filter(Boolean).sort();
    t.same(viaLibrdkafka, sent, `${codec}: librdkafka reads every order`);
  }
});
