/**
 * Start/stop plumbing (src/lifecycle.ts): the main loops beside a helper that feeds
 * them and can stop for good (the repartition hop). Pure logic: the loops are timers.
 */
import t from 'tap';
import { alongside } from '../src/lifecycle.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A loop that runs until its signal aborts, then takes `finishMs` to commit its batch in flight. */
function loop(finishMs: number) {
  const seen = { ended: false };
  const run = (signal: AbortSignal) =>
    new Promise<void>((resolve) => signal.addEventListener('abort', () => void sleep(finishMs).then(() => ((seen.ended = true), resolve())), { once: true }));
  return { run, seen };
}

t.test('a helper that stops for good stops the loops, and the result fails with its error only once they have ended', async (t) => {
  const { run, seen } = loop(100);
  let fail!: (err: Error) => void;
  const failed = new Promise<never>((_, reject) => (fail = reject));
  const done = alongside(run, new AbortController().signal, failed);
  fail(new Error('repartitioning stopped'));
  const err = await done.then(
    () => null,
    (e: Error) => e,
  );
  t.equal(err?.message, 'repartitioning stopped');
  t.ok(seen.ended, 'the loop had ended (and committed) before anything could be released');
});

t.test('a stop ends the loops; the result resolves', async (t) => {
  const { run, seen } = loop(10);
  const stop = new AbortController();
  const done = alongside(run, stop.signal, new Promise<never>(() => {}));
  stop.abort();
  await done;
  t.ok(seen.ended);
});

t.test('a loop that fails fails the result with its own error', async (t) => {
  const done = alongside(() => Promise.reject(new Error('batch failed')), new AbortController().signal);
  await t.rejects(done, /batch failed/);
});
