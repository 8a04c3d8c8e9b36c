/**
 * The built-in rules keep bounded state (the burst rules carry each key's open
 * burst from batch to batch instead of rereading its history), yet their results
 * equal the independent recomputation exactly: long bot runs, card testers and
 * shared IPs that span many state horizons, bursts that flicker on and off around
 * the threshold, orders out of order within the lateness, micro-batches cut at
 * arbitrary points, retention after every batch. Real engine and DuckDB, in
 * memory; no Kafka or PostgreSQL.
 */
import t from 'tap';
import { generateOrders } from '../src/generator/orders.js';
import { runInMemory } from '../src/compose.js';
import { loadConfig } from '../src/config.js';
import { rowsOf } from '../src/types.js';
import { entries, oracleOrder, recompute, recomputeEvidence, type Expected, type OracleOrder } from './oracle.js';

const QUERIES = new URL('../queries', import.meta.url).pathname;

/** A small deterministic generator for the test's own choices (batch cuts, drops). */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}

/** A key that keeps its burst going for hours: one order every `everyS` seconds, cycling through `values`. */
interface Actor {
  field: 'user_id' | 'ip_address';
  key: string;
  /** The other field's values (user_id for an IP, payment_method for a user), in turn. */
  values: string[];
  everyS: number;
  /** Share of its orders dropped at random, so that it hovers around the threshold. */
  drop: number;
}

interface Case {
  name: string;
  /** Kafka partitions, each IP on one. A rule keyed by user_id is exact per partition only: with one. */
  partitions: 1 | 2;
  actors: Actor[];
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
    name: 'a bot that never pauses, its burst far longer than the orders suspicious_ips reads',
    partitions: 2,
    actors: [],
    seed: 11,
    count: 20_000,
    rate: 12,
    mix: { normal: 80, bot: 15, burst: 3, near_miss: 2 },
    dropBot: 0,
    maxBatch: 400,
  },
  {
    name: 'a bot hovering around 10 orders a minute: bursts start, stop and merge',
    partitions: 2,
    actors: [],
    seed: 12,
    count: 12_000,
    rate: 2,
    mix: { normal: 82, bot: 13, burst: 3, near_miss: 2 },
    dropBot: 0.3,
    maxBatch: 40,
  },
  {
    name: 'card testers and shared IPs active for hours, steady and hovering around the threshold',
    partitions: 1,
    actors: [
      { field: 'user_id', key: 'USER77777', values: ['card', 'kakaopay', 'naverpay'], everyS: 100, drop: 0 },
      { field: 'user_id', key: 'USER77778', values: ['card', 'kakaopay', 'naverpay', 'card'], everyS: 150, drop: 0.25 },
      { field: 'ip_address', key: '10.9.9.9', values: ['USER70001', 'USER70002', 'USER70003', 'USER70004', 'USER70005', 'USER70006'], everyS: 40, drop: 0 },
      { field: 'ip_address', key: '10.9.9.8', values: ['USER70011', 'USER70012', 'USER70013', 'USER70014', 'USER70015'], everyS: 55, drop: 0.2 },
    ],
    seed: 13,
    count: 16_000,
    rate: 2,
    mix: { normal: 80, bot: 10, burst: 2, near_miss: 4, card_testing: 2, shared_ip: 2 },
    dropBot: 0,
    maxBatch: 60,
  },
];

/** An actor's orders from `startMs` to `endMs`, as the generator writes them. */
function actorOrders(a: Actor, startMs: number, endMs: number, rnd: () => number): { ms: number; value: string }[] {
  const out: { ms: number; value: string }[] = [];
  for (let ms = startMs, i = 0; ms < endMs; ms += a.everyS * 1000, i++) {
    if (rnd() < a.drop) continue;
    const other = a.values[i % a.values.length]!;
    const order = {
      order_id: `ACT${ms}${a.key}`,
      timestamp: new Date(ms).toISOString(),
      user_id: a.field === 'user_id' ? a.key : other,
      product_id: 'P013',
      product_name: '기프트카드 1000',
      price: 1000,
      quantity: 1,
      ip_address: a.field === 'ip_address' ? a.key : `10.8.${i % 250}.${(i >> 8) % 250}`,
      payment_method: a.field === 'user_id' ? other : 'card',
    };
    out.push({ ms, value: JSON.stringify(order) });
  }
  return out;
}

for (const c of CASES) {
  t.test(c.name, async (t) => {
    const rnd = lcg(c.seed);
    const gen = generateOrders({ seed: c.seed, rate: c.rate, startMs: Date.parse('2025-12-30T12:00:00Z'), mix: c.mix });
    const generated = Array.from({ length: c.count }, () => gen.next().value!).filter((o) => !(o.label === 'bot' && rnd() < c.dropBot));
    // The actors' orders go in among the generated ones at their event time.
    const acting = c.actors.flatMap((a) => actorOrders(a, generated[0]!.eventMs, generated[generated.length - 1]!.eventMs, rnd)).sort((a, b) => a.ms - b.ms);
    const values: { partition: number; value: Buffer }[] = [];
    const orders: OracleOrder[] = [];
    const push = (value: string) => {
      const j = JSON.parse(value);
      // Keyed by IP as in Kafka: each IP on one partition.
      values.push({ partition: c.partitions === 2 && j.ip_address.endsWith('9') ? 1 : 0, value: Buffer.from(value) });
      orders.push(oracleOrder(j));
    };
    for (const o of generated) {
      while (acting.length > 0 && acting[0]!.ms <= o.eventMs) push(acting.shift()!.value);
      push(o.value);
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
    t.ok(c.dropBot > 0 || longest > 1_500, `the longest burst has ${longest} orders`);
    t.same(entries(actual.suspicious), entries(expected.suspicious), 'suspicious_ips equals the recomputation');
    t.same(entries(actual.sharedIp), entries(expected.sharedIp), `shared_ip_accounts equals the recomputation (${expected.sharedIp.size} bursts)`);
    if (c.partitions === 1) {
      t.same(entries(actual.cardTesting), entries(expected.cardTesting), `card_testing equals the recomputation (${expected.cardTesting.size} bursts)`);
      // Bursts far longer than the 10 min of orders kept: carried, not recomputed.
      const span = (m: Map<string, { window_end: string }>) =>
        Math.max(...[...m].map(([k, v]) => (Date.parse(v.window_end) - Date.parse(k.split('|')[1]!)) / 60_000));
      t.ok(span(expected.cardTesting) > 120, `the longest card-testing burst lasts ${span(expected.cardTesting).toFixed(0)} min`);
      t.ok(span(expected.sharedIp) > 120, `the longest shared-IP burst lasts ${span(expected.sharedIp).toFixed(0)} min`);
    }
    // Evidence: every burst's first 100 orders and its count, however long the burst.
    const rules = c.partitions === 1 ? ['suspicious_ips', 'card_testing', 'shared_ip_accounts'] : ['suspicious_ips', 'shared_ip_accounts'];
    const evidence = [...recomputeEvidence(orders)].filter(([k]) => rules.includes(k.split('|')[0]!));
    t.same(
      entries(await readEvidence(state, rules)),
      entries(new Map(evidence)),
      `detection_evidence and detection_totals equal the recomputation (${evidence.length} bursts)`,
    );
    t.same(entries(actual.stats), entries(expected.stats), 'realtime_stats equals the recomputation');
    t.same(entries(actual.popular), entries(expected.popular), 'popular_products equals the recomputation');

    // State: one window of the longest burst rule (card_testing: 10 min) and the lateness
    // behind each partition's watermark (its latest event time minus the 5 s lateness), retention
    // having run after the last batch.
    const retained = Number((await state.query('SELECT count(*) FROM orders')).columns[0]![0]);
    const partitionOf = new Map(values.map((v, i) => [orders[i]!.order_id, v.partition]));
    const latest = [0, 1].map((p) => orders.filter((o) => partitionOf.get(o.order_id) === p).reduce((m, o) => Math.max(m, o.ms), 0));
    const inHorizon = orders.filter((o) => o.ms >= latest[partitionOf.get(o.order_id)!]! - 610_000).length;
    t.equal(retained, inHorizon, `${retained} of ${orders.length} orders retained at the end: those at most 610 s behind their partition's latest`);
  });
}

async function readDuck(state: Awaited<ReturnType<typeof runInMemory>>['state']): Promise<Expected> {
  const iso = (v: unknown) => new Date(String(v)).toISOString();
  const out: Expected = { popular: new Map(), suspicious: new Map(), highValue: new Map(), stats: new Map(), cardTesting: new Map(), sharedIp: new Map() };
  for (const r of rowsOf(await state.query('SELECT ip_address, window_start, window_end, order_count, total_spent FROM suspicious_ips'))) {
    out.suspicious.set(`${r.ip_address}|${iso(r.window_start)}`, {
      window_end: iso(r.window_end),
      order_count: Number(r.order_count),
      total_spent: Number(r.total_spent),
    });
  }
  for (const r of rowsOf(await state.query('SELECT user_id, window_start, window_end, order_count, method_count FROM card_testing'))) {
    out.cardTesting.set(`${r.user_id}|${iso(r.window_start)}`, {
      window_end: iso(r.window_end),
      order_count: Number(r.order_count),
      method_count: Number(r.method_count),
    });
  }
  for (const r of rowsOf(await state.query('SELECT ip_address, window_start, window_end, order_count, user_count FROM shared_ip_accounts'))) {
    out.sharedIp.set(`${r.ip_address}|${iso(r.window_start)}`, {
      window_end: iso(r.window_end),
      order_count: Number(r.order_count),
      user_count: Number(r.user_count),
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

/** detection_evidence and detection_totals of `rules`, in recomputeEvidence's shape. */
async function readEvidence(state: Awaited<ReturnType<typeof runInMemory>>['state'], rules: readonly string[]) {
  const out = new Map<string, { order_ids: string[]; order_count: number }>();
  const list = rules.map((r) => `'${r}'`).join(', ');
  for (const r of rowsOf(await state.query(`SELECT rule, key_value, window_start, order_count FROM detection_totals WHERE rule IN (${list})`))) {
    out.set(`${r.rule}|${r.key_value}|${new Date(String(r.window_start)).toISOString()}`, { order_ids: [], order_count: Number(r.order_count) });
  }
  const orders = await state.query(
    `SELECT rule, key_value, window_start, order_id FROM detection_evidence WHERE rule IN (${list}) ORDER BY event_time, order_id`,
  );
  for (const r of rowsOf(orders)) {
    const k = `${r.rule}|${r.key_value}|${new Date(String(r.window_start)).toISOString()}`;
    (out.get(k) ?? out.set(k, { order_ids: [], order_count: -1 }).get(k)!).order_ids.push(String(r.order_id));
  }
  return out;
}
