/**
 * The order decoder: one Kafka message in, a valid order or a dead-letter reason out.
 * Pure: no I/O, no clock. The rules are README.md, *The order event*.
 */
import { isIP } from 'node:net';
import type { Decoded } from '../engine/ports.js';
import { storableText } from '../text.js';
import { parseEventTime, truncate } from '../time.js';

export interface DecodeOptions {
  /** IANA zone for timestamps without an offset. */
  timeZone: string;
  /** Larger messages are dead letters without being parsed. */
  maxMessageBytes: number;
}

// Bounds that keep every money value exact: price * quantity stays far below 2^63
// in DuckDB's BIGINT and in PostgreSQL, and each input is below 2^53 in JSON.
const MAX_PRICE = 1_000_000_000_000; // 1 trillion KRW per unit
const MAX_QUANTITY = 1_000_000;
const MAX_TEXT = 100;

function fail(reason: string): Decoded {
  return { ok: false, reason };
}

function requiredString(o: Record<string, unknown>, field: string, max = 1000): string | Decoded {
  const v = o[field];
  if (v === undefined || v === null) return fail(`missing field "${field}"`);
  if (typeof v !== 'string') return fail(`field "${field}" must be a string, got ${typeName(v)}`);
  if (v.length === 0) return fail(`field "${field}" is empty`);
  if (v.length > max) return fail(`field "${field}" is longer than ${max} characters`);
  return storableText(v);
}

function requiredInteger(o: Record<string, unknown>, field: string, min: number, max: number): number | Decoded {
  const v = o[field];
  if (v === undefined || v === null) return fail(`missing field "${field}"`);
  if (typeof v !== 'number') return fail(`field "${field}" must be an integer, got ${typeName(v)}`);
  if (!Number.isInteger(v)) return fail(`field "${field}" must be an integer, got ${v}`);
  if (v < min) return fail(`field "${field}" must be >= ${min}, got ${v}`);
  if (v > max) return fail(`field "${field}" must be <= ${max}, got ${v}`);
  return v;
}

function typeName(v: unknown): string {
  if (Array.isArray(v)) return 'array';
  if (v === null) return 'null';
  return typeof v;
}

const isFailure = (v: unknown): v is Decoded => typeof v === 'object' && v !== null && 'ok' in v;

export function decodeOrder(value: Buffer | null, opts: DecodeOptions): Decoded {
  if (value === null) return fail('empty message (tombstone)');
  if (value.length > opts.maxMessageBytes) {
    return fail(`message of ${value.length} bytes exceeds the ${opts.maxMessageBytes}-byte limit`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(value.toString('utf8'));
  } catch (err) {
    return fail(`not JSON: ${(err as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    return fail(`not a JSON object (got ${typeName(parsed)})`);
  }
  const o = parsed as Record<string, unknown>;

  const orderId = requiredString(o, 'order_id', MAX_TEXT);
  if (isFailure(orderId)) return orderId;
  const timestamp = requiredString(o, 'timestamp', 64);
  if (isFailure(timestamp)) return timestamp;
  const userId = requiredString(o, 'user_id');
  if (isFailure(userId)) return userId;
  const productId = requiredString(o, 'product_id');
  if (isFailure(productId)) return productId;
  const productName = requiredString(o, 'product_name', MAX_TEXT);
  if (isFailure(productName)) return productName;
  const price = requiredInteger(o, 'price', 0, MAX_PRICE);
  if (isFailure(price)) return price;
  const quantity = requiredInteger(o, 'quantity', 1, MAX_QUANTITY);
  if (isFailure(quantity)) return quantity;
  const ipAddress = requiredString(o, 'ip_address', 64);
  if (isFailure(ipAddress)) return ipAddress;
  if (isIP(ipAddress) === 0) return fail(`field "ip_address" is not an IPv4 or IPv6 address: "${truncate(ipAddress)}"`);

  let paymentMethod: string | null = null;
  if (o.payment_method !== undefined && o.payment_method !== null) {
    if (typeof o.payment_method !== 'string') {
      return fail(`field "payment_method" must be a string, got ${typeName(o.payment_method)}`);
    }
    paymentMethod = storableText(o.payment_method.slice(0, MAX_TEXT));
  }

  const eventUs = parseEventTime(timestamp, opts.timeZone);
  if (typeof eventUs === 'string') return fail(eventUs);

  return {
    ok: true,
    order: { orderId, eventUs, userId, productId, productName, price: BigInt(price), quantity, ipAddress, paymentMethod },
  };
}
