/**
 * The key partitioner (src/source/partitioner.ts) must place every key where Kafka's
 * Java producer and kafkajs' DefaultPartitioner place it: checked against the
 * Java client's own test vectors and against kafkajs' implementation on random keys.
 */
import t from 'tap';
import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import { Partitioners, type PartitionerArgs } from 'kafkajs';
import { KeyPartitioner, murmur2 } from '../src/source/partitioner.js';

const require = createRequire(import.meta.url);
const kafkajsMurmur2 = require('kafkajs/src/producer/partitioners/default/murmur2.js') as (key: Buffer | string) => number;

t.test('murmur2 gives the Java client test vectors (UtilsTest.testMurmur2)', async (t) => {
  const cases: [string, number][] = [
    ['21', -973932308],
    ['foobar', -790332482],
    ['a-little-bit-long-string', -985981536],
    ['a-little-bit-longer-string', -1486304829],
    ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
    ['abc', 479470107],
  ];
  for (const [key, hash] of cases) t.equal(murmur2(Buffer.from(key)), hash, key);
});

t.test('murmur2 equals kafkajs on random keys of every length remainder, multibyte text included', async (t) => {
  let checked = 0;
  for (let length = 0; length <= 70; length++) {
    for (let i = 0; i < 30; i++) {
      const key = randomBytes(length);
      if (murmur2(key) !== kafkajsMurmur2(key)) t.fail(`differs for ${key.toString('hex')}`);
      checked++;
    }
  }
  for (const text of ['주문-1234', '192.168.0.1', 'ORD1795810659852000001', '\u{1F600}x', '']) t.equal(murmur2(Buffer.from(text)), kafkajsMurmur2(text), text);
  t.equal(checked, 71 * 30);
});

t.test('messages land on the partitions kafkajs DefaultPartitioner picks', async (t) => {
  const partitionMetadata = Array.from({ length: 7 }, (_, i) => ({ partitionId: i, leader: 1, replicas: [1], isr: [1], partitionErrorCode: 0 }));
  const ours = KeyPartitioner();
  const theirs = Partitioners.DefaultPartitioner();
  const args = (message: PartitionerArgs['message']): PartitionerArgs => ({ topic: 'orders', partitionMetadata, message });
  for (let i = 0; i < 2_000; i++) {
    const key = i % 2 === 0 ? `user-${i}` : randomBytes(i % 40);
    t.equal(ours(args({ key, value: 'v' })), theirs(args({ key, value: 'v' })), String(key));
  }
  t.equal(ours(args({ key: 'k', value: 'v', partition: 5 })), 5, 'a message naming its partition keeps it');
});

t.test('messages without a key go round robin over the partitions with a leader', async (t) => {
  const partitionMetadata = [0, 1, 2, 3].map((i) => ({ partitionId: i, leader: i === 2 ? -1 : 1, replicas: [1], isr: [1], partitionErrorCode: 0 }));
  const pick = KeyPartitioner();
  const seen = Array.from({ length: 6 }, () => pick({ topic: 'orders', partitionMetadata, message: { key: null, value: 'v' } }));
  t.notOk(seen.includes(2), 'the partition without a leader is skipped');
  t.same(new Set(seen), new Set([0, 1, 3]), 'the others take turns');
  t.not(seen[0], seen[1]);
});
