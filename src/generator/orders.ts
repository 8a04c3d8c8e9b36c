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

export const SCENARIOS = ['normal', 'bot', 'burst', 'near_miss', 'high_value', 'card_testing', 'late', 'malformed'] as const;
export type Scenario = (typeof SCENARIOS)[number];

/** Default share of orders per scenario (percent). */
export const DEFAULT_MIX: Readonly<Record<Scenario, number>> = {
  normal: 88,
  bot: 10,
  burst: 0.5,
  near_miss: 0.5,
  high_value: 0.5,
  card_testing: 0.5,
  late: 0,
  malformed: 0,
};

export const BOT_IP = '192.168.99.99';

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
}

/**
 * Stateful scenario actors. Bursts and near-misses are episodes with exact timing,
 * so their ground truth holds under true sliding windows:
 * - burst: 12 orders from one fresh IP within 22 s around a minute boundary.
 * - near_miss: one IP, groups of 9 orders within 8 s, groups 61 s apart: never 10 in any 60 s.
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
    // Centre the burst on the next minute boundary.
    const boundary = Math.ceil((secondMs + 15_000) / 60_000) * 60_000;
    for (let i = 0; i < 12; i++) {
      planned.push({ ms: boundary - 11_000 + i * 2_000 + rnd.int(0, 999), f: { ip, user: user(), product: rnd.pick(PRODUCTS), quantity: 1 }, label: 'burst' });
    }
  };
  const startNearMiss = (secondMs: number) => {
    const ip = freshIp('172.17');
    for (let g = 0; g < 3; g++) {
      for (let i = 0; i < 9; i++) {
        planned.push({ ms: secondMs + g * 61_000 + i * 1_000, f: { ip, user: user(), product: rnd.pick(PRODUCTS), quantity: 1 }, label: 'near_miss' });
      }
    }
  };
  const cardUser = `USER${String(rnd.int(1, 9999)).padStart(4, '0')}`;

  for (let second = 0; ; second++) {
    const secondMs = opts.startMs + second * 1000;
    const step: Planned[] = [];
    const add = (label: Scenario, f: Fields) => step.push({ ms: secondMs + rnd.int(0, 999), f, label });

    for (let i = quota('normal', mix.normal); i > 0; i--) add('normal', { ip: normalIp(), user: user(), product: rnd.pick(PRODUCTS), quantity: qty() });
    for (let i = quota('bot', mix.bot); i > 0; i--) add('bot', { ip: BOT_IP, user: 'USER0099', product: rnd.pick(PRODUCTS), quantity: 1 });
    // Episodes are started so that their orders average out to the configured share.
    for (let i = quota('burst', mix.burst / 12); i > 0; i--) startBurst(secondMs);
    for (let i = quota('near_miss', mix.near_miss / 27); i > 0; i--) startNearMiss(secondMs);
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
    for (let i = quota('card_testing', mix.card_testing); i > 0; i--) add('card_testing', { ip: normalIp(), user: cardUser, product: TINY, quantity: 1 });
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
      payment_method: rnd.weighted([
        ['card', 70],
        ['bank_transfer', 15],
        ['kakaopay', 10],
        ['naverpay', 5],
      ] as const),
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
