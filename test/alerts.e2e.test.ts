/**
 * Alerts under the real `fraud-sql run` (real broker and PostgreSQL, local HTTP
 * receivers): every detection of a generated run has exactly one alert id on the
 * alerts topic and at the webhook, through a kill -9 after a commit; a receiver
 * that fails three times still gets every alert; one that always fails ends in
 * alert_dead_letters; each alert matches schemas/alert.schema.json, is signed, and
 * carries the detection's orders as evidence; detection_evidence holds every
 * burst's orders, and `fraud-sql explain` shows them.
 */
import t, { type Test } from 'tap';
import { createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { Kafka, logLevel } from 'kafkajs';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { BROKERS, CLI, PG_URL, scenario } from './helpers.js';
import { entries, recomputeEvidence } from './oracle.js';
import { alertId } from '../src/alerts/alert.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const SECRET = 'test-secret "<script>"';
const schema = JSON.parse(readFileSync(new URL('../schemas/alert.schema.json', import.meta.url), 'utf8'));

/** A webhook receiver on 127.0.0.1 answering each request with `status(n)` (n counts from 1). */
async function receiver(t: Test, status: (n: number) => number) {
  const got: { id: string; body: string; signature: string; status: number }[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const code = status(got.length + 1);
      got.push({
        id: String(req.headers['x-fraud-sql-alert-id']),
        body: Buffer.concat(chunks).toString('utf8'),
        signature: String(req.headers['x-fraud-sql-signature']),
        status: code,
      });
      res.writeHead(code).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as { port: number }).port;
  return { url: `http://127.0.0.1:${port}/hook?token=x`, got };
}

/** The detections in PostgreSQL, each as the alert id it must have. */
async function detections(pool: { query: (sql: string) => Promise<{ rows: Record<string, string>[] }> }): Promise<Map<string, string>> {
  const iso = (c: string) => `to_char(${c} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;
  const out = new Map<string, string>();
  const add = async (rule: string, key: string, windowed: boolean) => {
    const r = await pool.query(`SELECT ${key} AS k, ${windowed ? iso('window_start') : 'NULL'} AS ws, rule_version FROM ${rule}`);
    for (const row of r.rows) out.set(alertId(rule, row.rule_version!, [row.k!], row.ws ?? null, 0), `${rule} ${row.k} ${row.ws ?? ''}`);
  };
  await add('suspicious_ips', 'ip_address', true);
  await add('card_testing', 'user_id', true);
  await add('shared_ip_accounts', 'ip_address', true);
  await add('high_value_orders', 'order_id', false);
  await add('blocked_activity', 'order_id', false);
  return out;
}

t.test('alerts: one id per detection on the topic and at the webhook, through kill -9; retries; dead letters', async (t) => {
  const s = await scenario(t, { partitions: 2, orders: 6_000, seed: 41 });
  const flaky = await receiver(t, (n) => (n <= 3 ? 500 : 200));
  const down = await receiver(t, () => 500);
  const alertsTopic = `${s.topic}.alerts`;
  const env = {
    FRAUD_SQL_BATCH_MAX_SIZE: '500',
    FRAUD_SQL_ALERTS_TOPIC: alertsTopic,
    FRAUD_SQL_ALERT_WEBHOOK: `${flaky.url},${down.url}`,
    FRAUD_SQL_ALERT_WEBHOOK_SECRET: SECRET,
    FRAUD_SQL_ALERT_WEBHOOK_MAX_ATTEMPTS: '3',
    FRAUD_SQL_ALERT_WEBHOOK_RETRY_MS: '100',
  };
  await s.produce(s.messages.slice(0, 3_000));
  const crashing = s.startCli({ ...env, FRAUD_SQL_FAILPOINT: 'after-commit:4' });
  t.equal((await crashing.exited).signal, 'SIGKILL', 'killed after its fourth commit');
  const r = s.startCli(env);
  await s.produce(s.messages.slice(3_000));
  await s.drainedInPg();
  const settled = async () => {
    const q = await s.pool.query(
      `SELECT (SELECT count(*) FROM alert_outbox WHERE published_at IS NULL)::int AS unpublished,
              (SELECT count(*) FROM alert_deliveries WHERE delivered_at IS NULL)::int AS pending`,
    );
    return q.rows[0].unpublished === 0 && q.rows[0].pending === 0;
  };
  for (const deadline = Date.now() + 60_000; !(await settled()); await sleep(250)) {
    if (Date.now() > deadline) throw new Error('alerts not all published and delivered within 60 s');
  }
  const expected = await detections(s.pool);
  t.ok(expected.size > 10, `the run has detections (${expected.size})`);

  // The alerts topic, read from the start by a client of its own.
  const seen: { id: string; key: string; alert: Record<string, unknown> }[] = [];
  const consumer = new Kafka({ clientId: 'fraud-sql-test', brokers: BROKERS, logLevel: logLevel.NOTHING }).consumer({ groupId: `${alertsTopic}-reader` });
  await consumer.connect();
  t.teardown(() => consumer.disconnect());
  await consumer.subscribe({ topic: alertsTopic, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message }) => {
      const alert = JSON.parse(message.value!.toString('utf8')) as Record<string, unknown>;
      seen.push({ id: alert.alert_id as string, key: message.key!.toString('utf8'), alert });
    },
  });
  const published = Number((await s.pool.query('SELECT count(*)::int AS n FROM alert_outbox')).rows[0].n);
  for (const deadline = Date.now() + 30_000; seen.length < published; await sleep(200)) {
    if (Date.now() > deadline) break;
  }
  const ids = new Set(seen.map((a) => a.id));
  t.same([...ids].sort(), [...expected.keys()].sort(), 'exactly one alert id per detection on the alerts topic, none other');
  t.comment(`${seen.length} alerts read for ${ids.size} ids: ${seen.length - ids.size} duplicates (same id)`);

  const ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true });
  addFormats.default(ajv);
  const valid = ajv.compile(schema);
  const invalid = seen.filter((a) => !valid(a.alert)).map((a) => ({ id: a.id, errors: ajv.errorsText(valid.errors) }));
  t.same(invalid.slice(0, 3), [], 'every alert matches schemas/alert.schema.json');
  t.ok(
    seen.every((a) => a.key === (a.alert.key as { value: string }).value),
    'the Kafka key is the detected key',
  );

  // Evidence: the burst's orders as the alert saw them. Orders of the burst that
  // arrive after the alert (out of order in event time) are not in it: its count is
  // the row's at that moment, and its ids are those orders in event-time order.
  const wrong = seen
    .filter((a) => a.alert.rule === 'suspicious_ips')
    .filter((a) => {
      const { window_start, window_end, evidence, key, row } = a.alert as {
        window_start: string;
        window_end: string;
        evidence: { order_ids: string[]; order_count: number };
        key: { value: string };
        row: { order_count: number };
      };
      const [from, to] = [Date.parse(window_start), Date.parse(window_end)];
      const burst = s.orders
        .filter((o) => o.ip_address === key.value && o.ms >= from && o.ms <= to)
        .sort((x, y) => x.ms - y.ms || (x.order_id < y.order_id ? -1 : 1))
        .map((o) => o.order_id);
      const shown = new Set(evidence.order_ids);
      const inOrder = burst.filter((id) => shown.has(id));
      const bad =
        evidence.order_count !== row.order_count ||
        evidence.order_ids.length !== Math.min(100, row.order_count) ||
        inOrder.join() !== evidence.order_ids.join();
      if (bad) t.comment(JSON.stringify({ alert: a.alert, burst }));
      return bad;
    });
  t.equal(wrong.length, 0, 'each suspicious_ips alert carries its burst’s orders, as many as its row counted, in event-time order');

  // The receiver that failed three times got every alert, signed.
  const delivered = new Set(flaky.got.filter((g) => g.status === 200).map((g) => g.id));
  t.same([...delivered].sort(), [...expected.keys()].sort(), 'the webhook that failed three times got every alert');
  t.equal(flaky.got.filter((g) => g.status === 500).length, 3, 'after three failures');
  const forged = flaky.got.filter((g) => g.signature !== `sha256=${createHmac('sha256', SECRET).update(g.body).digest('hex')}`);
  t.equal(forged.length, 0, 'every body carries a valid X-Fraud-SQL-Signature');
  t.ok(
    flaky.got.every((g) => JSON.parse(g.body).alert_id === g.id),
    'the X-Fraud-SQL-Alert-Id header names the body’s alert',
  );

  // The receiver that always fails: every alert dead-lettered after the attempts allowed.
  const dead = await s.pool.query('SELECT alert_id, attempts, last_error FROM alert_dead_letters WHERE url = $1', [down.url]);
  t.same(dead.rows.map((d) => d.alert_id).sort(), [...expected.keys()].sort(), 'every alert to the failing webhook is in alert_dead_letters');
  t.ok(
    dead.rows.every((d) => d.attempts === 3 && d.last_error === 'HTTP 500'),
    'after three attempts, with the last error',
  );

  // detection_evidence and detection_totals, written with the results through the kill -9:
  // every burst's first 100 orders by event time and its count, as the oracle has them.
  const want = recomputeEvidence(s.orders);
  const got = new Map<string, { order_ids: string[]; order_count: number }>();
  const iso = (d: Date) => d.toISOString();
  for (const row of (await s.pool.query('SELECT rule, key_value, window_start, order_count FROM detection_totals')).rows) {
    got.set(`${row.rule}|${row.key_value}|${iso(row.window_start)}`, { order_ids: [], order_count: Number(row.order_count) });
  }
  for (const row of (await s.pool.query('SELECT rule, key_value, window_start, order_id FROM detection_evidence ORDER BY event_time, order_id')).rows) {
    const k = `${row.rule}|${row.key_value}|${iso(row.window_start)}`;
    (got.get(k) ?? got.set(k, { order_ids: [], order_count: -1 }).get(k)!).order_ids.push(row.order_id);
  }
  // The bot's burst at least (600 orders: past the 100 kept); how many short bursts fit depends on the start time.
  t.ok(
    [...want.values()].some((b) => b.order_count > 100),
    `the run has ${want.size} bursts, one of them past the 100 orders kept`,
  );
  t.same(entries(got), entries(want), 'detection_evidence and detection_totals equal the oracle for every burst');

  // fraud-sql explain shows one of them from PostgreSQL, as a user runs it.
  const [key, burst] = [...want].find(([k]) => k.startsWith('suspicious_ips|'))!;
  const [, ip, since] = key.split('|');
  const explain = (...args: string[]) =>
    promisify(execFile)('node', [CLI, 'explain', ...args], { env: { ...process.env, FRAUD_SQL_DATABASE_URL: PG_URL, FRAUD_SQL_PG_SCHEMA: s.schema } });
  const json = JSON.parse((await explain('--rule', 'suspicious_ips', '--key', ip!, '--at', since!, '--json')).stdout);
  t.same(
    { start: json.detection.window_start, ids: json.evidence.orders.map((o: { orderId: string }) => o.orderId), count: json.evidence.orderCount },
    { start: since, ids: burst.order_ids, count: burst.order_count },
    'explain --json gives the burst and its orders',
  );
  const text = (await explain('--rule', 'suspicious_ips', '--key', ip!, '--at', since!)).stdout;
  t.match(text, new RegExp(`^suspicious_ips: ip_address = ${ip!.replace(/\./g, '\\.')}\n`), 'the text form names the detection');
  t.match(text, `evidence: ${burst.order_count} orders`, 'and counts its orders');
  t.ok(
    burst.order_ids.every((id) => text.includes(id)),
    'and lists them',
  );
  const refused = await explain('--rule', 'suspicious_ips', '--key', '203.0.113.250').then(
    () => '',
    (err: { stderr: string }) => err.stderr,
  );
  t.match(refused, 'suspicious_ips has no detection of ip_address = 203.0.113.250', 'an unknown key is one clear line');
  r.child.kill('SIGTERM');
  await r.exited;
});
