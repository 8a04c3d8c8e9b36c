/**
 * GET /v1/decisions under a running `fraud-sql run` (real broker and PostgreSQL):
 * the checkout's question during a live bot burst (and after a restart), for an allow-listed IP in a
 * burst of its own, and for a block-listed user.
 */
import t from 'tap';
import { cpSync, writeFileSync } from 'node:fs';
import { scenario, type TestMessage } from './helpers.js';
import { ORDER_DEFAULTS } from '../src/commands/fixtures.js';

let seq = 0;
const order = (ip: string, user: string, atMs: number, partition?: number): TestMessage => ({
  key: ip,
  partition,
  value: JSON.stringify({ ...ORDER_DEFAULTS, order_id: `D${++seq}`, timestamp: new Date(atMs).toISOString(), ip_address: ip, user_id: user }),
});

t.test('decisions: the bot while its burst is active, never the allow-listed IP, the blocked user', async (t) => {
  const dir = t.testdir();
  cpSync(new URL('../queries', import.meta.url).pathname, dir, { recursive: true });
  writeFileSync(`${dir}/lists/allow_ips.csv`, 'ip_address,reason\n10.9.9.9,office NAT\n');
  writeFileSync(`${dir}/lists/block_users.csv`, 'user_id,reason\nU-STOLEN,chargebacks\n');
  const s = await scenario(t, { partitions: 2 });
  let app = await s.startApp({ queriesDir: dir });
  const ask = async (query: string) => {
    const r = await fetch(`${app.decisionsUrl}/v1/decisions?${query}`);
    t.equal(r.status, 200, query);
    return r.json();
  };
  const start = Date.now() - 120_000;

  // Nine orders in 9 s from the bot: not yet a burst.
  await s.produce(Array.from({ length: 9 }, (_, i) => order('10.8.8.8', 'U-BOT', start + i * 1_000)));
  await s.drained(app);
  t.same((await ask('ip_address=10.8.8.8')).keys.ip_address.detections, [], 'nine orders in a minute: nothing yet');

  // The tenth, and the allow-listed IP's own twelve: the bot's burst is active.
  await s.produce([
    order('10.8.8.8', 'U-BOT', start + 9_000),
    ...Array.from({ length: 12 }, (_, i) => order('10.9.9.9', `U-OFFICE-${i}`, start + i * 1_000 + 500)),
  ]);
  await s.drained(app);
  const bot = await ask('ip_address=10.8.8.8&user_id=U-BOT');
  t.equal(bot.verdict, 'review', 'the bot is reported while its burst is active');
  t.match(bot.keys.ip_address.detections, [{ rule: 'suspicious_ips', severity: 'high', since: new Date(start).toISOString().slice(0, 19), count: 10 }]);
  const office = await ask('ip_address=10.9.9.9');
  t.same(office.keys.ip_address.detections, [], 'the allow-listed IP has no detection');
  t.same(office.keys.ip_address.lists, ['allow_ips']);
  t.equal(office.verdict, 'allow');

  // A restart while the burst is open: it is read back with the results and still reported.
  await app.stop();
  app = await s.startApp({ queriesDir: dir });
  let again = await ask('ip_address=10.8.8.8');
  for (let i = 0; i < 100 && again.verdict !== 'review'; i++) {
    await new Promise((r) => setTimeout(r, 100));
    again = await ask('ip_address=10.8.8.8');
  }
  t.match(again.keys.ip_address.detections, [{ rule: 'suspicious_ips', since: new Date(start).toISOString().slice(0, 19), count: 10 }], 'after a restart');

  // A minute and a half later, on both partitions (the event-time clock is the
  // slowest watermark): a blocked user's first order; the bot's burst is over.
  await s.produce([order('10.7.7.7', 'U-STOLEN', start + 100_000, 0), order('10.6.6.6', 'U-SHOPPER', start + 100_000, 1)]);
  await s.drained(app);
  const stolen = await ask('user_id=U-STOLEN');
  t.equal(stolen.verdict, 'block');
  t.same(stolen.keys.user_id.lists, ['block_users']);
  t.same((await ask('ip_address=10.8.8.8')).keys.ip_address.detections, [], 'the bot’s burst ended (a window after its last order): no longer reported');
});
