/**
 * The demo as a person sees it: `fraud-sql demo` runs with no Kafka and no
 * PostgreSQL, and headless Chromium opens its page and finds every panel filled;
 * order fields an attacker chose show as text, wherever a rule puts them.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import type { Test } from 'tap';
import { chromium, type Browser } from 'playwright-core';
import { runInMemory } from '../src/compose.js';
import { loadConfig } from '../src/config.js';
import { mountDashboard, ResultsDashboard } from '../src/http/dashboard.js';
import { Metrics } from '../src/http/metrics.js';
import { buildServer, listen } from '../src/http/server.js';

const CLI = new URL('../dist/cli.js', import.meta.url).pathname;
const QUERIES = new URL('../queries', import.meta.url).pathname;
const ARTIFACTS = new URL('../test-artifacts/', import.meta.url).pathname;
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const noChromium = existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM} (apt-get install chromium)`;

async function launch(t: Test): Promise<Browser> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
  });
  t.teardown(() => browser.close());
  return browser;
}

t.test('the demo page shows non-empty panels within a few seconds', { skip: noChromium }, async (t) => {
  const dir = t.testdir();
  // No PostgreSQL: the demo must work on its embedded DuckDB alone.
  const env = { ...process.env };
  delete env.FRAUD_SQL_DATABASE_URL;
  const demo = spawn('node', [CLI, 'demo', '--file', `${dir}/demo.duckdb`, '--http-port', '0', '--rate', '60', '--seed', '5'], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => {
    demo.kill('SIGTERM');
  });
  let log = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`demo did not start:\n${log}`)), 30_000);
    demo.stderr.on('data', (d) => {
      log += d;
      const m = /open (http:\/\/\S+)/.exec(log);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    demo.on('exit', (code) => reject(new Error(`demo exited with ${code}:\n${log}`)));
  });

  const browser = await launch(t);
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const opened = Date.now();
  await page.goto(url);
  // The page's status line and console, to explain a timeout below.
  let status = '';
  const consoleLines: string[] = [];
  page.on('console', (m) => consoleLines.push(m.text()));
  const watch = setInterval(() => {
    page.textContent('#updated').then(
      (x) => (status = x ?? ''),
      () => {},
    );
  }, 1_000);
  t.teardown(() => clearInterval(watch));
  // The bot (10 % of 60 orders/s) reaches 10 orders in 60 s after about 2 s.
  await page
    .waitForFunction(
      () => {
        const rows = (id: string) => document.querySelectorAll(`#${id} tbody tr`).length;
        const circles = document.querySelectorAll('#c-orders circle').length;
        return rows('top') > 0 && rows('sus') > 0 && rows('hv') > 0 && circles > 0 && document.getElementById('t-orders')!.textContent !== '–';
      },
      undefined,
      { timeout: 20_000, polling: 250 },
    )
    .catch((err: Error) => {
      // What the page and the demo said, for whoever reads the failure.
      throw new Error(`${err.message}\npage status: ${status}\npage console: ${consoleLines.join(' | ')}\ndemo log:\n${log}`);
    });
  t.comment(`panels filled ${((Date.now() - opened) / 1000).toFixed(1)} s after opening the page`);
  // Many readers at once while batches run: each read waits its turn on a connection of its own.
  const statuses = new Set<number>();
  for (let round = 0; round < 20; round++) {
    for (const status of await Promise.all(Array.from({ length: 10 }, () => fetch(`${url}/api/dashboard`).then((r) => r.status)))) statuses.add(status);
    await new Promise((r) => setTimeout(r, 50));
  }
  t.same([...statuses], [200], 'two hundred reads of the results, ten at a time, all answer');
  t.equal(demo.exitCode, null, 'and the demo runs on');
  t.match(await page.textContent('#sus tbody'), /192\.168\.99\.99/, 'the macro bot is on the page');
  t.ok(Number((await page.textContent('#t-orders'))!.replace(/,/g, '')) > 0, 'order count shown');
  // The demo began inside its first window, which is still open: a partial point, off the line.
  t.ok((await page.locator('#c-orders circle.partial').count()) > 0, 'the first, open window is drawn as partial');
  t.equal(await page.getAttribute('#c-orders circle >> nth=0', 'class'), 'partial', 'the first window is partial');
  const ticks = await page.locator('#c-orders text.tick').allTextContents();
  t.ok(ticks.length > 0, 'x labels');
  for (const tick of ticks) t.match(tick, /^\d\d:\d\d:(00|30)$/, `x label ${tick} is a window start, in the page's time format`);
  t.match(
    await page.textContent('#t-range'),
    /^Totals cover every order kept in this database: the windows from \d\d:\d\d:(00|30) to \d\d:\d\d:(00|30) \(event time\)$/,
  );
  t.match(await page.textContent('#updated'), /^updated \d\d:\d\d:\d\d · refreshes every 2 s · times are local \(UTC[+-]\d\d:\d\d\)$/);
  t.match(await page.textContent('#sus tbody td:nth-child(4)'), /^\d\d:\d\d:\d\d$/, 'one time format in the tables too');
  const rules = await page
    .locator('#rules details.rule')
    .evaluateAll((els) => els.map((e) => [(e as HTMLElement).dataset.rule, (e as HTMLDetailsElement).open]));
  t.same(
    rules,
    [
      ['blocked_activity', true],
      ['card_testing', true],
      ['high_value_orders', false],
      ['popular_products', false],
      ['suspicious_ips', false],
      ['realtime_stats', false],
      ['shared_ip_accounts', true],
    ],
    'every loaded rule has its section; the four with panels above start folded, the others open',
  );
  t.ok((await page.locator('#rules details[data-rule="suspicious_ips"] tbody tr').count()) > 0, "a rule's rows are in its section");
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: `${ARTIFACTS}/demo-page.png`, fullPage: true });
  t.ok(existsSync(`${ARTIFACTS}/demo-page.png`), 'screenshot saved as a test artifact');
});

/** The page over the results of these orders, run through the rules of `dir` by the real engine (one batch per list). */
async function servePage(t: Test, dir: string, batches: object[][]) {
  const { state, rules } = await runInMemory(
    loadConfig({ queriesDir: dir }, {}),
    dir,
    batches.map((b) => b.map((o) => ({ partition: 0, value: Buffer.from(JSON.stringify(o)) }))),
  );
  t.teardown(() => state.close());
  const http = buildServer(new Metrics(), { ready: async () => ({ ready: true, checks: {} }), status: async () => ({}) });
  mountDashboard(http, new ResultsDashboard(state, rules));
  const url = await listen(http, '127.0.0.1', 0);
  t.teardown(() => http.close());
  return { state, url };
}

t.test('after a restart: the totals name the windows and runs they cover; partial windows stay off the line', { skip: noChromium }, async (t) => {
  // One order a second over [10 s, 100 s) and, after a restart, over [300 s, 400 s).
  const T0 = Date.parse('2025-12-30T12:00:00Z');
  const order = (s: number) => ({
    order_id: `O${s}`,
    timestamp: new Date(T0 + s * 1000).toISOString(),
    user_id: 'USER0001',
    product_id: 'P008',
    product_name: 'mouse',
    price: 10_000,
    quantity: 1,
    ip_address: `10.0.${s % 7}.1`,
  });
  const run = (from: number, to: number) => Array.from({ length: (to - from) / 10 }, (_, b) => Array.from({ length: 10 }, (_, i) => order(from + b * 10 + i)));
  const { url } = await servePage(t, QUERIES, [...run(10, 100), ...run(300, 400)]);
  const page = await (await launch(t)).newPage({ viewport: { width: 1400, height: 1000 }, timezoneId: 'Asia/Seoul' });
  await page.goto(url);
  await page.waitForFunction(() => document.querySelectorAll('#c-orders circle').length > 0, undefined, { timeout: 10_000 });
  t.equal(
    await page.textContent('#t-range'),
    'Totals cover every order kept in this database: the windows from 2025-12-30 21:00:00 to 2025-12-30 21:07:00 (event time), ' +
      'in 2 runs with gaps between them (a restart keeps the earlier results)',
    'in the local time of the viewer (Asia/Seoul), with the date as it is not today',
  );
  t.same(
    await page.locator('#c-orders circle').evaluateAll((cs) => cs.map((c) => c.getAttribute('class'))),
    ['partial', 'complete', 'complete', 'partial', 'partial', 'complete', 'complete', 'partial'],
    "each run's first and last window are partial",
  );
  t.match(
    await page.getAttribute('#c-orders path', 'd'),
    /^M[\d. ]+L[\d. ]+M[\d. ]+L[\d. ]+$/,
    'the line joins the complete windows of each run, not across the gap',
  );
  t.match((await page.locator('#c-orders text.tick').allTextContents()).join(', '), /^2025-12-30 21:00:00, 2025-12-30 21:01:00, /, 'x labels at window starts');
});

/** What an attacker may put in order fields, and how the page must show it: as text, control characters as visible escapes. */
const HOSTILE: [sent: string, shown: string][] = [
  ['<script>window.__pwned = 1</script>', '<script>window.__pwned = 1</script>'],
  ['<img src=x onerror="window.__pwned = 2">', '<img src=x onerror="window.__pwned = 2">'],
  ["'; DROP TABLE high_value_orders; --", "'; DROP TABLE high_value_orders; --"],
  ['"quoted" & \'single\' </td></tr><tr><td>', '"quoted" & \'single\' </td></tr><tr><td>'],
  ['\u001b[31mred\u0007\tbell\nline', '\\u001b[31mred\\u0007\\u0009bell\\u000aline'],
  ['invoice\u202egpj.exe', 'invoice\\u202egpj.exe'],
];

t.test("attacker-chosen order fields show as text in a rule's rows and the panels, in a real browser", { skip: noChromium }, async (t) => {
  // The shipped rules and one more of the user's own, which has no panel of its own.
  const dir = t.testdir();
  cpSync(QUERIES, dir, { recursive: true });
  writeFileSync(
    `${dir}/flagged_orders.sql`,
    readFileSync(`${QUERIES}/high_value_orders.sql`, 'utf8').replace('-- name: high_value_orders', '-- name: flagged_orders'),
  );
  const T0 = Date.parse('2025-12-30T12:00:00Z');
  const orders = HOSTILE.map(([text], i) => ({
    order_id: `ORD${i}${text}`,
    timestamp: new Date(T0 + i * 1000).toISOString(),
    user_id: text,
    product_id: 'P001',
    product_name: text,
    price: 600_000,
    quantity: 1,
    ip_address: '10.9.9.9',
    payment_method: text,
  }));
  const { state, url } = await servePage(t, dir, [orders]);

  const page = await (await launch(t)).newPage({ viewport: { width: 1400, height: 1000 } });
  const dialogs: string[] = [];
  page.on('dialog', (d) => {
    dialogs.push(d.message());
    void d.dismiss();
  });
  await page.goto(url);
  const flagged = '#rules details[data-rule="flagged_orders"]';
  await page.waitForSelector(`${flagged} tbody tr`, { timeout: 10_000 });
  t.equal(await page.getAttribute(flagged, 'open'), '', 'a rule without a panel of its own shows its rows unfolded');

  const column = async (section: string, name: string) => {
    const index = (await page.locator(`${section} thead th`).allTextContents()).indexOf(name);
    t.ok(index >= 0, `${section} has column ${name}`);
    return page.locator(`${section} tbody tr td:nth-child(${index + 1})`).allTextContents();
  };
  const expected = HOSTILE.map(([, shown]) => shown);
  t.same((await column(flagged, 'product_name')).sort(), [...expected].sort(), "the rule's rows: every value as text");
  t.same((await column(flagged, 'order_id')).sort(), expected.map((v, i) => `ORD${i}${v}`).sort());
  t.same((await column('#hv', 'Product')).sort(), [...expected].sort(), 'the high-value panel: the same');
  const top = await column('#top', 'Product');
  t.ok(top.length === 5 && top.every((v) => expected.includes(v)), 'the top products panel: the same');
  t.equal(await page.locator(`${flagged} tbody tr`).count(), HOSTILE.length, 'no row or cell was added by a value');
  t.equal(await page.locator('main script, main img, main iframe').count(), 0, 'no element was created by a value');
  t.equal(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned), undefined, 'no script ran');
  t.same(dialogs, []);
  t.equal(Number((await state.query('SELECT count(*) FROM high_value_orders')).columns[0]![0]), HOSTILE.length, 'and the SQL text stayed text');
});

t.test('a click on a detection opens the orders behind it; attacker-chosen keys and order ids stay text', { skip: noChromium }, async (t) => {
  const T0 = Date.parse('2025-12-30T12:00:00Z');
  const base = { product_id: 'P001', product_name: 'x', price: 1000, quantity: 1, payment_method: 'card' };
  // A bot burst (12 orders in 12 s, hostile order ids; an IP is checked on input), and a card tester (a hostile user id, 3 methods).
  const ip = '10.66.0.1';
  const bot = HOSTILE.flatMap(([text], i) =>
    [0, 1].map((j) => ({
      ...base,
      order_id: `B${i}${j}${text}`,
      timestamp: new Date(T0 + (2 * i + j) * 1000).toISOString(),
      user_id: `U${i}${j}`,
      ip_address: ip,
    })),
  );
  const user = HOSTILE[0]![0];
  const tester = ['card', 'kakaopay', 'naverpay'].map((m, i) => ({
    ...base,
    order_id: `C${i}`,
    timestamp: new Date(T0 + 20_000 + i * 1000).toISOString(),
    user_id: user,
    ip_address: `10.1.1.${i}`,
    payment_method: m,
  }));
  const { url } = await servePage(t, QUERIES, [bot, tester]);
  const page = await (await launch(t)).newPage({ viewport: { width: 1400, height: 1000 } });
  await page.goto(url);
  await page.waitForSelector('#sus tr.detection', { timeout: 10_000 });

  await page.locator('#sus tr.detection').first().click();
  await page.waitForSelector('#evidence table', { timeout: 10_000 });
  t.equal(await page.isVisible('#p-evidence'), true, 'the evidence panel opens');
  t.match(await page.locator('#evidence').textContent(), `${bot.length} orders`, 'with the count');
  const ids = await page.locator('#evidence tbody tr td:nth-child(2)').allTextContents();
  t.same(
    ids,
    HOSTILE.flatMap(([, shown], i) => [0, 1].map((j) => `B${i}${j}${shown}`)),
    'and every order id, as text, by event time',
  );

  const tester_ = '#rules details[data-rule="card_testing"] tbody tr.detection';
  await page.locator(tester_).first().click();
  await page.waitForFunction(() => document.querySelector('#evidence')?.textContent?.includes('3 orders'), undefined, { timeout: 10_000 });
  t.same(await page.locator('#evidence tbody tr td:nth-child(2)').allTextContents(), ['C0', 'C1', 'C2'], "a rule's row opens its own detection");
  t.equal(await page.locator('main script, main img, main iframe').count(), 0, 'no element was created by a value');
  t.equal(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned), undefined, 'no script ran');
});

t.test('a busy port or a DuckDB file held by another process gets one clear message', async (t) => {
  const dir = t.testdir();
  const env = { ...process.env };
  delete env.FRAUD_SQL_DATABASE_URL;
  const first = spawn('node', [CLI, 'demo', '--file', `${dir}/a.duckdb`, '--http-port', '0'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  t.teardown(() => {
    first.kill('SIGKILL');
  });
  let log = '';
  const port = await new Promise<string>((resolve) =>
    first.stderr.on('data', (d) => {
      log += d;
      const m = /open http:\/\/127\.0\.0\.1:(\d+)/.exec(log);
      if (m) resolve(m[1]!);
    }),
  );
  const second = (args: string[]) =>
    new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const c = spawn('node', [CLI, 'demo', ...args], { env, stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      c.stderr.on('data', (d) => (err += d));
      c.on('exit', (code) => resolve({ code, stderr: err }));
    });
  const locked = await second(['--file', `${dir}/a.duckdb`, '--http-port', '0']);
  t.equal(locked.code, 1);
  t.match(locked.stderr, new RegExp(`the DuckDB file ${dir}/a.duckdb is in use by another process`));
  t.notMatch(locked.stderr, /\n\s+at /, 'no stack trace');
  const busy = await second(['--file', `${dir}/b.duckdb`, '--http-port', port]);
  t.equal(busy.code, 1);
  t.match(busy.stderr, new RegExp(`port ${port} on 127.0.0.1 is already in use; choose another with --http-port`));
  t.notMatch(busy.stderr, /\n\s+at /, 'no stack trace');
});
