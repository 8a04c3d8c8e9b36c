/**
 * Operating fraud-sql: /metrics checked by Prometheus' own promtool and matched
 * against a scripted run; /status; /readyz following PostgreSQL down and up.
 */
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { scenario } from './helpers.js';

const metricValue = (text: string, name: string, labels = '') => {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line === undefined ? undefined : Number(line.split(' ')[1]);
};

t.test('/metrics passes promtool and counts exactly what was produced', async (t) => {
  const s = await scenario(t, { partitions: 2, orders: 3_000, seed: 9, rate: 50, startMs: Date.now() - 120_000, mix: { malformed: 2 } });
  // The oracle's orders are the messages that are not malformed.
  const valid = s.orders.length;
  const malformed = s.messages.length - valid;
  await s.produce();
  const app = await s.startApp();
  await s.drained(app);

  const res = await fetch(`${app.url}/metrics`);
  t.equal(res.status, 200);
  t.match(res.headers.get('content-type'), /text\/plain/);
  const text = await res.text();
  const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  t.equal(check.status, 0, `promtool check metrics: ${check.stdout}${check.stderr}`);

  t.equal(metricValue(text, 'fraud_sql_records_consumed_total'), valid, 'records consumed = valid orders produced');
  t.equal(metricValue(text, 'fraud_sql_dead_letters_total'), malformed, 'dead letters = malformed messages injected');
  t.equal(metricValue(text, 'fraud_sql_messages_total'), valid + malformed);
  const [hop, byUser] = app.pipelines.map((p) => p.plan.topic) as [string, string];
  t.equal(metricValue(text, 'fraud_sql_consumer_lag', `{topic="${s.topic}",partition="0"}`), 0, 'no lag on the input once drained');
  t.equal(metricValue(text, 'fraud_sql_consumer_lag', `{topic="${hop}",partition="0"}`), 0, 'nor on the repartition topic');
  t.ok((metricValue(text, 'fraud_sql_end_to_end_latency_seconds_count') ?? 0) >= valid, 'end-to-end latency observed per message');
  for (const stage of ['decode', 'ingest', 'rules', 'sink'])
    t.ok(text.includes(`fraud_sql_batch_stage_seconds_count{stage="${stage}"}`), `stage ${stage} timed`);
  for (const rule of ['suspicious_ips', 'high_value_orders', 'popular_products', 'realtime_stats'])
    t.ok(text.includes(`fraud_sql_rule_duration_seconds_count{rule="${rule}"}`), `rule ${rule} timed`);
  t.ok(text.includes(`fraud_sql_watermark_seconds{topic="${hop}",partition="0"}`), 'watermark per partition of the topic the rules read');

  const status = await (await fetch(`${app.url}/status`)).json();
  t.same(
    status.partitions.map((p: { topic: string; lag: number }) => [p.topic, p.lag]),
    [s.topic, s.topic, hop, hop, byUser, byUser].map((topic) => [topic, 0]),
    'no lag on either partition of the input and of the repartition topics',
  );
  t.equal(status.rules.length, 7);
  // Each high-value order is one row, written once: the figures count exactly that.
  const highValue = Number((await s.pool.query('SELECT count(*) FROM high_value_orders')).rows[0].count);
  t.ok(highValue > 0, `${highValue} high-value orders`);
  t.equal(metricValue(text, 'fraud_sql_rule_rows_written_total', '{rule="high_value_orders"}'), highValue, 'rows written per rule');
  t.ok((metricValue(text, 'fraud_sql_rule_last_write_seconds', '{rule="high_value_orders"}') ?? 0) > Date.now() / 1000 - 600, 'last write time per rule');
  const hv = status.rules.find((r: { name: string }) => r.name === 'high_value_orders');
  t.equal(hv.rowsWritten, highValue, '/status: rows written per rule');
  t.ok(Date.parse(hv.lastWriteAt) > Date.now() - 600_000, '/status: last write time per rule');
  t.ok(status.lastBatch.size > 0);
  t.same(await (await fetch(`${app.url}/healthz`)).json(), { status: 'ok' });
});

t.test('/readyz turns 503 while PostgreSQL is stopped and 200 when it is back', async (t) => {
  const version = readdirSync('/etc/postgresql')[0]!;
  const pgctl = (action: 'start' | 'stop') =>
    execFileSync('pg_ctlcluster', ['--skip-systemctl-redirect', version, 'main', action, ...(action === 'stop' ? ['-m', 'fast'] : [])], { stdio: 'ignore' });
  const s = await scenario(t, { partitions: 1 });
  const app = await s.startApp();
  const ready = async () => (await fetch(`${app.url}/readyz`)).status;
  const waitFor = async (status: number, ms: number) => {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      if ((await ready()) === status) return true;
      await new Promise((r) => setTimeout(r, 250));
    }
    return false;
  };
  t.ok(await waitFor(200, 30_000), 'ready once partitions are assigned');
  pgctl('stop');
  // Registered after the stop, so it runs before the schema is dropped.
  t.teardown(() => {
    spawnSync('pg_ctlcluster', ['--skip-systemctl-redirect', version, 'main', 'start'], { stdio: 'ignore' });
  });
  t.ok(await waitFor(503, 15_000), '503 while PostgreSQL is down');
  const body = await (await fetch(`${app.url}/readyz`)).json();
  t.same(body.checks, { postgres: false, kafka: true, consuming: true, partitionsAssigned: true, decisionLookup: true });
  pgctl('start');
  t.ok(await waitFor(200, 30_000), '200 again when it is back');
});
