/**
 * An independent recomputation of the four built-in outputs: plain TypeScript over
 * the list of orders, written straight from design.md section 3. It shares no code
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
}

/** The oracle's view of an order event as produced (the JSON of design.md section 1, with an offset). */
export function oracleOrder(json: {
  order_id: string;
  timestamp: string;
  product_name: string;
  price: number;
  quantity: number;
  ip_address: string;
}): OracleOrder {
  return {
    order_id: json.order_id,
    ms: Date.parse(json.timestamp),
    product_name: json.product_name,
    price: json.price,
    quantity: json.quantity,
    ip_address: json.ip_address,
  };
}

export interface Expected {
  popular: Map<string, { order_count: number; total_sales: number }>; // `${windowStartIso}|${product}`
  suspicious: Map<string, { window_end: string; order_count: number; total_spent: number }>; // `${ip}|${windowStartIso}`
  highValue: Map<string, { total_price: number; order_time: string }>; // order_id
  stats: Map<string, { total_orders: number; total_sales: number; suspicious_ip_count: number }>; // statTimeIso
}

const iso = (ms: number) => new Date(ms).toISOString();

export function recompute(all: readonly OracleOrder[], opts = { window: 30_000, burstWindow: 60_000, minOrders: 10, threshold: 500_000 }): Expected {
  // First delivery of each order_id counts; later ones are duplicates.
  const seen = new Set<string>();
  const orders = all.filter((o) => (seen.has(o.order_id) ? false : (seen.add(o.order_id), true)));
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

  // Suspicious IPs: per IP, sort by time; an order is hot when the IP has >= minOrders
  // orders in (t - W, t]; overlapping spans (t - W, t] of hot orders form one burst.
  const suspicious = new Map<string, { window_end: string; order_count: number; total_spent: number }>();
  const burstIpsByWindow = new Map<string, Set<string>>();
  const byIp = new Map<string, OracleOrder[]>();
  for (const o of orders) (byIp.get(o.ip_address) ?? byIp.set(o.ip_address, []).get(o.ip_address)!).push(o);
  for (const [ip, list] of byIp) {
    list.sort((a, b) => a.ms - b.ms);
    const hot: number[] = [];
    let lo = 0;
    for (let i = 0; i < list.length; i++) {
      // All orders with the same time count as "itself included".
      let hi = i;
      while (hi + 1 < list.length && list[hi + 1]!.ms === list[i]!.ms) hi++;
      while (list[lo]!.ms <= list[i]!.ms - opts.burstWindow) lo++;
      if (hi - lo + 1 >= opts.minOrders) hot.push(list[i]!.ms);
    }
    const bursts: { first: number; last: number }[] = [];
    for (const t of hot) {
      const b = bursts[bursts.length - 1];
      if (b && t - b.last < opts.burstWindow) b.last = t;
      else bursts.push({ first: t, last: t });
    }
    for (const b of bursts) {
      const members = list.filter((o) => o.ms > b.first - opts.burstWindow && o.ms <= b.last);
      suspicious.set(`${ip}|${iso(members[0]!.ms)}`, {
        window_end: iso(b.last),
        order_count: members.length,
        total_spent: members.reduce((a, o) => a + o.price * o.quantity, 0),
      });
      for (const m of members) {
        const k = iso(bucket(m.ms) + opts.window);
        (burstIpsByWindow.get(k) ?? burstIpsByWindow.set(k, new Set()).get(k)!).add(ip);
      }
    }
  }
  for (const [k, ips] of burstIpsByWindow) stats.get(k)!.suspicious_ip_count = ips.size;
  return { popular, suspicious, highValue, stats };
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
  return { popular, suspicious, highValue, stats };
}

/** Sorted entries, for an exact comparison that prints readable differences. */
export const entries = <V>(m: Map<string, V>) => [...m].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
