import t from 'tap';
import { decodeOrder } from '../src/source/decode.js';
import { parseEventTime, formatMicros } from '../src/time.js';

const opts = { timeZone: 'Asia/Seoul', maxMessageBytes: 65_536 };
const valid = {
  order_id: 'ORD1735567275123',
  timestamp: '2025-12-30T21:10:15.123456',
  user_id: 'USER1234',
  product_id: 'P001',
  product_name: '노트북',
  price: 1_500_000,
  quantity: 1,
  ip_address: '192.168.1.10',
  payment_method: 'card',
};
const enc = (o: unknown) => Buffer.from(typeof o === 'string' ? o : JSON.stringify(o));

t.test('a valid order decodes with exact money and Seoul local time', async (t) => {
  const d = decodeOrder(enc(valid), opts);
  t.ok(d.ok);
  if (!d.ok) return;
  t.equal(d.order.price, 1_500_000n);
  t.equal(formatMicros(d.order.eventUs), '2025-12-30T12:10:15.123456Z', 'no offset: Asia/Seoul (UTC+9)');
  t.equal(d.order.paymentMethod, 'card');
});

t.test('timestamps with an offset are taken as is', async (t) => {
  t.equal(formatMicros(parseEventTime('2025-12-30T21:10:15Z', 'Asia/Seoul') as number), '2025-12-30T21:10:15.000000Z');
  t.equal(formatMicros(parseEventTime('2025-12-30T21:10:15.5+09:00', 'UTC') as number), '2025-12-30T12:10:15.500000Z');
  t.equal(formatMicros(parseEventTime('2025-12-30 21:10:15-0130', 'UTC') as number), '2025-12-30T22:40:15.000000Z');
  t.equal(
    formatMicros(parseEventTime('2025-03-30T02:30:00', 'Europe/Berlin') as number),
    '2025-03-30T01:30:00.000000Z',
    'a wall time skipped by DST lands after the gap',
  );
  t.equal(formatMicros(parseEventTime('2025-07-01T12:00:00', 'Europe/Berlin') as number), '2025-07-01T10:00:00.000000Z', 'summer offset');
});

t.test('timestamps of one second in a row are each read whole: fraction, separator, offset and zone', async (t) => {
  // Each after the one before it, so that every one but the first starts with the same second.
  const cases: [string, string, string][] = [
    ['2025-12-30T21:10:15.123+09:00', 'UTC', '2025-12-30T12:10:15.123000Z'],
    ['2025-12-30T21:10:15.9+09:00', 'UTC', '2025-12-30T12:10:15.900000Z'],
    ['2025-12-30T21:10:15,25+09:00', 'UTC', '2025-12-30T12:10:15.250000Z'],
    ['2025-12-30T21:10:15.123456789+09:00', 'UTC', '2025-12-30T12:10:15.123456Z'],
    ['2025-12-30T21:10:15+09:00', 'UTC', '2025-12-30T12:10:15.000000Z'],
    ['2025-12-30T21:10:15.5-09:00', 'UTC', '2025-12-31T06:10:15.500000Z'],
    ['2025-12-30T21:10:15.5+09:00', 'UTC', '2025-12-30T12:10:15.500000Z'],
    ['2025-12-30T21:10:15.5Z', 'UTC', '2025-12-30T21:10:15.500000Z'],
    ['2025-12-30T21:10:15.5', 'UTC', '2025-12-30T21:10:15.500000Z'],
    ['2025-12-30T21:10:15.5', 'Asia/Seoul', '2025-12-30T12:10:15.500000Z'],
    ['2025-12-30T21:10:15.75', 'Asia/Seoul', '2025-12-30T12:10:15.750000Z'],
    ['2025-12-30T21:10:15.5-01:30', 'Asia/Seoul', '2025-12-30T22:40:15.500000Z'],
  ];
  for (const [text, zone, utc] of cases) t.equal(formatMicros(parseEventTime(text, zone) as number), utc, `${text} in ${zone}`);
  parseEventTime('2025-12-30T21:10:15.1+09:00', 'UTC');
  for (const bad of ['2025-12-30T21:10:15.+09:00', '2025-12-30T21:10:15.1x+09:00', '2025-12-30T21:10:15.1234567890+09:00', '2025-12-30T21:10:15 +09:00'])
    t.type(parseEventTime(bad, 'UTC'), 'string', `${bad} is not a timestamp`);
});

t.test('a NUL in a text field is kept as U+FFFD, as PostgreSQL can store it; the order stays valid', async (t) => {
  const d = decodeOrder(enc({ ...valid, order_id: 'A\u0000B', product_name: 'x\u0000y\u0000', payment_method: '\u0000' }), opts);
  t.ok(d.ok);
  if (!d.ok) return;
  t.equal(d.order.orderId, 'A\uFFFDB');
  t.equal(d.order.productName, 'x\uFFFDy\uFFFD');
  t.equal(d.order.paymentMethod, '\uFFFD');
  const bad = decodeOrder(enc({ ...valid, ip_address: '10.0.0.1\u0000' }), opts);
  t.notOk(bad.ok);
  if (!bad.ok) t.notOk(bad.reason.includes('\u0000'), 'a reason quoting the field holds no NUL either');
});

t.test('every kind of malformed order is a dead letter with a reason', async (t) => {
  const cases: [string, Buffer | null, RegExp][] = [
    ['not JSON', enc('{"order_id": '), /not JSON/],
    ['array', enc([1, 2]), /not a JSON object/],
    ['missing field', enc({ ...valid, user_id: undefined }), /missing field "user_id"/],
    ['mistyped field', enc({ ...valid, price: '1000' }), /"price" must be an integer, got string/],
    ['fractional price', enc({ ...valid, price: 10.5 }), /"price" must be an integer/],
    ['negative price', enc({ ...valid, price: -1 }), /"price" must be >= 0/],
    ['quantity 0', enc({ ...valid, quantity: 0 }), /"quantity" must be >= 1/],
    [
      'price beyond exact range',
      enc(
        '{"order_id":"A","timestamp":"2025-01-01T00:00:00Z","user_id":"u","product_id":"p","product_name":"n","price":90071992547409930,"quantity":1,"ip_address":"1.2.3.4"}',
      ),
      /"price" must be <= /,
    ],
    ['bad IP', enc({ ...valid, ip_address: '999.1.1.1' }), /not an IPv4 or IPv6 address/],
    ['bad timestamp', enc({ ...valid, timestamp: 'yesterday' }), /not ISO-8601/],
    ['impossible date', enc({ ...valid, timestamp: '2025-02-30T10:00:00' }), /does not exist/],
    ['empty order id', enc({ ...valid, order_id: '' }), /"order_id" is empty/],
    ['long product name', enc({ ...valid, product_name: 'x'.repeat(101) }), /longer than 100/],
    ['1 MB message', Buffer.alloc(1_048_576, 0x20), /exceeds the 65536-byte limit/],
    ['tombstone', null, /empty message/],
  ];
  for (const [name, value, reason] of cases) {
    const d = decodeOrder(value, opts);
    t.notOk(d.ok, name);
    if (!d.ok) t.match(d.reason, reason, name);
  }
});

t.test('IPv6 addresses and extra fields are accepted', async (t) => {
  const d = decodeOrder(enc({ ...valid, ip_address: '2001:db8::1', label: 'bot', extra: { a: 1 } }), opts);
  t.ok(d.ok);
});
