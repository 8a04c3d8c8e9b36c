/**
 * An independent recomputation of the built-in outputs: plain TypeScript over
 * the list of orders, written straight from the rules' definitions (README.md and queries/README.md). It shares no code
 * with the engine, DuckDB or the rule files, so agreement means something.
 */

export interface OracleOrder {
  order_id: string;
  /** Event time, ms since the epoch (UTC). */
  ms: number;
  product_name: string;
  price: number;
  quantity: number;
  ip_address: string;
  user_id: string;
  payment_method: string | null;
}

/** The oracle's view of an order event as produced (the JSON of README.md, *The order event*, with an offset). */
export function oracleOrder(json: {
  order_id: string;
  timestamp: string;
  product_name: string;
  price: number;
  quantity: number;
  ip_address: string;
  user_id: string;
  payment_method?: string | null;
}): OracleOrder {
  return {
    order_id: json.order_id,
    ms: Date.parse(json.timestamp),
    product_name: json.product_name,
    price: json.price,
    quantity: json.quantity,
    ip_address: json.ip_address,
    user_id: json.user_id,
    payment_method: json.payment_method ?? null,
  };
}

export interface Expected {
  popular: Map<string, { order_count: number; total_sales: number }>; // `${windowStartIso}|${product}`
  suspicious: Map<string, { window_end: string; order_count: number; total_spent: number }>; // `${ip}|${windowStartIso}`
  highValue: Map<string, { total_price: number; order_time: string }>; // order_id
  stats: Map<string, { total_orders: number; total_sales: number; suspicious_ip_count: number }>; // statTimeIso
  cardTesting: Map<string, { window_end: string; order_count: number; method_count: number }>; // `${user}|${windowStartIso}`
  sharedIp: Map<string, { window_end: string; order_count: number; user_count: number }>; // `${ip}|${windowStartIso}`
}

/**
 * Bursts, as queries/README.md defines them: per key, orders sorted by time; an order at t
 * is hot when the key's orders in (t - W, t] (every order at t included) number at
 * least `minOrders` and carry at least `minDistinct` distinct values of `valueOf`
 * (null: no value); the spans (t - W, t] of hot orders that overlap form one
 * burst, whose orders are those inside its spans. The window slides with counts
 * per value, so a key with hours of orders costs its orders, not their square.
 */
function bursts(
  orders: readonly OracleOrder[],
  keyOf: (o: OracleOrder) => string,
  windowMs: number,
  hot: { minOrders: number; minDistinct: number; valueOf: (o: OracleOrder) => string | null },
): { key: string; last: number; members: OracleOrder[] }[] {
  const byKey = new Map<string, OracleOrder[]>();
  for (const o of orders) (byKey.get(keyOf(o)) ?? byKey.set(keyOf(o), []).get(keyOf(o))!).push(o);
  const out: { key: string; last: number; members: OracleOrder[] }[] = [];
  for (const [key, list] of byKey) {
    list.sort((a, b) => a.ms - b.ms);
    const hotTimes: number[] = [];
    const counts = new Map<string, number>();
    const change = (o: OracleOrder, by: number) => {
      const v = hot.valueOf(o);
      if (v === null) return;
      const n = (counts.get(v) ?? 0) + by;
      if (n === 0) counts.delete(v);
      else counts.set(v, n);
    };
    for (let i = 0, lo = 0, hi = -1; i < list.length; i++) {
      const t = list[i]!.ms;
      if (i > 0 && list[i - 1]!.ms === t) continue;
      while (hi + 1 < list.length && list[hi + 1]!.ms <= t) change(list[++hi]!, 1);
      while (list[lo]!.ms <= t - windowMs) change(list[lo++]!, -1);
      if (hi - lo + 1 >= hot.minOrders && counts.size >= hot.minDistinct) hotTimes.push(t);
    }
    const spans: { first: number; last: number }[] = [];
    for (const t of hotTimes) {
      const b = spans[spans.length - 1];
      if (b && t - b.last < windowMs) b.last = t;
      else spans.push({ first: t, last: t });
    }
    for (const b of spans) out.push({ key, last: b.last, members: list.filter((o) => o.ms > b.first - windowMs && o.ms <= b.last) });
  }
  return out;
}

const distinct = <T>(xs: readonly T[]) => new Set(xs).size;

const iso = (ms: number) => new Date(ms).toISOString();

const DEFAULTS = { window: 30_000, burstWindow: 60_000, minOrders: 10, threshold: 500_000 };

/** First delivery of each order_id counts; later ones are duplicates. */
function firstDeliveries(all: readonly OracleOrder[]): OracleOrder[] {
  const seen = new Set<string>();
  return all.filter((o) => (seen.has(o.order_id) ? false : (seen.add(o.order_id), true)));
}

/** The burst rules' bursts (queries/README.md), by rule name. */
function ruleBursts(orders: readonly OracleOrder[], opts: typeof DEFAULTS) {
  return {
    // Suspicious IPs: hot when the IP has >= minOrders orders in (t - W, t].
    suspicious_ips: bursts(orders, (o) => o.ip_address, opts.burstWindow, { minOrders: opts.minOrders, minDistinct: 0, valueOf: () => null }),
    // Card testing: one user, >= 3 distinct payment methods in (t - 10 min, t].
    card_testing: bursts(orders, (o) => o.user_id, 600_000, { minOrders: 0, minDistinct: 3, valueOf: (o) => o.payment_method }),
    // Shared IPs: one IP, >= 5 distinct users in (t - 5 min, t].
    shared_ip_accounts: bursts(orders, (o) => o.ip_address, 300_000, { minOrders: 0, minDistinct: 5, valueOf: (o) => o.user_id }),
  };
}

/**
 * Each burst's evidence, keyed `${rule}|${key}|${windowStartIso}`: the first `max`
 * of its orders by event time (then order_id), and how many it has.
 */
export function recomputeEvidence(all: readonly OracleOrder[], max = 100): Map<string, { order_ids: string[]; order_count: number }> {
  const out = new Map<string, { order_ids: string[]; order_count: number }>();
  for (const [rule, list] of Object.entries(ruleBursts(firstDeliveries(all), DEFAULTS))) {
    for (const b of list) {
      const sorted = [...b.members].sort((x, y) => x.ms - y.ms || (x.order_id < y.order_id ? -1 : x.order_id > y.order_id ? 1 : 0));
      out.set(`${rule}|${b.key}|${iso(b.members[0]!.ms)}`, { order_ids: sorted.slice(0, max).map((o) => o.order_id), order_count: b.members.length });
    }
  }
  return out;
}

export function recompute(all: readonly OracleOrder[], opts = DEFAULTS): Expected {
  const orders = firstDeliveries(all);
  const found = ruleBursts(orders, opts);
  const bucket = (ms: number) => Math.floor(ms / opts.window) * opts.window;

  const popular = new Map<string, { order_count: number; total_sales: number }>();
  const stats = new Map<string, { total_orders: number; total_sales: number; suspicious_ip_count: number }>();
  const highValue = new Map<string, { total_price: number; order_time: string }>();
  for (const o of orders) {
    const amount = o.price * o.quantity;
    const pk = `${iso(bucket(o.ms))}|${o.product_name}`;
    const p = popular.get(pk) ?? { order_count: 0, total_sales: 0 };
    p.order_count++;
    p.total_sales += amount;
    popular.set(pk, p);
    const sk = iso(bucket(o.ms) + opts.window);
    const s = stats.get(sk) ?? { total_orders: 0, total_sales: 0, suspicious_ip_count: 0 };
    s.total_orders++;
    s.total_sales += amount;
    stats.set(sk, s);
    if (amount >= opts.threshold) highValue.set(o.order_id, { total_price: amount, order_time: iso(o.ms) });
  }

  const suspicious = new Map<string, { window_end: string; order_count: number; total_spent: number }>();
  const burstIpsByWindow = new Map<string, Set<string>>();
  for (const b of found.suspicious_ips) {
    suspicious.set(`${b.key}|${iso(b.members[0]!.ms)}`, {
      window_end: iso(b.last),
      order_count: b.members.length,
      total_spent: b.members.reduce((a, o) => a + o.price * o.quantity, 0),
    });
    for (const m of b.members) {
      const k = iso(bucket(m.ms) + opts.window);
      (burstIpsByWindow.get(k) ?? burstIpsByWindow.set(k, new Set()).get(k)!).add(b.key);
    }
  }
  for (const [k, ips] of burstIpsByWindow) stats.get(k)!.suspicious_ip_count = ips.size;

  const cardTesting = new Map<string, { window_end: string; order_count: number; method_count: number }>();
  const methods = (w: OracleOrder[]) => distinct(w.flatMap((o) => (o.payment_method === null ? [] : [o.payment_method])));
  for (const b of found.card_testing) {
    cardTesting.set(`${b.key}|${iso(b.members[0]!.ms)}`, { window_end: iso(b.last), order_count: b.members.length, method_count: methods(b.members) });
  }
  const sharedIp = new Map<string, { window_end: string; order_count: number; user_count: number }>();
  const users = (w: OracleOrder[]) => distinct(w.map((o) => o.user_id));
  for (const b of found.shared_ip_accounts) {
    sharedIp.set(`${b.key}|${iso(b.members[0]!.ms)}`, { window_end: iso(b.last), order_count: b.members.length, user_count: users(b.members) });
  }
  return { popular, suspicious, highValue, stats, cardTesting, sharedIp };
}

/** Reads the pipeline's tables in the same shape as the oracle's. */
export async function readTables(pool: { query: (sql: string) => Promise<{ rows: Record<string, unknown>[] }> }): Promise<Expected> {
  const ts = (v: unknown) => (v as Date).toISOString();
  const popular = new Map<string, { order_count: number; total_sales: number }>();
  for (const r of (await pool.query('SELECT window_start, product_name, order_count, total_sales FROM popular_products')).rows) {
    popular.set(`${ts(r.window_start)}|${r.product_name}`, { order_count: Number(r.order_count), total_sales: Number(r.total_sales) });
  }
  const suspicious = new Map<string, { window_end: string; order_count: number; total_spent: number }>();
  for (const r of (await pool.query('SELECT ip_address, window_start, window_end, order_count, total_spent FROM suspicious_ips')).rows) {
    suspicious.set(`${r.ip_address}|${ts(r.window_start)}`, {
      window_end: ts(r.window_end),
      order_count: Number(r.order_count),
      total_spent: Number(r.total_spent),
    });
  }
  const highValue = new Map<string, { total_price: number; order_time: string }>();
  for (const r of (await pool.query('SELECT order_id, total_price, order_time FROM high_value_orders')).rows) {
    highValue.set(String(r.order_id), { total_price: Number(r.total_price), order_time: ts(r.order_time) });
  }
  const stats = new Map<string, { total_orders: number; total_sales: number; suspicious_ip_count: number }>();
  for (const r of (await pool.query('SELECT stat_time, total_orders, total_sales, suspicious_ip_count FROM realtime_stats')).rows) {
    stats.set(ts(r.stat_time), {
      total_orders: Number(r.total_orders),
      total_sales: Number(r.total_sales),
      suspicious_ip_count: Number(r.suspicious_ip_count),
    });
  }
  const cardTesting = new Map<string, { window_end: string; order_count: number; method_count: number }>();
  // A test may run without the rule (and so without its table): then it has no rows.
  const cardRows = await pool.query('SELECT user_id, window_start, window_end, order_count, method_count FROM card_testing').catch(() => ({ rows: [] }));
  for (const r of cardRows.rows) {
    cardTesting.set(`${r.user_id}|${ts(r.window_start)}`, {
      window_end: ts(r.window_end),
      order_count: Number(r.order_count),
      method_count: Number(r.method_count),
    });
  }
  const sharedIp = new Map<string, { window_end: string; order_count: number; user_count: number }>();
  for (const r of (await pool.query('SELECT ip_address, window_start, window_end, order_count, user_count FROM shared_ip_accounts')).rows) {
    sharedIp.set(`${r.ip_address}|${ts(r.window_start)}`, {
      window_end: ts(r.window_end),
      order_count: Number(r.order_count),
      user_count: Number(r.user_count),
    });
  }
  return { popular, suspicious, highValue, stats, cardTesting, sharedIp };
}

/** Sorted entries, for an exact comparison that prints readable differences. */
export const entries = <V>(m: Map<string, V>) => [...m].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
