/**
 * A Kafka produce request (versions 3-7: one record batch, magic 2, per partition)
 * written in one pass into one buffer: the bytes kafkajs 2.2.4 writes, for what
 * fraud-sql sends uncompressed (the repartition hop, one copy per order and key; the
 * alerts, one per detection). kafkajs builds each record in an encoder of its own
 * that starts at 512 zeroed bytes and grows by copying, turns every varint into a
 * new Buffer and computes the CRC a byte at a time; profiled while draining a
 * 100,000-order backlog through the hop, its allocations, request and record
 * encoders and CRC took 1.1 s of the JavaScript thread (a standalone producer: 16-20
 * µs of CPU per message, 4-5 with this). kafkajs-fix.ts installs this in place of
 * kafkajs' own encoder; anything it does not cover (compression, a header or key
 * that is not a string or a Buffer, a timestamp that is not a whole number of
 * milliseconds, a message that is not a plain object) is left to kafkajs, with its
 * bytes or its error.
 */

/** A message as kafkajs' producer takes it. */
export interface ProduceMessage {
  key?: unknown;
  value?: unknown;
  timestamp?: unknown;
  headers?: unknown;
}

export interface ProduceRequest {
  transactionalId?: string | null;
  acks: number;
  timeout: number;
  /** kafkajs' Long, a bigint, a number or a decimal string; -1 outside an idempotent producer. */
  producerId?: unknown;
  producerEpoch?: number;
  compression?: number;
  topicData: { topic: string; partitions: { partition: number; firstSequence?: number; messages: ProduceMessage[] }[] }[];
}

/** CRC-32C (Castagnoli), as Kafka checks a record batch: eight bytes a step (slicing-by-8). */
const CRC_TABLE = (() => {
  const t = new Int32Array(8 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[n] = c;
  }
  for (let n = 0; n < 256; n++) {
    let c = t[n]!;
    for (let k = 1; k < 8; k++) {
      c = t[c & 0xff]! ^ (c >>> 8);
      t[k * 256 + n] = c;
    }
  }
  return t;
})();

export function crc32c(buf: Uint8Array, start = 0, end = buf.length): number {
  const t = CRC_TABLE;
  let crc = ~0;
  let i = start;
  for (; i + 8 <= end; i += 8) {
    crc ^= buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24);
    crc =
      t[1792 + (crc & 0xff)]! ^
      t[1536 + ((crc >>> 8) & 0xff)]! ^
      t[1280 + ((crc >>> 16) & 0xff)]! ^
      t[1024 + (crc >>> 24)]! ^
      t[768 + buf[i + 4]!]! ^
      t[512 + buf[i + 5]!]! ^
      t[256 + buf[i + 6]!]! ^
      t[buf[i + 7]!]!;
  }
  for (; i < end; i++) crc = t[(crc ^ buf[i]!) & 0xff]! ^ (crc >>> 8);
  return ~crc >>> 0;
}

/** A key, value or header as bytes to write; undefined: not one this encoder writes. */
type Bytes = Buffer | string | null;

function bytesOf(v: unknown): Bytes | undefined {
  if (v === null || v === undefined) return null;
  if (typeof v === 'string' || Buffer.isBuffer(v)) return v;
  return undefined;
}

const byteLength = (b: Buffer | string) => (typeof b === 'string' ? Buffer.byteLength(b) : b.length);

/** Bytes of an unsigned varint of `u` (0 <= u < 2^53). */
function uvarintSize(u: number): number {
  let n = 1;
  while (u >= 128) {
    u = Math.floor(u / 128);
    n++;
  }
  return n;
}

/** Zigzag: small negative numbers as small unsigned ones, exactly for |v| < 2^52. */
const zigzag = (v: number) => (v >= 0 ? v * 2 : -v * 2 - 1);

/** The whole-millisecond timestamp kafkajs would write for `v`, or undefined. */
function millis(v: unknown): number | undefined {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^-?\d{1,15}$/.test(v) ? Number(v) : NaN;
  return Number.isSafeInteger(n) ? n : undefined;
}

/** A signed 64-bit integer from what kafkajs' Long takes; undefined outside its range (kafkajs would wrap it). */
function int64Of(v: unknown): bigint | undefined {
  let n: bigint | undefined;
  if (typeof v === 'bigint') n = v;
  else if (typeof v === 'number') n = Number.isSafeInteger(v) ? BigInt(v) : undefined;
  else if (typeof v === 'string') n = /^-?\d+$/.test(v) ? BigInt(v) : undefined;
  // kafkajs' Long holds a bigint.
  else if (v !== null && typeof v === 'object' && typeof (v as { value?: unknown }).value === 'bigint') n = (v as { value: bigint }).value;
  return n !== undefined && n === BigInt.asIntN(64, n) ? n : undefined;
}

interface PlannedRecord {
  delta: number;
  key: Bytes;
  value: Bytes;
  headers: [string, Buffer | string][];
  bodySize: number;
}

interface PlannedPartition {
  partition: number;
  firstSequence: number;
  firstTimestamp: number;
  maxTimestamp: number;
  records: PlannedRecord[];
  /** The batch from its partition leader epoch to its end. */
  batchSize: number;
}

/**
 * One partition's records as kafkajs lays them out: its timestamps are the
 * messages' own (sorted as kafkajs sorts them, as strings), else `now`; each record
 * carries its time relative to the first. Undefined when a message has something
 * this encoder does not write.
 */
function planPartition(p: { partition: number; firstSequence?: number; messages: ProduceMessage[] }, now: number): PlannedPartition | undefined {
  const stamps = p.messages.map((m) => m.timestamp).filter((s) => s !== null && s !== undefined);
  // Array.prototype.sort compares as strings, as kafkajs does: kept for the same bytes.
  stamps.sort();
  const first = millis(stamps.length > 0 ? stamps[0] : now);
  const max = millis(stamps.length > 0 ? stamps[stamps.length - 1] : now);
  if (first === undefined || max === undefined) return undefined;
  const records: PlannedRecord[] = [];
  let recordsSize = 0;
  for (let i = 0; i < p.messages.length; i++) {
    const m = p.messages[i]!;
    // kafkajs copies a message with `...`, own properties only: a class instance's getters would read differently.
    const proto = Object.getPrototypeOf(m) as unknown;
    if (proto !== Object.prototype && proto !== null) return undefined;
    // `||` as kafkajs: a timestamp of 0 (the number) stands for none.
    const at = millis(m.timestamp || now);
    const key = bytesOf(m.key);
    const value = bytesOf(m.value);
    if (at === undefined || key === undefined || value === undefined) return undefined;
    const delta = at - first;
    if (Math.abs(delta) >= 2 ** 52) return undefined;
    const headers: [string, Buffer | string][] = [];
    if (m.headers !== undefined) {
      // kafkajs fails on headers of null; its error is left to it.
      if (m.headers === null || typeof m.headers !== 'object') return undefined;
      for (const [name, v] of Object.entries(m.headers)) {
        for (const one of Array.isArray(v) ? v : [v]) {
          // kafkajs measures a header value before looking at it: a null one fails there.
          if (typeof one !== 'string' && !Buffer.isBuffer(one)) return undefined;
          headers.push([name, one]);
        }
      }
    }
    let bodySize = 1 + uvarintSize(zigzag(delta)) + uvarintSize(zigzag(i)) + bytesSize(key) + bytesSize(value) + uvarintSize(zigzag(headers.length));
    for (const [name, v] of headers) bodySize += bytesSize(name) + bytesSize(v);
    records.push({ delta, key, value, headers, bodySize });
    recordsSize += uvarintSize(zigzag(bodySize)) + bodySize;
  }
  // Leader epoch, magic, CRC; then attributes ... first sequence (36 bytes) and the record count.
  const batchSize = 4 + 1 + 4 + 36 + 4 + recordsSize;
  return { partition: p.partition, firstSequence: p.firstSequence ?? 0, firstTimestamp: first, maxTimestamp: max, records, batchSize };
}

function bytesSize(b: Bytes): number {
  if (b === null) return 1;
  const n = byteLength(b);
  return uvarintSize(zigzag(n)) + n;
}

/**
 * The produce request's body (what follows the request header), or null when the
 * request has something this encoder leaves to kafkajs. `now`: the time of messages
 * without one (kafkajs takes Date.now() as it encodes).
 */
export function encodeProduceRequest(req: ProduceRequest, now: number): Buffer | null {
  // kafkajs takes a missing compression for none, and compresses (or fails) with any other value.
  if (req.compression !== undefined && req.compression !== 0) return null;
  const producerId = req.producerId === undefined ? -1n : int64Of(req.producerId);
  if (producerId === undefined) return null;
  const id = req.transactionalId ?? null;
  const topics: { topic: string; partitions: PlannedPartition[] }[] = [];
  let size = (id === null ? 2 : 2 + Buffer.byteLength(id)) + 2 + 4 + 4;
  for (const t of req.topicData) {
    const partitions: PlannedPartition[] = [];
    size += 2 + Buffer.byteLength(t.topic) + 4;
    for (const p of t.partitions) {
      const planned = planPartition(p, now);
      if (!planned) return null;
      partitions.push(planned);
      // Partition, record set size, base offset, batch length; then the batch.
      size += 4 + 4 + 8 + 4 + planned.batchSize;
    }
    topics.push({ topic: t.topic, partitions });
  }

  const out = Buffer.allocUnsafe(size);
  let at = 0;
  const u8 = (v: number) => {
    out[at++] = v;
  };
  const i16 = (v: number) => {
    at = out.writeInt16BE(v, at);
  };
  const i32 = (v: number) => {
    at = out.writeInt32BE(v, at);
  };
  const i64 = (v: bigint) => {
    at = out.writeBigInt64BE(v, at);
  };
  const uvarint = (u: number) => {
    while (u >= 128) {
      out[at++] = (u % 128) | 128;
      u = Math.floor(u / 128);
    }
    out[at++] = u;
  };
  const varint = (v: number) => uvarint(zigzag(v));
  const str16 = (s: string) => {
    const n = Buffer.byteLength(s);
    i16(n);
    at += out.write(s, at, n, 'utf8');
  };
  const varBytes = (b: Bytes) => {
    if (b === null) return varint(-1);
    if (typeof b === 'string') {
      const n = Buffer.byteLength(b);
      varint(n);
      at += out.write(b, at, n, 'utf8');
    } else {
      varint(b.length);
      at += b.copy(out, at);
    }
  };

  if (id === null) i16(-1);
  else str16(id);
  i16(req.acks);
  i32(req.timeout);
  i32(topics.length);
  for (const t of topics) {
    str16(t.topic);
    i32(t.partitions.length);
    for (const p of t.partitions) {
      i32(p.partition);
      i32(8 + 4 + p.batchSize);
      i64(0n);
      i32(p.batchSize);
      i32(0); // partition leader epoch
      u8(2); // magic
      const crcAt = at;
      at += 4;
      const bodyAt = at;
      i16(id ? 16 : 0); // in a transaction: an empty id is none, as kafkajs has it
      i32(p.records.length - 1);
      i64(BigInt(p.firstTimestamp));
      i64(BigInt(p.maxTimestamp));
      i64(producerId);
      i16(req.producerEpoch ?? 0);
      i32(p.firstSequence);
      i32(p.records.length);
      for (let i = 0; i < p.records.length; i++) {
        const r = p.records[i]!;
        varint(r.bodySize);
        u8(0); // attributes
        uvarint(zigzag(r.delta));
        varint(i);
        varBytes(r.key);
        varBytes(r.value);
        varint(r.headers.length);
        for (const [name, v] of r.headers) {
          varBytes(name);
          varBytes(v);
        }
      }
      out.writeUInt32BE(crc32c(out, bodyAt, at), crcAt);
    }
  }
  if (at !== size) throw new Error(`produce request: wrote ${at} bytes, planned ${size}`);
  return out;
}
