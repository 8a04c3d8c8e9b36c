/**
 * The record-batch compression codecs kafkajs leaves out. kafkajs ships gzip
 * only; a batch compressed with anything else makes its consumer throw on every
 * fetch of that partition, so one producer set to snappy, lz4 or zstd would stop
 * the stream. Importing this module registers all three, for every kafkajs client
 * in the process (the registry is global), consumer and producer alike.
 *
 * The libraries are napi-rs builds whose binaries come as per-platform npm
 * packages: nothing is compiled or downloaded at install time. Each is loaded on
 * the first batch that needs it: loaded up front, they cost a process that only
 * ever sees uncompressed input measurable time per batch (`npm run bench`, 1,000
 * orders/s: p50 372-381 ms without them loaded, 390-445 ms with).
 */
import { createRequire } from 'node:module';
import kafkajs, { type CompressionTypes as CompressionType } from 'kafkajs';

const require = createRequire(import.meta.url);
function loadOnce<T>(load: () => T): () => T {
  let loaded: T | undefined;
  return () => (loaded ??= load());
}
const zstdLib = loadOnce(() => require('@mongodb-js/zstd') as typeof import('@mongodb-js/zstd'));
const lz4Lib = loadOnce(() => require('lz4-napi') as typeof import('lz4-napi'));
const snappyLib = loadOnce(() => require('snappy') as typeof import('snappy'));

// kafkajs is CommonJS and Node cannot see these two as named exports.
const { CompressionCodecs, CompressionTypes } = kafkajs;

/** kafkajs hands `compress` its encoder, of which only the bytes matter. */
interface Codec {
  compress(encoder: { buffer: Buffer }): Promise<Buffer>;
  decompress(buffer: Buffer): Promise<Buffer>;
}

/** Java producers (snappy-java) frame snappy blocks: this header, then [int32 length][block]... */
const XERIAL_MAGIC = Buffer.from([0x82, 0x53, 0x4e, 0x41, 0x50, 0x50, 0x59, 0x00]);
/** The magic plus two int32 versions. */
const XERIAL_HEADER_BYTES = 16;

async function unsnappy(buffer: Buffer): Promise<Buffer> {
  const raw = (b: Buffer) => snappyLib().uncompress(b, { asBuffer: true }) as Promise<Buffer>;
  // librdkafka and kafkajs send one raw block; only the Java client frames.
  if (buffer.length < XERIAL_HEADER_BYTES || !buffer.subarray(0, XERIAL_MAGIC.length).equals(XERIAL_MAGIC)) return raw(buffer);
  const blocks: Promise<Buffer>[] = [];
  for (let at = XERIAL_HEADER_BYTES; at < buffer.length;) {
    const size = buffer.readUInt32BE(at);
    at += 4;
    blocks.push(raw(buffer.subarray(at, at + size)));
    at += size;
  }
  return Buffer.concat(await Promise.all(blocks));
}

// A raw block, as librdkafka sends: every Kafka client reads it (snappy-java falls back to raw).
const snappy: Codec = { compress: ({ buffer }) => snappyLib().compress(buffer), decompress: unsnappy };
// The LZ4 frame format with independent blocks (the lz4_flex default), as Kafka specifies.
const lz4: Codec = { compress: ({ buffer }) => lz4Lib().compressFrame(buffer), decompress: (buffer) => lz4Lib().decompressFrame(buffer) };
// Level 3: zstd's own default, as in the Java client and librdkafka.
const zstd: Codec = { compress: ({ buffer }) => zstdLib().compress(buffer, 3), decompress: (buffer) => zstdLib().decompress(buffer) };

CompressionCodecs[CompressionTypes.Snappy] = () => snappy;
CompressionCodecs[CompressionTypes.LZ4] = () => lz4;
CompressionCodecs[CompressionTypes.ZSTD] = () => zstd;

/** What a producer may compress with, by the names Kafka's own clients use. */
export const COMPRESSIONS = ['none', 'gzip', 'snappy', 'lz4', 'zstd'] as const;
export type Compression = (typeof COMPRESSIONS)[number];

export function compressionType(c: Compression): CompressionType {
  return { none: CompressionTypes.None, gzip: CompressionTypes.GZIP, snappy: CompressionTypes.Snappy, lz4: CompressionTypes.LZ4, zstd: CompressionTypes.ZSTD }[
    c
  ];
}
