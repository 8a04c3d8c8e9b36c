/**
 * Where generated orders go: a Kafka topic (key = IP, batched, acks from all
 * replicas, optionally compressed) or JSON lines to a file or stdout. Each output
 * is opened before the first order is made, so a bad destination fails fast with
 * one message.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import { Kafka, logLevel, type Producer } from 'kafkajs';
import { KeyPartitioner } from '../source/partitioner.js';
import { FraudSqlError } from '../errors.js';
import { compressionType, type Compression } from '../source/codecs.js';
import type { GeneratedOrder } from './orders.js';

export interface OrderOutput {
  write(chunk: readonly GeneratedOrder[]): Promise<void>;
  close(): Promise<void>;
  errors: number;
}

export interface KafkaOutputOptions {
  /** Record-batch compression, to feed the consumer what real producers send (default none). */
  compression?: Compression;
}

export async function kafkaOutput(brokers: string[], topic: string, { compression = 'none' }: KafkaOutputOptions = {}): Promise<OrderOutput> {
  const kafka = new Kafka({
    clientId: 'fraud-sql-generate',
    brokers,
    logLevel: logLevel.NOTHING,
    retry: { retries: 2, initialRetryTime: 300 },
    connectionTimeout: 3_000,
  });
  const producer: Producer = kafka.producer({ createPartitioner: KeyPartitioner, allowAutoTopicCreation: true });
  try {
    await producer.connect();
  } catch (err) {
    throw new FraudSqlError('KAFKA_UNREACHABLE', `cannot reach Kafka at ${brokers.join(',')} (${(err as Error).message})`, { cause: err });
  }
  const out: OrderOutput = {
    errors: 0,
    async write(chunk) {
      try {
        await producer.send({ topic, acks: -1, compression: compressionType(compression), messages: chunk.map((o) => ({ key: o.key, value: o.value })) });
      } catch {
        out.errors += chunk.length;
      }
    },
    close: () => producer.disconnect(),
  };
  return out;
}

export async function lineOutput(path: string): Promise<OrderOutput> {
  let stream: WriteStream | NodeJS.WriteStream;
  if (path === '-') stream = process.stdout;
  else {
    const file = createWriteStream(path, { flags: 'w' });
    try {
      await once(file, 'open');
    } catch (err) {
      throw new FraudSqlError('INPUT_INVALID', `cannot write ${path}: ${(err as Error).message}`, { cause: err });
    }
    stream = file;
  }
  return {
    errors: 0,
    async write(chunk) {
      const ok = stream.write(chunk.map((o) => o.value + '\n').join(''));
      if (!ok) await once(stream, 'drain');
    },
    async close() {
      if (stream !== process.stdout) await new Promise<void>((r) => (stream as WriteStream).end(r));
    },
  };
}
