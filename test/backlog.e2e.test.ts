/**
 * A backlog of millions of orders: the real `fraud-sql run` process drains it from
 * the real broker into PostgreSQL with its memory bounded (backpressure on the
 * fetch, state bounded by event time), and the results equal the recomputation.
 *
 * BACKLOG_ORDERS shrinks it for a quick local run; CI runs the full size.
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { scenario } from './helpers.js';

const ORDERS = Number(process.env.BACKLOG_ORDERS ?? 1_000_000);
/**
 * Event time per second of input: the backlog spans many state horizons (10 min
 * each, the window of card_testing), and the state holds about as many orders
 * (240,000) as before that rule, at a fraction of the backlog.
 */
const RATE = 400;
/**
 * The bound asserted on the process's resident memory. Measured on the 2-core test
 * machine: a plateau of 500-800 MB whether the backlog holds 1 or 2 million orders
 * (the V8 heap breathes between 100 and 300 MB with the batches in flight).
 */
const MAX_RSS_MB = 1024;
/** Window state: the window of the longest burst rule (card_testing, 10 min) and the lateness behind the watermark. */
const HORIZON_S = 600 + 5;

t.test(`a backlog of ${ORDERS.toLocaleString('en-US')} orders: drained with bounded memory, results exact`, async (t) => {
  const s = await scenario(t, { partitions: 4, orders: ORDERS, seed: 31, rate: RATE });
  const producing = Date.now();
  // Streamed as generated, one request at a time: each partition stays in event-time order.
  await s.produce();
  t.comment(`produced ${ORDERS} orders in ${((Date.now() - producing) / 1000).toFixed(1)} s, spanning ${(ORDERS / RATE / 60).toFixed(0)} min of event time`);

  const run = s.startCli();
  const rssMb: number[] = [];
  const sampler = setInterval(() => {
    try {
      rssMb.push(Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${run.child.pid}/status`, 'utf8'))![1]) / 1024);
    } catch {
      // The process has not started or has exited: nothing to sample.
    }
  }, 250);
  const draining = Date.now();
  try {
    await s.drainedInPg(600_000);
  } finally {
    clearInterval(sampler);
  }
  const seconds = (Date.now() - draining) / 1000;
  const max = Math.max(...rssMb);
  const tail = rssMb.slice(Math.floor(rssMb.length / 2));
  t.comment(
    `drained in ${seconds.toFixed(1)} s (${Math.round(ORDERS / seconds)} orders/s incl. start), RSS max ${max.toFixed(0)} MB, over the second half ${Math.min(...tail).toFixed(0)}-${Math.max(...tail).toFixed(0)} MB`,
  );
  t.ok(run.child.exitCode === null, 'the process is still running');
  t.ok(max <= MAX_RSS_MB, `resident memory stayed at most ${MAX_RSS_MB} MB (max ${max.toFixed(0)} MB)`);

  // The state holds the last ten minutes of event time, however long the backlog:
  // what is left after the last retention pass (at most a second of draining ago),
  // in the engine of the user rules (card_testing's window; the IP rules' engine
  // keeps two minutes).
  const url = /on (http:\/\/[\w:.]+)/.exec(run.output())![1]!;
  const metrics = await (await fetch(`${url}/metrics`)).text();
  const stateOrders = Number(/^fraud_sql_state_orders\{topic="[^"]*-by-user_id"\} (\S+)/m.exec(metrics)![1]);
  const horizonOrders = RATE * HORIZON_S;
  t.ok(
    stateOrders >= RATE * 600 && stateOrders <= 2 * horizonOrders,
    `${stateOrders} orders in the window state at the end (${horizonOrders} in ${HORIZON_S} s of event time, of ${ORDERS} in the backlog)`,
  );

  t.equal(Number(/^fraud_sql_messages_total (\S+)/m.exec(metrics)![1]), ORDERS, 'every message counted once');
  await s.expectExact();
});
