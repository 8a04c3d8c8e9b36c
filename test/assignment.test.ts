/**
 * Applying a partition assignment (src/source/kafka.ts, used by every consumer and
 * by the repartition hop): what is retried, what ends consumption, and when a
 * newer assignment takes over. Pure logic: `apply` stands in for the broker calls.
 */
import t from 'tap';
import { FraudSqlError } from '../src/errors.js';
import { createLogger } from '../src/log.js';
import { applyAssignment } from '../src/source/kafka.js';

function setup() {
  const lines: string[] = [];
  const failed: Error[] = [];
  return { lines, failed, opts: { logger: createLogger('warn', (l) => lines.push(l)), fail: (e: Error) => void failed.push(e) } };
}

t.test('a failure that can pass (a broker still loading after a restart) is retried until the assignment applies', async (t) => {
  const { lines, failed, opts } = setup();
  let attempts = 0;
  await applyAssignment(
    async () => {
      if (++attempts < 3) throw new Error('The coordinator is loading and hence cannot process requests for this group');
    },
    { ...opts, current: () => true },
  );
  t.equal(attempts, 3);
  t.same(failed, [], 'consumption goes on');
  t.equal(lines.length, 2, 'one line per failed attempt');
  t.match(lines[0], /WARN {2}partition assignment failed: The coordinator is loading.*; retrying in \d+\.\d s/);
});

t.test('an offset gap ends consumption at once', async (t) => {
  const { failed, opts } = setup();
  let attempts = 0;
  await applyAssignment(
    async () => {
      attempts++;
      throw new FraudSqlError('OFFSET_GAP', 'partition 0: committed offset 9 is past the end');
    },
    { ...opts, current: () => true },
  );
  t.equal(attempts, 1);
  t.match(
    failed.map((e) => e.message),
    [/past the end/],
  );
});

t.test('a newer assignment takes over from one still being retried', async (t) => {
  const { failed, opts } = setup();
  let attempts = 0;
  let current = true;
  await applyAssignment(
    async () => {
      attempts++;
      current = false; // a group join arrives while this attempt fails
      throw new Error('This is not the correct coordinator for this group');
    },
    { ...opts, current: () => current },
  );
  t.equal(attempts, 1, 'not tried again');
  t.same(failed, [], 'nor failed: the newer assignment is applied instead');
});

t.test('stopping ends the retries without failing', async (t) => {
  const { failed, opts } = setup();
  const stop = new AbortController();
  let attempts = 0;
  await applyAssignment(
    async () => {
      attempts++;
      stop.abort();
      throw new Error('Closed connection');
    },
    { ...opts, current: () => true, signal: stop.signal },
  );
  t.equal(attempts, 1);
  t.same(failed, []);
});
