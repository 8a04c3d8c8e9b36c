/** The generator through its CLI: deterministic output, clear errors. */
import t from 'tap';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { generateOrders, BOT_IP } from '../src/generator/orders.js';
import { decodeOrder } from '../src/source/decode.js';
import { maxDistinctWithin, maxWithin } from '../src/generator/truth.js';

const run = promisify(execFile);
const CLI = new URL('../dist/cli.js', import.meta.url).pathname;

t.test('same seed and options give the same orders, byte for byte', async (t) => {
  const dir = t.testdir();
  const args = (file: string, seed: number) => [
    CLI,
    'generate',
    '--seed',
    String(seed),
    '--count',
    '5000',
    '--fast',
    '--start',
    '2025-12-30T12:00:00Z',
    '--mix',
    'late=1,malformed=1',
    '--output',
    `${dir}/${file}`,
  ];
  await run('node', args('a.jsonl', 42));
  await run('node', args('b.jsonl', 42));
  await run('node', args('c.jsonl', 43));
  const a = readFileSync(`${dir}/a.jsonl`);
  t.equal(a.toString().split('\n').length - 1, 5000);
  t.ok(a.equals(readFileSync(`${dir}/b.jsonl`)), 'identical bytes');
  t.notOk(a.equals(readFileSync(`${dir}/c.jsonl`)), 'another seed differs');
});

t.test('bad options stop with one clear message before anything is sent', async (t) => {
  const fail = async (args: string[]) => {
    try {
      await run('node', [CLI, 'generate', ...args]);
      return { code: 0, stderr: '' };
    } catch (err) {
      return err as { code: number; stderr: string };
    }
  };
  const r1 = await fail(['--rate', '0', '--mix', 'bots=5', '--output', 'stdout']);
  t.equal(r1.code, 2);
  t.match(r1.stderr, /--rate: must be above 0/);
  t.match(r1.stderr, /unknown scenario "bots"/);
  const r2 = await fail(['--count', '5', '--output', '/nonexistent/dir/orders.jsonl']);
  t.equal(r2.code, 1);
  t.match(r2.stderr, /cannot write \/nonexistent\/dir\/orders.jsonl/);
  const r3 = await fail(['--count', '5', '--brokers', '127.0.0.1:1']);
  t.equal(r3.code, 1);
  t.match(r3.stderr, /cannot reach Kafka at 127.0.0.1:1/);
});

t.test('orders are valid, labelled, and scenarios hold their ground truth', async (t) => {
  const gen = generateOrders({ seed: 1, rate: 100, startMs: Date.UTC(2025, 0, 1), mix: { near_miss: 5, burst: 5, late: 1, malformed: 1 } });
  const labels = new Map<string, number>();
  const wrongDecode: string[] = [];
  const botElsewhere: string[] = [];
  const byIp = new Map<string, number[]>();
  for (let i = 0; i < 60_000; i++) {
    const o = gen.next().value!;
    labels.set(o.label, (labels.get(o.label) ?? 0) + 1);
    const d = decodeOrder(Buffer.from(o.value), { timeZone: 'Asia/Seoul', maxMessageBytes: 65_536 });
    if (d.ok !== (o.label !== 'malformed')) wrongDecode.push(o.value);
    if (d.ok && (o.label === 'near_miss' || o.label === 'burst'))
      (byIp.get(`${o.label}|${d.order.ipAddress}`) ?? byIp.set(`${o.label}|${d.order.ipAddress}`, []).get(`${o.label}|${d.order.ipAddress}`)!).push(o.eventMs);
    if (o.label === 'bot' && JSON.parse(o.value).ip_address !== BOT_IP) botElsewhere.push(o.value);
  }
  t.same(wrongDecode, [], 'labelled orders decode; malformed ones do not');
  t.same(botElsewhere, [], 'the bot buys from one IP');
  for (const l of ['normal', 'bot', 'burst', 'near_miss', 'high_value', 'card_testing', 'shared_ip', 'late', 'malformed'])
    t.ok((labels.get(l) ?? 0) > 0, `scenario ${l} occurs`);
  // Sliding-window ground truth: near-miss IPs never reach 10 orders in 60 s; bursts do.
  const nearMiss = [...byIp].filter(([k]) => k.startsWith('near_miss'));
  // Episodes still running when the sample ends are incomplete: a burst has 12 orders.
  const bursts = [...byIp].filter(([k, times]) => k.startsWith('burst') && times.length === 12);
  t.ok(nearMiss.length > 5 && bursts.length > 5, `episodes to check: ${nearMiss.length} near-miss IPs, ${bursts.length} bursts`);
  t.same(
    nearMiss.filter(([, times]) => maxWithin(times) > 9).map(([k]) => k),
    [],
    'near-miss IPs never have 10 orders in 60 s',
  );
  t.same(
    bursts.filter(([, times]) => maxWithin(times) < 10).map(([k]) => k),
    [],
    'every burst has 10 orders within 60 s',
  );
});

t.test('card testers and shared IPs reach their thresholds; their near-misses and everyone else never do', async (t) => {
  const gen = generateOrders({ seed: 2, rate: 100, startMs: Date.UTC(2025, 0, 1), mix: { near_miss: 3, card_testing: 3, shared_ip: 3 } });
  const methodsByUser = new Map<string, { label: string; events: [number, string][] }>();
  const usersByIp = new Map<string, { label: string; events: [number, string][] }>();
  const note = (m: typeof methodsByUser, key: string, label: string, at: number, value: string) => {
    const e = m.get(key) ?? m.set(key, { label, events: [] }).get(key)!;
    if (label !== 'normal') e.label = label;
    e.events.push([at, value]);
  };
  let lastMs = 0;
  for (let i = 0; i < 120_000; i++) {
    const o = gen.next().value!;
    const j = JSON.parse(o.value);
    note(methodsByUser, j.user_id, o.label, o.eventMs, j.payment_method);
    note(usersByIp, j.ip_address, o.label, o.eventMs, j.user_id);
    lastMs = o.eventMs;
  }
  // Episodes still running when the sample ends are incomplete.
  const complete = (e: { events: [number, string][] }) => e.events[0]![0] < lastMs - 700_000;
  const reach = (m: typeof methodsByUser, label: string, window: number) =>
    [...m.values()].filter((e) => e.label === label && complete(e)).map((e) => maxDistinctWithin(e.events, window));
  const testers = reach(methodsByUser, 'card_testing', 600_000);
  const shared = reach(usersByIp, 'shared_ip', 300_000);
  t.ok(testers.length > 20 && shared.length > 20, `episodes to check: ${testers.length} card testers, ${shared.length} shared IPs`);
  t.ok(
    testers.every((n) => n >= 3),
    'every card tester pays with 3 methods within 10 min',
  );
  t.ok(
    shared.every((n) => n >= 5),
    'every shared IP has 5 users within 5 min',
  );
  const others = (m: typeof methodsByUser, label: string, window: number) =>
    [...m].filter(([, e]) => e.label !== label).filter(([, e]) => maxDistinctWithin(e.events, window) >= (label === 'card_testing' ? 3 : 5));
  t.same(others(methodsByUser, 'card_testing', 600_000), [], 'no other user (near-misses included) has 3 methods within 10 min');
  t.same(others(usersByIp, 'shared_ip', 300_000), [], 'no other IP (near-misses included) has 5 users within 5 min');
  const nearMissUsers = [...methodsByUser.values()].filter((e) => e.label === 'near_miss' && new Set(e.events.map(([, v]) => v)).size === 3);
  t.ok(nearMissUsers.length > 10, `near-miss users with 3 methods, never within 10 min: ${nearMissUsers.length}`);
});
