/**
 * Applying a partition assignment, and restarting a crashed consumer
 * (src/source/kafka.ts, used by every consumer and by the repartition hop): what is
 * retried, what ends consumption, and when a newer assignment takes over. Pure
 * logic: `apply` stands in for the broker calls, a fake clock for time.
 */
import t from 'tap';
import { FraudSqlError } from '../src/errors.js';
import { createLogger } from '../src/log.js';
import { logLevel } from 'kafkajs';
import { applyAssignment, ASSIGNMENT_RETRY_MS, logCreator, restartPolicy } from '../src/source/kafka.js';

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

/** kafkajs' crash as its consumer reports it: the lookup's error wrapped by a retrier. */
const coordinatorNotFound = () =>
  Object.assign(new Error('Failed to find group coordinator'), {
    name: 'KafkaJSNonRetriableError',
    cause: Object.assign(new Error('Failed to find group coordinator'), { name: 'KafkaJSGroupCoordinatorNotFound', retriable: true }),
  });

function fakeClock() {
  const clock = { t: 0, waited: [] as number[], now: () => clock.t, sleep: async (ms: number) => void clock.waited.push(ms) };
  return clock;
}

t.test('a consumer whose coordinator lookup keeps failing is restarted with backoff, then given up after a minute', async (t) => {
  const clock = fakeClock();
  const restart = restartPolicy(undefined, clock);
  t.equal(await restart(new Error('Connection error')), true, 'any other retriable crash: restarted at once, as kafkajs would');
  t.same(clock.waited, []);
  const answers: boolean[] = [];
  while (clock.t <= ASSIGNMENT_RETRY_MS + 5_000) {
    answers.push(await restart(coordinatorNotFound()));
    clock.t += 5_000;
  }
  t.ok(answers.slice(0, -1).every(Boolean), 'restarted while the episode is under a minute (a broker restarting)');
  t.equal(answers.at(-1), false, 'then given up: a missing group ACL fails the same way, forever');
  t.ok(clock.waited[1]! > clock.waited[0]!, `each restart waits longer (${clock.waited.slice(0, 4).join(', ')} ms)`);
  clock.t += 60_000;
  t.equal(await restart(coordinatorNotFound()), true, 'a later episode starts over');
});

t.test('a stop ends the restarts', async (t) => {
  const stop = new AbortController();
  const restart = restartPolicy(stop.signal, fakeClock());
  stop.abort();
  t.equal(await restart(coordinatorNotFound()), false);
});

t.test("kafkajs' own log: what it retries itself is debug, anything else a warning", async (t) => {
  const lines: string[] = [];
  const log = logCreator(createLogger('debug', (l) => lines.push(l)))();
  const entry = (level: number, message: string, error?: string) =>
    log({ namespace: 'Connection', level, label: '', log: { timestamp: '', message, broker: '127.0.0.1:9092', error } });
  entry(logLevel.ERROR, 'Response JoinGroup(key: 11, version: 5)', "The coordinator is loading and hence can't process requests for this group");
  entry(logLevel.ERROR, 'Response Produce(key: 0, version: 7)', 'Not authorized to access topics: [Topic authorization failed]');
  t.match(lines[0], / DEBUG kafka Connection: Response JoinGroup.*coordinator is loading/, 'a coordinator loading after a start: debug');
  t.match(lines[1], / WARN {2}kafka Connection: Response Produce.*Not authorized/, 'an error it does not retry (no ACL): a warning');
  t.equal(lines.length, 2);
});
