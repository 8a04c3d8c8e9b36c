/**
 * fraud-sql never stops consuming silently: a consumer that stops, a batch loop
 * that fails, a missing topic and committed offsets outside the topic each give a
 * probe that says so, a metric, one log line, and then recovery or a non-zero exit.
 * Real broker, real PostgreSQL.
 */
import t from 'tap';
import { cpSync } from 'node:fs';
import { Kafka, logLevel, type Admin } from 'kafkajs';
import { BROKERS, readDirectly, scenario } from './helpers.js';

const admin = async (teardown: (fn: () => Promise<void>) => void) => {
  const a = new Kafka({ clientId: 'fraud-sql-test', brokers: BROKERS, logLevel: logLevel.NOTHING }).admin();
  await a.connect();
  teardown(() => a.disconnect());
  return a;
};

const START = Date.parse('2025-12-30T12:00:00Z');

/** Deletes a topic and waits until the broker no longer lists it. */
async function deleteTopic(a: Admin, topic: string): Promise<void> {
  await a.deleteTopics({ topics: [topic, `${topic}.dlq`] });
  for (let i = 0; i < 100 && (await a.listTopics()).includes(topic); i++) await new Promise((r) => setTimeout(r, 100));
}

/** Polls /readyz until `accept` holds for its body; returns that body. */
async function readyzUntil(url: string, accept: (status: number, body: Record<string, unknown>) => boolean, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await fetch(`${url}/readyz`).catch(() => null);
    if (res) {
      const body = (await res.json()) as Record<string, unknown>;
      if (accept(res.status, body)) return { status: res.status, body };
    }
    if (Date.now() > deadline) throw new Error('/readyz never reached the expected state');
    await new Promise((r) => setTimeout(r, 25));
  }
}

t.test('a consumer that stops for good: 503 with the reason, a metric, one line, exit non-zero', async (t) => {
  // One partition and one rule, so one engine and one Kafka consumer: the failpoint
  // stops the only fetch there is. (With more, a batch fetched for another partition
  // or by another engine's consumer is committed, rightly, before the process stops.)
  const s = await scenario(t, { partitions: 1, orders: 500, seed: 3, rate: 50, startMs: START });
  await s.produce();
  const queries = t.testdir();
  cpSync(new URL('../queries/popular_products.sql', import.meta.url).pathname, `${queries}/popular_products.sql`);

  // In process: the probe and the metric while it stops.
  const app = await s.startApp({ failpoint: 'fetch-error:1', queriesDir: queries });
  const failed = app.done.then(
    () => null,
    (err: Error) => err,
  );
  const seen = await readyzUntil(app.url, (s, b) => s === 503 && /stopped/.test(String(b.consumer)));
  t.match(
    seen.body,
    { ready: false, checks: { consuming: false }, consumer: /stopped: Kafka consumption stopped: .*injected fetch error/ },
    '/readyz says why',
  );
  t.match((await failed)?.message, /Kafka consumption stopped/, 'the batch loop ends with the reason');
  t.match(await app.metrics.registry.getSingleMetricAsString('fraud_sql_consumer_crashes_total'), /outcome="stopped"} 1/, 'counted');
  const progress = await s.pool.query('SELECT count(*)::int AS n FROM consumer_progress WHERE next_offset > 0');
  t.equal(progress.rows[0].n, 0, 'nothing was committed past the failure');

  // As an operator runs it: one line, exit status 1, no stack trace.
  const run = s.startCli({ FRAUD_SQL_FAILPOINT: 'fetch-error:1', FRAUD_SQL_QUERIES: queries });
  const { code } = await run.exited;
  t.equal(code, 1, 'exits non-zero, so the orchestrator restarts it');
  const lines = run
    .output()
    .split('\n')
    .filter((l) => /consumption stopped/.test(l));
  t.equal(lines.length, 1, `one line says why:\n${run.output()}`);
  t.notMatch(run.output(), /\n\s+at /, 'no stack trace');
});

t.test('a failing batch (a result table dropped under it): exit non-zero with the database error', async (t) => {
  const s = await scenario(t, { partitions: 1, orders: 400, seed: 3, rate: 50, startMs: START });
  await s.produce(s.messages.slice(0, 200));
  const app = await s.startApp();
  await s.drained(app);
  await s.pool.query('DROP TABLE high_value_orders CASCADE');
  const failed = app.done.then(
    () => null,
    (err: Error) => err,
  );
  await s.produce(s.messages.slice(200, 300));
  const seen = await readyzUntil(app.url, (s, b) => s === 503 && /stopped/.test(String(b.consumer)));
  t.match(String(seen.body.consumer), /high_value_orders/, '/readyz names the failure');
  const metrics = await (await fetch(`${app.url}/metrics`)).text();
  t.match(metrics, /^fraud_sql_consuming 0$/m, 'the consuming gauge says so');
  t.match((await failed)?.message, /high_value_orders/, 'the loop ends with the database error, not silently');

  // As an operator runs it: on start the table is made again (the rules define
  // it), the orders resume; dropped again under it, the failure is one line and
  // exit status 1.
  const run = s.startCli();
  await s.drainedInPg();
  await s.pool.query('DROP TABLE high_value_orders CASCADE');
  await s.produce(s.messages.slice(300));
  t.equal((await run.exited).code, 1, 'exits non-zero');
  t.equal(
    run
      .output()
      .split('\n')
      .filter((l) => /relation "high_value_orders" does not exist/.test(l)).length,
    1,
    `one line names it:\n${run.output()}`,
  );
  t.notMatch(run.output(), /\n\s+at /, 'no stack trace');
});

t.test('a topic deleted and recreated under a running process: stop with the offset gap, not skip in silence', async (t) => {
  const s = await scenario(t, { partitions: 1, orders: 260, seed: 9, rate: 50, startMs: START });
  const a = await admin(t.teardown);
  await s.produce(s.messages.slice(0, 200));
  const run = s.startCli();
  await s.drainedInPg();
  await deleteTopic(a, s.topic);
  for (let i = 0; !(await a.createTopics({ topics: [{ topic: s.topic, numPartitions: 1 }], waitForLeaders: true }).catch(() => false)); i++) {
    if (i > 100) throw new Error('could not recreate the topic');
    await new Promise((r) => setTimeout(r, 200));
  }
  await s.reconnectProducer();
  await s.produce(s.messages.slice(200));
  const { code } = await run.exited;
  t.equal(code, 1, 'exits non-zero instead of dropping the new orders as already seen');
  t.match(run.output(), /partition 0: while consuming, the next offset 200 is past the end of the topic \(offsets 0\.\.60\).*--on-offset-gap/);
  t.notMatch(run.output(), /closing idle windows failed|error while shutting down/, 'nothing is released under a loop still running');
});

t.test('SIGTERM while waiting for a topic: a clean exit, and the topic is not created by asking for it', async (t) => {
  const s = await scenario(t, { partitions: 1 });
  const a = await admin(t.teardown);
  await deleteTopic(a, s.topic);
  const run = s.startCli();
  const deadline = Date.now() + 20_000;
  while (!/waiting for topic/.test(run.output()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  run.child.kill('SIGTERM');
  t.equal((await run.exited).code, 0, 'a requested stop is a clean exit');
  t.notOk((await a.listTopics()).includes(s.topic), 'the topic still does not exist');
});

t.test('a missing topic: one waiting line, 503, then consumption once it exists; --create-topics creates it, probed or not', async (t) => {
  const s = await scenario(t, { partitions: 2, orders: 300, seed: 3, rate: 50, startMs: START });
  const topic = s.topic;
  const a = await admin(t.teardown);
  await deleteTopic(a, topic);

  const run = s.startCli();
  const deadline = Date.now() + 20_000;
  while (!/waiting for topic/.test(run.output()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  t.match(run.output(), new RegExp(`waiting for topic "${topic}" on .*--create-topics`), 'one line says what it waits for');
  await new Promise((r) => setTimeout(r, 3_000));
  t.equal(
    run
      .output()
      .split('\n')
      .filter((l) => /waiting for topic/.test(l)).length,
    1,
    'said once, not per retry',
  );
  t.equal(run.child.exitCode, null, 'still running: no crash');
  const url = /metrics and health on (\S+)/.exec(run.output())![1]!;
  const waiting = await readyzUntil(url, (s) => s === 503);
  t.match(waiting.body, { ready: false, checks: { consuming: false }, consumer: `waiting for topic "${topic}"` }, '/readyz says what it waits for');
  await a.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true });
  await s.reconnectProducer();
  await s.produce();
  await t.resolves(s.drainedInPg(60_000), 'every order committed once the topic exists');
  run.child.kill('SIGTERM');
  t.equal((await run.exited).code, 0);

  const s2 = await scenario(t);
  const created = s2.topic;
  await deleteTopic(a, created);
  const second = s2.startCli({ FRAUD_SQL_CREATE_TOPICS: 'true', FRAUD_SQL_TOPIC_PARTITIONS: '3' });
  const until = Date.now() + 20_000;
  // Probes as Prometheus and Kubernetes send them from the first moment: asking for the
  // topic's offsets before it existed once made its creation fail and the run stop.
  while (!/assigned partitions/.test(second.output()) && Date.now() < until) {
    const probed = /metrics and health on (\S+)/.exec(second.output());
    if (probed) await Promise.all(['/status', '/readyz', '/metrics'].map((path) => fetch(`${probed[1]}${path}`).then((r) => r.text())));
    await new Promise((r) => setTimeout(r, 20));
  }
  t.match(second.output(), /assigned partitions/, 'consuming, though probed while the topic was being created');
  t.notMatch(second.output(), /stopping:/);
  const meta = await a.fetchTopicMetadata({ topics: [created] });
  t.equal(meta.topics[0]!.partitions.length, 3, 'created with the configured partitions');
  t.notMatch(second.output(), /waiting for topic/);
  second.child.kill('SIGTERM');
  t.equal((await second.exited).code, 0);
});

t.test('committed offsets past the end of a recreated topic: fail by default, earliest on request', async (t) => {
  const s = await scenario(t, { partitions: 1, orders: 250, seed: 5, rate: 50, startMs: START });
  const topic = s.topic;
  const a = await admin(t.teardown);
  await s.produce(s.messages.slice(0, 200));
  const direct = readDirectly(t);
  const app = await s.startApp(direct.app);
  await s.drained(app);
  await app.stop();

  // The topic is recreated (a new cluster, a wiped volume): its offsets start again at 0.
  await deleteTopic(a, topic);
  for (let i = 0; ; i++) {
    const made = await a.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true }).catch(() => false);
    if (made) break;
    if (i > 100) throw new Error('could not recreate the topic');
    await new Promise((r) => setTimeout(r, 200));
  }
  await s.reconnectProducer();
  await s.produce(s.messages.slice(200));
  const before = await s.pool.query('SELECT next_offset::int AS n FROM consumer_progress');

  const failing = s.startCli(direct.cli);
  t.equal((await failing.exited).code, 1, 'fails by default');
  t.match(
    failing.output(),
    /partition 0: committed offset 200 is past the end of the topic \(offsets 0\.\.50\).*--on-offset-gap earliest/,
    'one clear line with what to do',
  );
  t.same((await s.pool.query('SELECT next_offset::int AS n FROM consumer_progress')).rows, before.rows, 'nothing was written');

  const recovering = await s.startApp({ ...direct.app, onOffsetGap: 'earliest' });
  await s.drained(recovering);
  t.same(recovering.inputOffsets(), new Map([[0, 50n]]), 'resumed at the start of the new topic and consumed it');
  t.match(await recovering.metrics.registry.getSingleMetricAsString('fraud_sql_offset_gaps_total'), /kind="past-end",policy="earliest"} 1/);
});

t.test('committed offsets before the start (retention deleted unprocessed orders): fail, or skip to the latest', async (t) => {
  const s = await scenario(t, { partitions: 1, orders: 300, seed: 7, rate: 50, startMs: START });
  const topic = s.topic;
  const a = await admin(t.teardown);
  await s.produce(s.messages.slice(0, 100));
  const direct = readDirectly(t);
  const app = await s.startApp(direct.app);
  await s.drained(app);
  await app.stop();
  await s.produce(s.messages.slice(100));
  // Retention removes offsets below 250 while fraud-sql is down: 150 orders were never processed.
  await a.fetchTopicMetadata({ topics: [topic] });
  await a.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: '250' }] });

  const failing = s.startCli(direct.cli);
  t.equal((await failing.exited).code, 1);
  t.match(
    failing.output(),
    /partition 0: committed offset 100 is before the start of the topic \(offsets 250\.\.300\).*retention deleted orders that were never processed/,
  );

  const skipping = await s.startApp({ ...direct.app, onOffsetGap: 'latest' });
  const deadline = Date.now() + 20_000;
  while (skipping.inputOffsets().get(0) !== 300n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  t.same(skipping.inputOffsets(), new Map([[0, 300n]]), 'skipped to the end');
  t.match(await skipping.metrics.registry.getSingleMetricAsString('fraud_sql_offset_gaps_total'), /kind="before-start",policy="latest"} 1/);
});
