/**
 * The built-in rules keep bounded state (suspicious_ips carries each IP's open
 * burst from batch to batch instead of rereading its history), yet their results
 * equal the independent recomputation exactly: long bot runs that span many state
 * horizons, bursts that flicker on and off around the threshold, orders out of
 * order within the lateness, micro-batches cut at arbitrary points, retention
 * after every batch. Real engine and DuckDB, in memory; no Kafka or PostgreSQL.
 */
import t from 'tap';
import { generateOrders } from '../src/generator/orders.js';
import { runInMemory } from '../src/compose.js';
import { loadConfig } from '../src/config.js';
import { rowsOf } from '../src/types.js';
import { entries, oracleOrder, recompute, type Expected, type OracleOrder } from './oracle.js';

const QUERIES = new URL('../queries', import.meta.url).pathname;

/** A small deterministic generator for the test's own choices (batch cuts, drops). */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}

interface Case {
  name: string;
  seed: number;
  count: number;
  rate: number;
  mix: Parameters<typeof generateOrders>[0]['mix'];
  /** Share of bot orders dropped at random, so its rate hovers around the threshold. */
  dropBot: number;
  maxBatch: number;
}

const CASES: Case[] = [
  {
    name: 'a bot that never pauses, over 13 state horizons',
    seed: 11,
    count: 20_000,
    rate: 12,
    mix: { normal: 80, bot: 15, burst: 3, near_miss: 2 },
    dropBot: 0,
    maxBatch: 400,
  },
  {
    name: 'a bot hovering around 10 orders a minute: bursts start, stop and merge',
    seed: 12,
    count: 12_000,
    rate: 2,
    mix: { normal: 82, bot: 13, burst: 3, near_miss: 2 },
    dropBot: 0.3,
    maxBatch: 40,
  },
];

for (const c of CASES) {
  t.test(c.name, async (t) => {
    const rnd = lcg(c.seed);
    const gen = generateOrders({ seed: c.seed, rate: c.rate, startMs: Date.parse('2025-12-30T12:00:00Z'), mix: c.mix });
    const values: { partition: number; value: Buffer }[] = [];
    const orders: OracleOrder[] = [];
    for (let i = 0; i < c.count; i++) {
      const o = gen.next().value!;
      const j = JSON.parse(o.value);
      if (o.label === 'bot' && rnd() < c.dropBot) continue;
      // Keyed by IP as in Kafka: two partitions, each IP on one.
      values.push({ partition: j.ip_address.endsWith('9') ? 1 : 0, value: Buffer.from(o.value) });
      orders.push(oracleOrder(j));
    }
    const spanS = (orders[orders.length - 1]!.ms - orders[0]!.ms) / 1000;
    function* batches() {
      for (let i = 0; i < values.length;) {
        const n = 1 + Math.floor(rnd() * c.maxBatch);
        yield values.slice(i, i + n);
        i += n;
      }
    }
    const { state } = await runInMemory(loadConfig({}, {}), QUERIES, batches());
    t.teardown(() => state.close());

    const expected = recompute(orders);
    const actual = await readDuck(state);
    t.ok(expected.suspicious.size > 5, `${expected.suspicious.size} bursts over ${spanS.toFixed(0)} s of event time`);
    const longest = Math.max(...[...expected.suspicious.values()].map((b) => b.order_count));
    t.ok(c.dropBot > 0 || longest > 2_000, `the longest burst has ${longest} orders`);
    t.same(entries(actual.suspicious), entries(expected.suspicious), 'suspicious_ips equals the recomputation');
    t.same(entries(actual.stats), entries(expected.stats), 'realtime_stats equals the recomputation');
    t.same(entries(actual.popular), entries(expected.popular), 'popular_products equals the recomputation');

    // State: two burst windows and the lateness (125 s) behind each partition's watermark (its latest
    // event time minus the 5 s lateness), retention having run after the last batch.
    const retained = Number((await state.query('SELECT count(*) FROM orders')).columns[0]![0]);
    const partitionOf = new Map(values.map((v, i) => [orders[i]!.order_id, v.partition]));
    const latest = [0, 1].map((p) => orders.filter((o) => partitionOf.get(o.order_id) === p).reduce((m, o) => Math.max(m, o.ms), 0));
    const inHorizon = orders.filter((o) => o.ms >= latest[partitionOf.get(o.order_id)!]! - 130_000).length;
    t.equal(retained, inHorizon, `${retained} of ${orders.length} orders retained at the end: those at most 130 s behind their partition's latest`);
  });
}

async function readDuck(state: Awaited<ReturnType<typeof runInMemory>>['state']): Promise<Expected> {
  const iso = (v: unknown) => new Date(String(v)).toISOString();
  const out: Expected = { popular: new Map(), suspicious: new Map(), highValue: new Map(), stats: new Map() };
  for (const r of rowsOf(await state.query('SELECT ip_address, window_start, window_end, order_count, total_spent FROM suspicious_ips'))) {
    out.suspicious.set(`${r.ip_address}|${iso(r.window_start)}`, {
      window_end: iso(r.window_end),
      order_count: Number(r.order_count),
      total_spent: Number(r.total_spent),
    });
  }
  for (const r of rowsOf(
    await state.query(
      'SELECT stat_time, sum(total_orders) AS o, sum(total_sales) AS s, sum(suspicious_ip_count) AS c FROM realtime_stats_partial GROUP BY ALL',
    ),
  )) {
    out.stats.set(iso(r.stat_time), { total_orders: Number(r.o), total_sales: Number(r.s), suspicious_ip_count: Number(r.c) });
  }
  for (const r of rowsOf(
    await state.query('SELECT window_start, product_name, sum(order_count) AS o, sum(total_sales) AS s FROM popular_products_partial GROUP BY ALL'),
  )) {
    out.popular.set(`${iso(r.window_start)}|${r.product_name}`, { order_count: Number(r.o), total_sales: Number(r.s) });
  }
  return out;
}
