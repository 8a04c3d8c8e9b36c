/**
 * The demo as a person sees it: `fraud-sql demo` runs with no Kafka and no
 * PostgreSQL, and headless Chromium opens its page and finds every panel filled.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { chromium } from 'playwright-core';

const CLI = new URL('../dist/cli.js', import.meta.url).pathname;
const ARTIFACTS = new URL('../test-artifacts/', import.meta.url).pathname;
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

t.test(
  'the demo page shows non-empty panels within a few seconds',
  { skip: existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM} (apt-get install chromium)` },
  async (t) => {
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

    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
    });
    t.teardown(() => browser.close());
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const opened = Date.now();
    await page.goto(url);
    // The bot (10 % of 60 orders/s) reaches 10 orders in 60 s after about 2 s.
    await page.waitForFunction(
      () => {
        const rows = (id: string) => document.querySelectorAll(`#${id} tbody tr`).length;
        const circles = document.querySelectorAll('#c-orders circle').length;
        return rows('top') > 0 && rows('sus') > 0 && rows('hv') > 0 && circles > 0 && document.getElementById('t-orders')!.textContent !== '–';
      },
      undefined,
      { timeout: 20_000, polling: 250 },
    );
    t.comment(`panels filled ${((Date.now() - opened) / 1000).toFixed(1)} s after opening the page`);
    t.match(await page.textContent('#sus tbody'), /192\.168\.99\.99/, 'the macro bot is on the page');
    t.ok(Number((await page.textContent('#t-orders'))!.replace(/,/g, '')) > 0, 'order count shown');
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: `${ARTIFACTS}/demo-page.png`, fullPage: true });
    t.ok(existsSync(`${ARTIFACTS}/demo-page.png`), 'screenshot saved as a test artifact');
  },
);

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
