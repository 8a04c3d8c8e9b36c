/**
 * The one-pass produce request (src/source/produce-encoding.ts) against kafkajs'
 * own encoder, byte for byte: this process never imports kafkajs-fix, so kafkajs'
 * modules here are as released. Random requests cover what the hop and the alerts
 * send (string and Buffer keys and values, tombstones, headers, timestamps or none,
 * many records, large values) and what they do not (transactions, several topics).
 */
import t from 'tap';
import { createRequire } from 'node:module';
import { crc32c, encodeProduceRequest, type ProduceMessage, type ProduceRequest } from '../src/source/produce-encoding.js';

const require = createRequire(import.meta.url);
const kafkajsProduceV3 = require('kafkajs/src/protocol/requests/produce/v3/request.js') as (req: ProduceRequest) => {
  encode(): Promise<{ buffer: Buffer }>;
};
const kafkajsCrc32C = require('kafkajs/src/protocol/recordBatch/crc32C/index.js') as (b: Buffer) => number;
const Long = require('kafkajs/src/utils/long.js') as { fromValue(v: unknown): unknown };

const NOW = 1_795_856_752_022;

/** kafkajs' bytes for `req`, its clock at NOW (it reads Date.now() as it encodes). */
async function kafkajsBytes(req: ProduceRequest): Promise<Buffer> {
  const realNow = Date.now;
  Date.now = () => NOW;
  try {
    return (await kafkajsProduceV3(req).encode()).buffer;
  } finally {
    Date.now = realNow;
  }
}

/** A small seeded generator (mulberry32): the same cases every run. */
function random(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), a | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32;
  };
  const int = (n: number) => Math.floor(next() * n);
  const text = (max: number) => {
    const alphabet = ['a', 'Z', '9', ' ', '"', '<', '\u00e9', '\u4e2d', '\ud83d\ude00', '\n', '\u0000'];
    let s = '';
    for (let i = int(max + 1); i > 0; i--) s += alphabet[int(alphabet.length)];
    return s;
  };
  const bytes = (max: number) => (int(2) === 0 ? text(max) : Buffer.from(Array.from({ length: int(max + 1) }, () => int(256))));
  return { next, int, text, bytes };
}

function randomMessage(r: ReturnType<typeof random>): ProduceMessage {
  const m: ProduceMessage = {
    key: r.int(5) === 0 ? null : r.bytes(20),
    value: r.int(8) === 0 ? null : r.bytes(r.int(10) === 0 ? 20_000 : 600),
  };
  if (r.int(2) === 0) m.timestamp = NOW - 3_600_000 + r.int(7_200_000);
  if (m.timestamp !== undefined && r.int(2) === 0) m.timestamp = String(m.timestamp);
  if (r.int(2) === 0) {
    const headers: Record<string, string | Buffer | (string | Buffer)[]> = {};
    for (let h = r.int(4); h > 0; h--) headers[r.text(8)] = r.int(4) === 0 ? [r.bytes(10), r.bytes(10)] : r.bytes(30);
    m.headers = headers;
  }
  return m;
}

t.test('CRC-32C: the same as kafkajs for every length and start', async (t) => {
  const r = random(1);
  const buf = Buffer.from(Array.from({ length: 4_200 }, () => r.int(256)));
  let same = 0;
  for (const [start, end] of [
    [0, 0],
    [0, 1],
    [3, 10],
    [5, 13],
    [0, 4_200],
    [17, 4_111],
  ] as const) {
    t.equal(crc32c(buf, start, end), kafkajsCrc32C(buf.subarray(start, end)), `bytes ${start} to ${end}`);
    same++;
  }
  for (let n = 0; n < 64; n++) if (crc32c(buf, 100, 100 + n) === kafkajsCrc32C(buf.subarray(100, 100 + n))) same++;
  t.equal(same, 6 + 64);
  // The check value of CRC-32C (RFC 3720): "123456789".
  t.equal(crc32c(Buffer.from('123456789')), 0xe3069283);
});

t.test('random requests: the same bytes as kafkajs', async (t) => {
  const r = random(7);
  for (let c = 0; c < 60; c++) {
    const topicData: ProduceRequest['topicData'] = [];
    for (let tp = 1 + (c % 3 === 0 ? r.int(3) : 0); tp > 0; tp--) {
      const partitions = [];
      for (let p = 1 + r.int(4); p > 0; p--) {
        const count = r.int(10) === 0 ? 300 : 1 + r.int(40);
        partitions.push({
          partition: r.int(64),
          firstSequence: r.int(3) === 0 ? undefined : r.int(2 ** 31),
          messages: Array.from({ length: count }, () => randomMessage(r)),
        });
      }
      topicData.push({ topic: `orders.${r.text(6)}`, partitions });
    }
    const req: ProduceRequest = {
      acks: [-1, 0, 1][r.int(3)]!,
      timeout: 30_000,
      transactionalId: c % 4 === 0 ? `tx-${r.text(5)}` : c % 4 === 1 ? null : undefined,
      producerId: c % 2 === 0 ? Long.fromValue(String(r.int(2 ** 40))) : undefined,
      producerEpoch: c % 2 === 0 ? r.int(100) : undefined,
      topicData,
    };
    const mine = encodeProduceRequest(req, NOW);
    if (mine === null) {
      t.fail(`case ${c}: not encoded`);
      continue;
    }
    const theirs = await kafkajsBytes(req);
    if (!mine.equals(theirs)) t.fail(`case ${c}: bytes differ (${mine.length} against ${theirs.length})`);
  }
  t.pass('60 requests compared');
});

t.test('edge cases: the same bytes as kafkajs', async (t) => {
  const one = (messages: ProduceMessage[], extra: Partial<ProduceRequest> = {}): ProduceRequest => ({
    acks: -1,
    timeout: 30_000,
    topicData: [{ topic: 'orders', partitions: [{ partition: 0, messages }] }],
    ...extra,
  });
  const cases: [string, ProduceRequest][] = [
    ['no messages', one([])],
    [
      'a timestamp as a number, one as a string, one missing',
      one([{ value: 'a', timestamp: NOW - 5 }, { value: 'b', timestamp: String(NOW + 5) }, { value: 'c' }]),
    ],
    [
      'timestamps whose string order is not their numeric order',
      one([
        { value: 'a', timestamp: '999' },
        { value: 'b', timestamp: '1000' },
      ]),
    ],
    ['a timestamp of 0 stands for none', one([{ value: 'a', timestamp: 0 }])],
    ['an empty transactional id is no transaction', one([{ value: 'a' }], { transactionalId: '' })],
    ['an empty key and value', one([{ key: '', value: Buffer.alloc(0) }])],
    ['a 200,000-byte value (three-byte length)', one([{ key: 'k', value: 'x'.repeat(200_000) }])],
    ['more than 64 records (two-byte offset deltas)', one(Array.from({ length: 200 }, (_, i) => ({ key: `k${i}`, value: `v${i}` })))],
    [
      'lone surrogates in key, value, header and transactional id (written as U+FFFD)',
      one([{ key: 'a\ud800', value: '\udc00b', headers: { '\ud83d': '\ude00' } }], { transactionalId: 'tx\ud800' }),
    ],
    [
      'a producer id as a bigint, epoch and sequence of null',
      {
        ...one([{ value: 'a' }], { producerId: 2n ** 40n, producerEpoch: null as unknown as number }),
        topicData: [{ topic: 'orders', partitions: [{ partition: 3, firstSequence: null as unknown as number, messages: [{ value: 'a' }] }] }],
      },
    ],
    ['a producer id as a number', one([{ value: 'a' }], { producerId: 12_345 })],
    ['a mark with no key and no value, only headers', one([{ key: null, value: null, headers: { origin: '0:12', idle: 'true' } }])],
  ];
  for (const [name, req] of cases) {
    const mine = encodeProduceRequest(req, NOW);
    t.ok(mine?.equals(await kafkajsBytes(req)), name);
  }
});

t.test('what it does not write is left to kafkajs', async (t) => {
  const one = (m: ProduceMessage, extra: Partial<ProduceRequest> = {}): ProduceRequest => ({
    acks: -1,
    timeout: 30_000,
    topicData: [{ topic: 'orders', partitions: [{ partition: 0, messages: [m] }] }],
    ...extra,
  });
  t.equal(encodeProduceRequest(one({ value: 'a' }, { compression: 1 }), NOW), null, 'a compressed request');
  t.equal(encodeProduceRequest(one({ key: 42, value: 'a' }), NOW), null, 'a key that is a number');
  t.equal(encodeProduceRequest(one({ value: { a: 1 } }), NOW), null, 'a value that is an object');
  t.equal(encodeProduceRequest(one({ value: 'a', headers: { h: 7 } }), NOW), null, 'a header value that is a number');
  t.equal(encodeProduceRequest(one({ value: 'a', timestamp: '12.5' }), NOW), null, 'a timestamp with a fraction');
  t.equal(encodeProduceRequest(one({ value: 'a' }, { producerId: null }), NOW), null, 'a producer id of null');
  t.equal(encodeProduceRequest(one({ value: 'a' }, { producerId: '9223372036854775808' }), NOW), null, 'a producer id past 64 bits');
  t.equal(encodeProduceRequest(one({ value: 'a' }, { compression: null as unknown as number }), NOW), null, 'a compression of null');
  t.equal(encodeProduceRequest(one({ value: 'a', headers: null }), NOW), null, 'headers of null');
  class Message {
    get value() {
      return 'a';
    }
  }
  t.equal(encodeProduceRequest(one(new Message()), NOW), null, 'a message that is not a plain object');
});
