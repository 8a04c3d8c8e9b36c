/**
 * `npm test` (scripts/test.sh) brings the broker the tests need and leaves
 * nothing behind: it uses a broker that answers and leaves it running, starts one
 * when none answers and stops it at the end, and when none can be started stops
 * at once with one line saying what to run. Each case runs the script on a small
 * fixture test that passes only while a broker answers.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { homedir } from 'node:os';
import { BROKERS } from './helpers.js';

const root = new URL('../', import.meta.url).pathname;
const FIXTURE = 'test/fixtures/broker-answers.ts';

function answers(hostPort: string): Promise<boolean> {
  const [host, port] = [hostPort.slice(0, hostPort.lastIndexOf(':')), Number(hostPort.slice(hostPort.lastIndexOf(':') + 1))];
  return new Promise((resolve) => {
    const s = createConnection({ host, port, timeout: 3_000 });
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
    s.once('timeout', () => (s.destroy(), resolve(false)));
  });
}

const listenable = (port: number) =>
  new Promise<boolean>((resolve) => {
    const srv = createServer().once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });

/** A port with nothing on it, and its neighbour free for the broker's controller. */
async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve) => {
      const srv = createServer().listen(0, '127.0.0.1', () => {
        const p = (srv.address() as { port: number }).port;
        srv.close(() => resolve(p));
      });
    });
    if (port < 65_535 && (await listenable(port + 1))) return port;
  }
}

/** scripts/test.sh as `npm test` runs it, outside this tap run. */
function runScript(env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(TAP|_TAPJS|NODE_OPTIONS)/.test(k)));
  const child = spawn('scripts/test.sh', [FIXTURE, '--reporter=tap'], { cwd: root, env: { ...clean, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, output })));
}

const local = /^(127\.0\.0\.1|localhost):\d+$/.test(BROKERS[0]!);

t.test('a broker that answers is used and left running', async (t) => {
  const r = await runScript({ TEST_KAFKA_BROKERS: BROKERS.join(',') });
  t.equal(r.code, 0, 'the run passes', { output: r.output });
  t.notMatch(r.output, /starting one/, 'nothing started');
  t.ok(await answers(BROKERS[0]!), 'the broker still answers');
});

t.test('with no broker, one is started for the run and stopped at its end', { skip: !local && 'the suite runs on a remote broker' }, async (t) => {
  const port = await freePort();
  const cache = process.env.KAFKA_CACHE ?? `${homedir()}/.cache/fraud-sql/kafka`;
  t.teardown(() => rmSync(`${cache}/run-${port}`, { recursive: true, force: true }));
  const r = await runScript({ TEST_KAFKA_BROKERS: `127.0.0.1:${port}`, KAFKA_DATA: `${t.testdir()}/data` });
  t.equal(r.code, 0, 'the run passes', { output: r.output });
  t.match(r.output, `no Kafka broker on 127.0.0.1:${port}: starting one`);
  t.match(r.output, /^ok 1 - test\/fixtures\/broker-answers\.ts/m, 'the tests ran with the broker up');
  t.notOk(await answers(`127.0.0.1:${port}`), 'nothing answers on the port afterwards');
  t.notOk(existsSync(`${cache}/run-${port}/kafka.pid`), 'no broker process is recorded as running');
});

t.test('a broker that cannot be started stops the run at once, with one line saying what to run', async (t) => {
  const port = await freePort();
  // No such release: assembling fails, as it would on a machine without Maven or network.
  const r = await runScript({ TEST_KAFKA_BROKERS: `127.0.0.1:${port}`, KAFKA_VERSION: '0.0.0-none', KAFKA_CACHE: t.testdir() });
  t.equal(r.code, 1);
  const last = r.output.trimEnd().split('\n').at(-1)!;
  t.match(last, `could not start a Kafka broker on 127.0.0.1:${port}; run \`KAFKA_PORT=${port} scripts/kafka.sh start\``, 'the last line says what to run');
  t.notMatch(r.output, /test\/fixtures|ECONNREFUSED/, 'no test ran into a missing broker');
  t.notOk(await answers(`127.0.0.1:${port}`), 'nothing was left listening');
});
