/**
 * Order synthesis: realistic traffic with labelled fraud scenarios, as a pure,
 * seeded function of its options (no clock, no I/O). Each order carries its ground
 * truth in a `label` field, which the detector ignores.
 *
 * Event time advances in one-second steps at `rate` orders per second. Within a
 * step the orders are shuffled (out of order by up to a second, well within the
 * allowed lateness), except `late` orders, which are stamped 30 s in the past.
 */
import { Random } from './random.js';

export const PRODUCTS = [
  { id: 'P001', name: '노트북', price: 1_500_000 },
  { id: 'P002', name: '스마트폰', price: 800_000 },
  { id: 'P003', name: '태블릿', price: 600_000 },
  { id: 'P004', name: '모니터', price: 350_000 },
  { id: 'P005', name: '무선 이어폰', price: 180_000 },
  { id: 'P006', name: '스마트워치', price: 250_000 },
  { id: 'P007', name: '키보드', price: 120_000 },
  { id: 'P008', name: '마우스', price: 50_000 },
  { id: 'P009', name: '충전기', price: 30_000 },
  { id: 'P010', name: '케이스', price: 20_000 },
] as const;

/** Products that only the near-miss scenarios use: totals just under and exactly at 500,000 KRW. */
const NEAR_MISS = { id: 'P011', name: '외장 SSD', price: 499_999 };
const AT_THRESHOLD = { id: 'P012', name: '게이밍 헤드셋', price: 250_000 };
const TINY = { id: 'P013', name: '기프트카드 1000', price: 1_000 };

export const SCENARIOS = ['normal', 'bot', 'burst', 'near_miss', 'high_value', 'card_testing', 'shared_ip', 'blocked', 'allowed', 'late', 'malformed'] as const;
export type Scenario = (typeof SCENARIOS)[number];

/** Default share of orders per scenario (percent). */
export const DEFAULT_MIX: Readonly<Record<Scenario, number>> = {
  normal: 87.5,
  bot: 10,
  burst: 0.5,
  near_miss: 0.5,
  high_value: 0.5,
  card_testing: 0.5,
  shared_ip: 0.5,
  // They need the example entries of queries/lists/ (a shop's own lists replace them).
  blocked: 0,
  allowed: 0,
  late: 0,
  malformed: 0,
};

export const BOT_IP = '192.168.99.99';
/** The example entries of queries/lists/: documentation addresses (RFC 5737) and a user id normal traffic never has. */
export const BLOCKED_IP = '198.51.100.66';
export const BLOCKED_USER = 'USER0000';
/** The one account behind BLOCKED_IP (not itself listed); normal traffic never has it either. */
const BLOCKED_IP_USER = 'USER00001';
/** Blocked orders come at most this often: a careful fraudster, never also a bot or a shared IP. */
const BLOCKED_EVERY_S = 7;
export const ALLOWED_IP = '203.0.113.10';

export interface GeneratorOptions {
  seed: number;
  /** Orders per second of event time. */
  rate: number;
  /** Event time of the first order, ms since the epoch. */
  startMs: number;
  mix?: Partial<Record<Scenario, number>>;
  /** Offset written into timestamps, minutes east of UTC (540 = Asia/Seoul). */
  utcOffsetMinutes?: number;
}

export interface GeneratedOrder {
  /** Kafka key: the IP address (or a placeholder for malformed messages). */
  key: string;
  /** The message as sent (JSON, or deliberately broken text for `malformed`). */
  value: string;
  label: Scenario;
  eventMs: number;
}

interface Fields {
  ip: string;
  user: string;
  product: { id: string; name: string; price: number };
  quantity: number;
  /** The payment method; by default the user's usual one. */
  method?: string;
}

const METHODS = ['card', 'bank_transfer', 'kakaopay', 'naverpay'] as const;

/**
 * A shopper pays the way they always do: card for 70% of users, bank transfer
 * 15%, kakaopay 10%, naverpay 5%. Only card testing switches methods, so that
 * its ground truth is its own.
 */
export function usualMethod(user: string): string {
  const n = Number(/\d+/.exec(user)?.[0] ?? 0) % 20;
  return n < 14 ? 'card' : n < 17 ? 'bank_transfer' : n < 19 ? 'kakaopay' : 'naverpay';
}

/**
 * Stateful scenario actors. Bursts and near-misses are episodes with exact timing,
 * so their ground truth holds under true sliding windows:
 * - burst: 12 orders of one account from one fresh IP within 22 s around a minute boundary.
 * - card_testing: one fresh user paying 5 times within 3 min with 4 distinct methods.
 * - shared_ip: 6 fresh users on one fresh IP within 3 min, 7 orders.
 * - blocked: in turn, an order from the block-listed IP (always by one account)
 *   and one by the block-listed user (from any IP), at most one every 7 s.
 * - allowed: 12 fresh users behind the allow-listed IP (an office NAT) within
 *   24 s: a bot's pace and a shared IP's spread, never to be reported as either.
 * - near_miss, each kind a third of the share: one IP, groups of 9 orders within
 *   8 s, groups 61 s apart (never 10 in any 60 s); one user with 3 methods, never 3
 *   within 10 min (the third comes exactly 10 min after the one it would need);
 *   one IP with 5 users, never 5 within 5 min (likewise).
 */
export function* generateOrders(opts: GeneratorOptions): Generator<GeneratedOrder> {
  const rnd = new Random(opts.seed);
  const mix = { ...DEFAULT_MIX, ...opts.mix };
  const offsetMin = opts.utcOffsetMinutes ?? 540;
  let seq = 0;
  let ipSeq = 0;
  const freshIp = (prefix: string) => {
    ipSeq++;
    return `${prefix}.${(ipSeq >> 8) & 255}.${ipSeq & 255}`;
  };
  // Five digits: never one of the four-digit shoppers of normal traffic.
  let userSeq = 0;
  let blockedSeq = 0;
  const freshUser = () => `USER${10_000 + (userSeq++ % 90_000)}`;
  const normalIp = () => `${rnd.int(1, 223)}.${rnd.int(0, 255)}.${rnd.int(0, 255)}.${rnd.int(1, 254)}`;
  const user = () => `USER${String(rnd.int(1, 9999)).padStart(4, '0')}`;
  const qty = () =>
    rnd.weighted([
      [1, 70],
      [2, 22],
      [3, 8],
    ] as const);

  const perSecond = (share: number) => (opts.rate * share) / 100;
  const carry: Record<string, number> = {};
  /** How many orders a scenario gets this second: fractional shares carry over, so low rates still add up. */
  const quota = (name: string, share: number) => {
    const x = (carry[name] ?? 0) + perSecond(share);
    const n = Math.floor(x);
    carry[name] = x - n;
    return n;
  };

  // Episodes scheduled ahead: [eventMs, fields, label]
  type Planned = { ms: number; f: Fields; label: Scenario };
  let planned: Planned[] = [];
  const startBurst = (secondMs: number) => {
    const ip = freshIp('172.16');
    const account = user();
    // Centre the burst on the next minute boundary.
    const boundary = Math.ceil((secondMs + 15_000) / 60_000) * 60_000;
    for (let i = 0; i < 12; i++) {
      planned.push({ ms: boundary - 11_000 + i * 2_000 + rnd.int(0, 999), f: { ip, user: account, product: rnd.pick(PRODUCTS), quantity: 1 }, label: 'burst' });
    }
  };
  const startNearMiss = (secondMs: number) => {
    const ip = freshIp('172.17');
    const account = user();
    for (let g = 0; g < 3; g++) {
      for (let i = 0; i < 9; i++) {
        planned.push({ ms: secondMs + g * 61_000 + i * 1_000, f: { ip, user: account, product: rnd.pick(PRODUCTS), quantity: 1 }, label: 'near_miss' });
      }
    }
  };
  const startCardTesting = (secondMs: number) => {
    const tester = freshUser();
    const methods = [...METHODS];
    rnd.shuffle(methods);
    methods.push(methods[0]!);
    methods.forEach((method, i) => {
      planned.push({
        ms: secondMs + i * 45_000 + rnd.int(0, 999),
        f: { ip: normalIp(), user: tester, product: TINY, quantity: 1, method },
        label: 'card_testing',
      });
    });
  };
  const startCardNearMiss = (secondMs: number) => {
    const tester = freshUser();
    // card, kakaopay, card, then naverpay exactly 10 min after the kakaopay: its
    // window (t - 10 min, t] no longer holds it.
    const steps: [number, string][] = [
      [0, 'card'],
      [60_000, 'kakaopay'],
      [120_000, 'card'],
      [660_000, 'naverpay'],
    ];
    for (const [at, method] of steps) {
      planned.push({ ms: secondMs + at, f: { ip: normalIp(), user: tester, product: TINY, quantity: 1, method }, label: 'near_miss' });
    }
  };
  const startSharedIp = (secondMs: number) => {
    const ip = freshIp('172.18');
    const users = Array.from({ length: 6 }, () => freshUser());
    [...users, users[0]!].forEach((u, i) => {
      planned.push({ ms: secondMs + i * 30_000 + rnd.int(0, 999), f: { ip, user: u, product: rnd.pick(PRODUCTS), quantity: 1 }, label: 'shared_ip' });
    });
  };
  const startAllowed = (secondMs: number) => {
    for (let i = 0; i < 12; i++) {
      planned.push({
        ms: secondMs + i * 2_000 + rnd.int(0, 999),
        f: { ip: ALLOWED_IP, user: freshUser(), product: rnd.pick(PRODUCTS), quantity: 1 },
        label: 'allowed',
      });
    }
  };
  const startSharedNearMiss = (secondMs: number) => {
    const ip = freshIp('172.19');
    const [a, b, c, d, e] = Array.from({ length: 5 }, () => freshUser());
    // The fifth user comes exactly 5 min after the first, whose order then leaves the window.
    const steps: [number, string][] = [
      [0, a!],
      [30_000, b!],
      [60_000, c!],
      [90_000, d!],
      [100_000, b!],
      [300_000, e!],
    ];
    for (const [at, u] of steps) planned.push({ ms: secondMs + at, f: { ip, user: u, product: rnd.pick(PRODUCTS), quantity: 1 }, label: 'near_miss' });
  };

  for (let second = 0; ; second++) {
    const secondMs = opts.startMs + second * 1000;
    const step: Planned[] = [];
    const add = (label: Scenario, f: Fields) => step.push({ ms: secondMs + rnd.int(0, 999), f, label });

    for (let i = quota('normal', mix.normal); i > 0; i--) add('normal', { ip: normalIp(), user: user(), product: rnd.pick(PRODUCTS), quantity: qty() });
    for (let i = quota('bot', mix.bot); i > 0; i--) add('bot', { ip: BOT_IP, user: 'USER0099', product: rnd.pick(PRODUCTS), quantity: 1 });
    // Episodes are started so that their orders average out to the configured share.
    for (let i = quota('burst', mix.burst / 12); i > 0; i--) startBurst(secondMs);
    for (let i = quota('near_miss', mix.near_miss / 3 / 27); i > 0; i--) startNearMiss(secondMs);
    for (let i = quota('near_miss_card', mix.near_miss / 3 / 4); i > 0; i--) startCardNearMiss(secondMs);
    for (let i = quota('near_miss_shared', mix.near_miss / 3 / 6); i > 0; i--) startSharedNearMiss(secondMs);
    for (let i = quota('high_value', mix.high_value); i > 0; i--) {
      const kind = rnd.int(0, 2);
      const f: Fields =
        kind === 0
          ? { ip: normalIp(), user: user(), product: NEAR_MISS, quantity: 1 } // 499,999: not high-value
          : kind === 1
            ? { ip: normalIp(), user: user(), product: AT_THRESHOLD, quantity: 2 } // 500,000: high-value
            : { ip: normalIp(), user: user(), product: PRODUCTS[0], quantity: rnd.int(1, 3) };
      add('high_value', f);
    }
    for (let i = quota('card_testing', mix.card_testing / 5); i > 0; i--) startCardTesting(secondMs);
    for (let i = quota('shared_ip', mix.shared_ip / 7); i > 0; i--) startSharedIp(secondMs);
    for (let i = quota('blocked', Math.min(mix.blocked, 100 / BLOCKED_EVERY_S / opts.rate)); i > 0; i--) {
      const byIp = blockedSeq++ % 2 === 0;
      add('blocked', { ip: byIp ? BLOCKED_IP : normalIp(), user: byIp ? BLOCKED_IP_USER : BLOCKED_USER, product: rnd.pick(PRODUCTS), quantity: qty() });
    }
    for (let i = quota('allowed', mix.allowed / 12); i > 0; i--) startAllowed(secondMs);
    for (let i = quota('late', mix.late); i > 0; i--) {
      step.push({ ms: secondMs - 30_000 - rnd.int(0, 9_999), f: { ip: normalIp(), user: user(), product: rnd.pick(PRODUCTS), quantity: 1 }, label: 'late' });
    }
    const due = planned.filter((p) => p.ms < secondMs + 1000);
    if (due.length > 0) {
      planned = planned.filter((p) => p.ms >= secondMs + 1000);
      step.push(...due);
    }
    rnd.shuffle(step);
    for (const p of step) yield render(p.ms, p.f, p.label);
    for (let i = quota('malformed', mix.malformed); i > 0; i--) yield malformed(secondMs);
  }

  function render(ms: number, f: Fields, label: Scenario): GeneratedOrder {
    seq++;
    const order = {
      order_id: `ORD${ms}${String(seq).padStart(6, '0')}`,
      timestamp: isoWithOffset(ms, offsetMin),
      user_id: f.user,
      product_id: f.product.id,
      product_name: f.product.name,
      price: f.product.price,
      quantity: f.quantity,
      ip_address: f.ip,
      payment_method: f.method ?? usualMethod(f.user),
      label,
    };
    return { key: f.ip, value: JSON.stringify(order), label, eventMs: ms };
  }

  function malformed(ms: number): GeneratedOrder {
    seq++;
    const base = {
      order_id: `ORD${ms}${String(seq).padStart(6, '0')}`,
      timestamp: isoWithOffset(ms, offsetMin),
      user_id: user(),
      product_id: 'P001',
      product_name: '노트북',
      price: 1_500_000,
      quantity: 1,
      ip_address: normalIp(),
    };
    const kind = rnd.int(0, 5);
    const value =
      kind === 0
        ? '{"order_id": "broken' // not JSON
        : kind === 1
          ? JSON.stringify({ ...base, price: undefined }) // missing field
          : kind === 2
            ? JSON.stringify({ ...base, price: -100 }) // negative price
            : kind === 3
              ? JSON.stringify({ ...base, quantity: 0 })
              : kind === 4
                ? JSON.stringify({ ...base, ip_address: '999.1.1.1' })
                : JSON.stringify({ ...base, timestamp: 'yesterday' });
    return { key: 'malformed', value, label: 'malformed', eventMs: ms };
  }
}

/** `2025-12-30T21:10:15.123+09:00`: the wall time in the given offset, with the offset. */
export function isoWithOffset(ms: number, offsetMinutes: number): string {
  const local = new Date(ms + offsetMinutes * 60_000).toISOString().slice(0, 23);
  const sign = offsetMinutes >= 0 ? '+' : '-';
  const abs = Math.abs(offsetMinutes);
  return `${local}${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
}
