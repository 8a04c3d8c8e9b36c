/**
 * Detection quality: the generator's labelled traffic, produced by `fraud-sql
 * generate` into the real broker and run through the real pipeline, scored per
 * scenario against the labels. At default thresholds every bot burst, every shared
 * IP and every high-value order is found, and no normal or near-miss IP is flagged.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { ipActivity, maxDistinctWithin, maxWithin } from '../src/generator/truth.js';
import { BROKERS, scenario } from './helpers.js';

const run = promisify(execFile);
const CLI = new URL('../dist/cli.js', import.meta.url).pathname;

t.test('labelled scenarios: recall and precision per scenario', async (t) => {
  const s = await scenario(t, { partitions: 4 });
  const dir = t.testdir();
  const start = new Date(Date.now() - 600_000).toISOString();
  const common = [
    'generate',
    '--seed',
    '77',
    '--rate',
    '100',
    '--count',
    '40000',
    '--fast',
    '--start',
    start,
    '--mix',
    'normal=83,bot=10,burst=2,near_miss=2,high_value=1,card_testing=1,shared_ip=1',
  ];
  await run('node', [CLI, ...common, '--brokers', BROKERS.join(','), '--topic', s.topic]);
  await run('node', [CLI, ...common, '--output', `${dir}/orders.jsonl`]);
  const orders = readFileSync(`${dir}/orders.jsonl`, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));

  const app = await s.startApp();
  await s.drained(app, 300_000);

  const flagged = new Set((await s.pool.query('SELECT DISTINCT ip_address FROM suspicious_ips')).rows.map((r) => r.ip_address as string));
  const hvFound = new Set((await s.pool.query('SELECT order_id FROM high_value_orders')).rows.map((r) => r.order_id as string));

  // Ground truth per IP: its scenario, and whether it ever had 10 orders within 60 s.
  const ipTimes = ipActivity(orders);
  const reaches10 = (times: number[]) => maxWithin(times) >= 10;
  const rows: string[] = [];
  const score = (label: string, shouldFlag: (times: number[]) => boolean) => {
    const ips = [...ipTimes].filter(([, e]) => e.label === label);
    const positives = ips.filter(([, e]) => shouldFlag(e.times));
    const tp = positives.filter(([ip]) => flagged.has(ip)).length;
    const fp = ips.filter(([ip, e]) => flagged.has(ip) && !shouldFlag(e.times)).length;
    rows.push(
      `${label.padEnd(13)} IPs ${String(ips.length).padStart(6)}  should flag ${String(positives.length).padStart(4)}  flagged ${String(tp + fp).padStart(4)}  recall ${positives.length ? ((100 * tp) / positives.length).toFixed(1) + '%' : 'n/a'}  precision ${tp + fp ? ((100 * tp) / (tp + fp)).toFixed(1) + '%' : 'n/a'}`,
    );
    return { ips: ips.length, positives: positives.length, tp, fp };
  };
  const bot = score('bot', () => true);
  const burst = score('burst', reaches10);
  const nearMiss = score('near_miss', () => false);
  const normal = score('normal', () => false);
  const cardTesting = score('card_testing', () => false);

  const hvTruth = orders.filter((o) => o.price * o.quantity >= 500_000).map((o) => o.order_id as string);
  const hvTp = hvTruth.filter((id) => hvFound.has(id)).length;
  rows.push(
    `high_value    orders ${hvTruth.length}  found ${hvFound.size}  recall ${((100 * hvTp) / hvTruth.length).toFixed(1)}%  precision ${((100 * hvTp) / hvFound.size).toFixed(1)}%`,
  );
  const nearMissHv = orders.filter((o) => o.price * o.quantity === 499_999).map((o) => o.order_id as string);
  rows.push(`499,999 KRW   orders ${nearMissHv.length}  flagged ${nearMissHv.filter((id) => hvFound.has(id)).length}`);
  t.comment('\n' + rows.join('\n'));

  t.equal(bot.tp, 1, 'the macro bot is flagged');
  t.ok(burst.positives > 10, `there are bursts to find (${burst.positives})`);
  t.equal(burst.tp, burst.positives, 'every burst is flagged');
  t.equal(burst.fp, 0, 'no burst IP that never reached 10 in 60 s is flagged');
  t.ok(nearMiss.ips > 10, `there are near-miss IPs (${nearMiss.ips})`);
  t.equal(nearMiss.fp, 0, 'no near-miss IP (9 orders per minute) is flagged');
  t.equal(normal.fp, 0, 'no normal shopper is flagged');
  t.equal(cardTesting.fp, 0, 'card testing is spread over IPs: no IP flagged');
  t.equal(hvTp, hvTruth.length, 'every high-value order is found');
  t.equal(hvFound.size, hvTruth.length, 'and nothing else');
  t.ok(nearMissHv.length > 0 && nearMissHv.every((id) => !hvFound.has(id)), '499,999 KRW orders are not high value');

  // Shared IPs (keyed by IP, as the topic is): those with 5 users within 5 min, and no other.
  const shared = new Set((await s.pool.query('SELECT DISTINCT ip_address FROM shared_ip_accounts')).rows.map((r) => r.ip_address as string));
  const usersOf = new Map<string, { label: string; events: [number, string][] }>();
  for (const o of orders) {
    const e = usersOf.get(o.ip_address) ?? usersOf.set(o.ip_address, { label: o.label, events: [] }).get(o.ip_address)!;
    e.events.push([Date.parse(o.timestamp), o.user_id]);
  }
  const sharedTruth = [...usersOf].filter(([, e]) => maxDistinctWithin(e.events, 300_000) >= 5).map(([ip]) => ip);
  t.ok(sharedTruth.length > 5, `there are shared IPs to find (${sharedTruth.length})`);
  t.ok(
    sharedTruth.every((ip) => usersOf.get(ip)!.label === 'shared_ip'),
    'only the shared_ip scenario puts 5 users on one IP within 5 min',
  );
  t.same([...shared].sort(), sharedTruth.sort(), 'shared_ip_accounts flags exactly those IPs');
  const sharedNearMiss = [...usersOf].filter(([ip, e]) => e.label === 'near_miss' && ip.startsWith('172.19.'));
  t.ok(
    sharedNearMiss.length > 0 && sharedNearMiss.every(([ip]) => !shared.has(ip)),
    `no near-miss IP with 4 users in 5 min is flagged (${sharedNearMiss.length})`,
  );
});
