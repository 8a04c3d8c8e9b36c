/**
 * Which partition a produced message goes to: the rule of Kafka's Java producer and
 * of kafkajs' DefaultPartitioner (murmur2 of the key), in 32-bit integer arithmetic.
 * kafkajs computes the same hash with a new 64-bit Long object per step, for every
 * message the alert producer (one per high-value order) and the repartition hop
 * (one per order and key) send. The result must stay exactly
 * kafkajs' and Java's: a key moved to another partition of a repartition topic would
 * split its windows across engines, and a topic keyed by a standard producer is read
 * as it is partitioned.
 */
import { randomInt } from 'node:crypto';
import type { ICustomPartitioner } from 'kafkajs';

const M = 0x5bd1e995;
const SEED = 0x9747b28c;

/** Kafka's murmur2 (Utils.murmur2 of the Java client), as a signed 32-bit integer. */
export function murmur2(data: Uint8Array): number {
  const length = data.length;
  let h = SEED ^ length;
  const whole = length & ~3;
  for (let i = 0; i < whole; i += 4) {
    let k = data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24);
    k = Math.imul(k, M);
    k ^= k >>> 24;
    k = Math.imul(k, M);
    h = Math.imul(h, M) ^ k;
  }
  // The last one to three bytes, as Java's switch with fall-through takes them.
  const rest = length & 3;
  if (rest === 3) h ^= data[whole + 2]! << 16;
  if (rest >= 2) h ^= data[whole + 1]! << 8;
  if (rest >= 1) h = Math.imul(h ^ data[whole]!, M);
  h ^= h >>> 13;
  h = Math.imul(h, M);
  h ^= h >>> 15;
  return h | 0;
}

const toPositive = (x: number) => x & 0x7fffffff;

/**
 * kafkajs' DefaultPartitioner, its rules unchanged: the message's own partition if
 * it names one; else the key's murmur2 over all partitions; else round robin over
 * the partitions that have a leader, starting at a random one per topic.
 */
export const KeyPartitioner: ICustomPartitioner = () => {
  const counters = new Map<string, number>();
  return ({ topic, partitionMetadata, message }) => {
    if (message.partition !== null && message.partition !== undefined) return message.partition;
    if (message.key !== null && message.key !== undefined) {
      const key = Buffer.isBuffer(message.key) ? message.key : Buffer.from(String(message.key));
      return toPositive(murmur2(key)) % partitionMetadata.length;
    }
    const next = (counters.get(topic) ?? randomInt(2 ** 32)) + 1;
    counters.set(topic, next);
    const available = partitionMetadata.filter((p) => p.leader >= 0);
    if (available.length > 0) return available[toPositive(next) % available.length]!.partitionId;
    return toPositive(next) % partitionMetadata.length;
  };
};
