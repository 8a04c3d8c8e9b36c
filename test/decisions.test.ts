/** The decision index and its route: active detections and lists per key, from memory. */
import t from 'tap';
import { DecisionIndex, type DetectionRows } from '../src/alerts/decisions.js';
import { createServer } from 'node:http';
import { connect } from 'node:net';
import { decisionsListener } from '../src/http/decisions.js';
import type { List } from '../src/rules/lists.js';

const MIN = 60_000_000;
const EPOCH = Date.UTC(2026, 0, 1);
const at = (s: number) => new Date(EPOCH + s * 1000).toISOString();
/** The engines' watermark, moved by each test. */
let watermark = 0;
const clock = () => (EPOCH + watermark * 1000) * 1000;

const burst = (ip: string, from: number, to: number, count: number): DetectionRows => ({
  rule: 'suspicious_ips',
  severity: 'high',
  activeMicros: MIN,
  replace: ['source_partition', 'ip_address'],
  names: ['source_partition', 'ip_address', 'window_start', 'window_end', 'order_count'],
  columns: [[0], [ip], [at(from)], [at(to)], [String(count)]],
  rowCount: 1,
});

const highValue = (ip: string, user: string, s: number): DetectionRows => ({
  rule: 'high_value_orders',
  severity: 'medium',
  activeMicros: 0,
  replace: [],
  names: ['source_partition', 'order_time', 'order_id', 'ip_address', 'user_id'],
  columns: [[0], [at(s)], [`O${s}`], [ip], [user]],
  rowCount: 1,
});

const lists: List[] = [
  { name: 'allow_ips', file: 'allow_ips.csv', columns: ['ip_address', 'reason'], rows: [['10.0.0.9', 'office NAT']] },
  { name: 'block_users', file: 'block_users.csv', columns: ['user_id', 'reason'], rows: [['U-BAD', 'chargebacks']] },
];

t.test("a burst whose start moved (two merged) is one detection, not the old start's too", async (t) => {
  watermark = 0;
  const index = new DecisionIndex(() => lists, clock);
  index.feed(burst('10.0.0.5', 10, 20, 5));
  index.feed(burst('10.0.0.6', 10, 20, 7));
  // A later batch finds the key hot from earlier on: the burst now starts at 0 and has 11 orders.
  index.feed(burst('10.0.0.5', 0, 25, 11));
  t.same(
    index.lookup({ ip_address: '10.0.0.5' }).keys.ip_address!.detections.map((d) => [d.since, d.count]),
    [[at(0), 11]],
  );
  t.equal(index.lookup({ ip_address: '10.0.0.6' }).keys.ip_address!.detections.length, 1, "another key's burst stays");
});

t.test('a burst is reported while it can still grow, with its start and count; then no more', async (t) => {
  watermark = 0;
  const index = new DecisionIndex(() => lists, clock);
  index.feed(burst('10.0.0.1', 0, 20, 12));
  t.same(index.lookup({ ip_address: '10.0.0.1' }), {
    verdict: 'review',
    keys: {
      ip_address: {
        value: '10.0.0.1',
        detections: [{ rule: 'suspicious_ips', severity: 'high', since: at(0), last: at(20), count: 12 }],
        lists: [],
      },
    },
  });
  index.feed(burst('10.0.0.1', 0, 50, 30));
  t.equal(index.lookup({ ip_address: '10.0.0.1' }).keys.ip_address!.detections[0]!.count, 30, 'the burst grew: one detection, updated');
  watermark = 50 + 60;
  t.equal(index.lookup({ ip_address: '10.0.0.1' }).verdict, 'review', 'a window after its last order, it could still grow');
  // The watermark moves on past the burst's last order plus its window.
  watermark = 50 + 61;
  t.same(index.lookup({ ip_address: '10.0.0.1' }).keys.ip_address!.detections, [], 'ended: no longer reported');
  t.equal(index.lookup({ ip_address: '10.0.0.1' }).verdict, 'none');
});

t.test('a single-order detection (no window) is not one that lasts; keys are independent', async (t) => {
  watermark = 0;
  const index = new DecisionIndex(() => [], clock);
  index.feed(highValue('10.0.0.3', 'U3', 0));
  t.equal(index.lookup({ user_id: 'U3' }).verdict, 'none', 'a high-value order says nothing of the next one');
  index.feed(burst('10.0.0.3', 0, 20, 12));
  t.equal(index.lookup({ ip_address: '10.0.0.3' }).keys.ip_address!.detections.length, 1, 'a burst does');
  t.equal(index.lookup({ ip_address: '10.0.0.4' }).verdict, 'none', 'another IP has nothing');
});

t.test('lists: block wins over allow, allow over a detection', async (t) => {
  watermark = 0;
  const index = new DecisionIndex(() => lists, clock);
  index.feed(burst('10.0.0.7', 0, 20, 12));
  t.same(index.lookup({ ip_address: '10.0.0.9' }).keys.ip_address!.lists, ['allow_ips']);
  t.equal(index.lookup({ ip_address: '10.0.0.9' }).verdict, 'allow');
  t.equal(index.lookup({ ip_address: '10.0.0.9', user_id: 'U-BAD' }).verdict, 'block');
  t.same(index.lookup({ user_id: 'U-BAD' }).keys.user_id!.lists, ['block_users']);
});

t.test('the route: keys from the query string, a clear 400 otherwise, values echoed as JSON data', async (t) => {
  watermark = 0;
  const index = new DecisionIndex(() => lists, clock);
  const hostile = `<script>"'; DROP TABLE orders; --\u0007`;
  index.feed(burst('10.0.0.7', 0, 20, 12));
  const server = createServer(decisionsListener(index));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  const ok = await fetch(`${base}/v1/decisions?ip_address=10.0.0.7&user_id=${encodeURIComponent(hostile)}`);
  const body = await ok.json();
  t.equal(ok.status, 200);
  t.match(ok.headers.get('content-type'), /application\/json/);
  t.equal(body.keys.user_id.value, hostile, 'the value comes back as data');
  t.equal(body.verdict, 'review');
  t.equal(ok.headers.get('x-content-type-options'), 'nosniff', 'a browser never reads the echoed value as markup');
  for (const [url, status, message] of [
    ['/v1/decisions', 400, /nothing asked/],
    ['/v1/decisions?ip=1.2.3.4', 400, /unknown parameter "ip"/],
    ['/v1/decisions?ip_address=1.2.3.4&ip_address=1.2.3.5', 400, /more than once/],
    [`/v1/decisions?user_id=${'x'.repeat(101)}`, 400, /1 to 100 characters/],
    [`/v1/decisions?ip_address=${encodeURIComponent(hostile)}`, 400, /ip_address is not an IPv4 or IPv6 address/],
    ['/v1/other', 404, /GET \/v1\/decisions/],
  ] as const) {
    const r = await fetch(base + url);
    t.equal(r.status, status, url);
    t.match((await r.json()).error, message);
  }
  // A request target no URL parser accepts: answered, and the lookup still answers after it.
  const raw = await new Promise<string>((resolve, reject) => {
    const c = connect((server.address() as { port: number }).port, '127.0.0.1', () =>
      c.end('GET http://a:99999/v1/decisions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'),
    );
    let got = '';
    c.on('data', (d) => (got += d.toString('utf8')));
    c.on('end', () => resolve(got));
    c.on('error', reject);
  });
  t.match(raw, /^HTTP\/1\.1 404 /, 'an absolute-form target is a 404');
  t.equal((await fetch(`${base}/v1/decisions?ip_address=10.0.0.7`)).status, 200, 'and the lookup answers on');
});
