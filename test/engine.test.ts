/**
 * The engine alone, over in-memory fakes of its ports: the order of commits, a
 * failing sink, a rebalance while a batch is in flight, idle finalisation on a
 * moved clock. No Kafka, PostgreSQL or DuckDB: these are the engine's own rules.
 */
import t from 'tap';
import { Engine } from '../src/engine/engine.js';
import type { AssignHandler, CommitInput, Decoded, EnginePorts, OffsetGapPolicy, SinkPort, SourcePort } from '../src/engine/ports.js';
import type { PartitionProgress, SourceMessage } from '../src/types.js';
import { FraudSqlError } from '../src/errors.js';
import { MessageBuffer } from '../src/source/buffer.js';

const S = 1_000_000; // µs

/** Messages carry only their event time (s); the fake decoder turns them into orders. */
const decode = (value: Buffer | null): Decoded => {
  const text = value?.toString() ?? '';
  if (!/^\d+$/.test(text)) return { ok: false, reason: 'not a number' };
  const eventUs = Number(text) * S;
  return {
    ok: true,
    order: { orderId: `o${text}`, eventUs, userId: 'u', productId: 'p', productName: 'n', price: 1n, quantity: 1, ipAddress: '10.0.0.1', paymentMethod: null },
  };
};

function deferred<T = void>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Records every call in one log, so tests can assert the order of events across ports. */
function fakes(log: string[], sinkOverrides: Partial<SinkPort> = {}) {
  const committed: CommitInput[] = [];
  const sink: SinkPort = {
    concurrentCommit: true,
    async evidenceEnds(detections) {
      return detections.map(() => null);
    },
    async progress(starts) {
      log.push(`progress ${[...starts.keys()].join(',')}`);
      return new Map<number, PartitionProgress>([...starts].map(([p, o]) => [p, { partition: p, nextOffset: o, restoreFrom: o, lateOffsets: new Set() }]));
    },
    async commit(input) {
      log.push(`commit ${input.progress.map((a) => `${a.partition}:${a.expected}-${a.next}`).join(' ')}`);
      committed.push(input);
    },
    async finalize(_f, wms) {
      log.push(`finalize ${[...wms].map(([p, w]) => `${p}@${w / S}`).join(' ')}`);
    },
    async resetProgress(p, offset) {
      log.push(`reset ${p} to ${offset}`);
    },
    async openResults() {
      return { names: [], types: [], columns: [], rowCount: 0 };
    },
    ...sinkOverrides,
  };
  const ports: Omit<EnginePorts, 'sink'> = {
    decode,
    state: {
      async ingest(rows, batchId) {
        log.push(`ingest ${batchId} ${rows.map((r) => `${r.partition}/${r.offset}`).join(',')}`);
        return { inserted: rows.length, duplicates: 0 };
      },
      async setBatch() {},
      async retain() {
        return 0;
      },
      async retainedFrom() {
        return new Map();
      },
      async dropPartitions(ps) {
        if (ps.length > 0) log.push(`drop ${ps.join(',')}`);
      },
      async evidence(_field, requests) {
        return requests.map(() => ({ orderIds: [], eventUs: [], orderCount: 0, batchCount: 0 }));
      },
    },
    rules: {
      async run() {
        return [];
      },
      async restoreMirror() {},
      async trim() {},
      async finalize() {},
      prepared: () => [],
    },
    deadLetters: {
      async send(dls) {
        if (dls.length > 0) log.push(`dead letters ${dls.length}`);
      },
    },
  };
  return { ports: { ...ports, sink }, committed };
}

/** A source driven step by step by the test: each `next` takes the next scripted action. */
class ScriptedSource implements SourcePort {
  onAssign!: AssignHandler;
  readonly told: Map<number, bigint>[] = [];
  fetches = 0;
  constructor(private readonly steps: ((signal: AbortSignal) => Promise<readonly SourceMessage[] | null>)[]) {}
  async start(onAssign: AssignHandler) {
    this.onAssign = onAssign;
  }
  async next(_max: number, _waitMs: number, signal: AbortSignal) {
    this.fetches++;
    const step = this.steps.shift();
    return step ? step(signal) : null;
  }
  async committed(offsets: ReadonlyMap<number, bigint>) {
    this.told.push(new Map(offsets));
  }
}

const msg = (partition: number, offset: number, eventS: number | string): SourceMessage => ({
  topic: 'orders',
  partition,
  offset: BigInt(offset),
  key: null,
  value: Buffer.from(String(eventS)),
  timestampMs: 0,
});
const loop = { batchMaxSize: 100, batchMaxWaitMs: 0, tickMs: 0, signal: new AbortController().signal };
const options = (now = () => 0, onOffsetGap: OffsetGapPolicy = 'fail') => ({
  latenessMs: 5_000,
  idleTimeoutMs: 10_000,
  retentionIntervalMs: 0,
  now,
  onOffsetGap,
});
/** Partitions as a source announces them: offsets from 0, end unknown. */
const ranges = (...ps: number[]) => new Map(ps.map((p) => [p, { low: 0n, high: null }]));

t.test('commits run one at a time in batch order, while the next batch is already computed', async (t) => {
  const log: string[] = [];
  const firstCommit = deferred();
  let commits = 0;
  const { ports } = fakes(log, {
    async commit(input) {
      log.push(`commit ${input.progress.map((a) => `${a.partition}:${a.expected}-${a.next}`).join(' ')}`);
      if (++commits === 1) {
        await firstCommit.promise;
        log.push('first commit done');
      }
    },
  });
  const engine = new Engine(ports, options());
  const source = new ScriptedSource([
    async () => {
      await source.onAssign([0], ranges(0));
      return [msg(0, 0, 100), msg(0, 1, 101)];
    },
    async () => [msg(0, 2, 102)],
    async () => {
      // Batch 2 is ingested while batch 1's commit is still running; then let it finish.
      for (let i = 0; i < 100 && !log.includes('ingest 2 0/2'); i++) await new Promise((r) => setImmediate(r));
      t.ok(log.includes('ingest 2 0/2'), 'the second batch is in the state before the first commit ends');
      t.notOk(
        log.some((l) => l.startsWith('commit 0:2-3')),
        'but not committed',
      );
      firstCommit.resolve();
      return null;
    },
  ]);
  await engine.run(source, loop);
  t.same(
    log.filter((l) => l.startsWith('commit') || l === 'first commit done'),
    ['commit 0:0-2', 'first commit done', 'commit 0:2-3'],
    'the second commit starts after the first one succeeded, and expects where it ended',
  );
  t.same(engine.committedOffsets(), new Map([[0, 3n]]));
  t.same(
    source.told.map((m) => m.get(0)),
    [2n, 3n],
    'the source is told of each commit, in order',
  );
});

t.test('a failing commit stops the loop with its error; nothing after it is committed', async (t) => {
  const log: string[] = [];
  let commits = 0;
  const { ports } = fakes(log, {
    async commit(input) {
      if (++commits === 2) throw new Error('PostgreSQL is gone');
      log.push(`commit ${input.progress.map((a) => `${a.partition}:${a.expected}-${a.next}`).join(' ')}`);
    },
  });
  const engine = new Engine(ports, options());
  let offset = 0;
  const endless = async () => [msg(0, offset, 100 + offset++)];
  const source = new ScriptedSource([
    async () => {
      await source.onAssign([0], ranges(0));
      return endless();
    },
    ...Array.from({ length: 50 }, () => endless),
  ]);
  await t.rejects(engine.run(source, loop), /PostgreSQL is gone/);
  t.same(
    log.filter((l) => l.startsWith('commit')),
    ['commit 0:0-1'],
    'only the first batch committed',
  );
  t.same(engine.committedOffsets(), new Map([[0, 1n]]), 'progress stays at the last commit: a restart resumes there');
  t.ok(source.fetches < 6, `fetching stopped at once (${source.fetches} fetches)`);
  t.same(
    source.told.map((m) => m.get(0)),
    [1n],
    'the source is not told of the failed batch',
  );
});

t.test('a rebalance while a batch is in flight: revoked partitions are dropped, new ones resume where the sink says', async (t) => {
  const log: string[] = [];
  const { ports, committed } = fakes(log, {
    async progress(starts) {
      log.push(`progress ${[...starts.keys()].join(',')}`);
      // Partition 2 was consumed up to offset 7 by another instance; its state replays from 5.
      return new Map(
        [...starts].map(([p, o]) => [
          p,
          p === 2
            ? { partition: p, nextOffset: 7n, restoreFrom: 5n, lateOffsets: new Set<bigint>() }
            : { partition: p, nextOffset: o, restoreFrom: o, lateOffsets: new Set<bigint>() },
        ]),
      );
    },
  });
  const engine = new Engine(ports, options());
  let seek = new Map<number, bigint>();
  const source = new ScriptedSource([
    async () => {
      await source.onAssign([0, 1], ranges(0, 1));
      return [msg(0, 0, 100), msg(1, 0, 100)];
    },
    async () => {
      // The group moves partition 0 away and brings partition 2, while batch 1 is in flight.
      seek = await source.onAssign([1, 2], ranges(1, 2));
      // A fetch from before the rebalance still holds a message of partition 0.
      return [msg(0, 1, 101), msg(1, 1, 101), msg(2, 5, 95), msg(2, 6, 96), msg(2, 7, 97)];
    },
  ]);
  await engine.run(source, loop);
  t.same(
    seek,
    new Map([
      [1, 1n],
      [2, 5n],
    ]),
    'partition 1 resumes where it is, partition 2 replays from its restore point',
  );
  t.ok(log.indexOf('drop 0,2') > log.indexOf('commit 0:0-1 1:0-1'), 'the rebalance waits for the batch in flight to commit');
  t.same(
    log.filter((l) => l.startsWith('ingest')),
    ['ingest 1 0/0,1/0', 'ingest 2 2/5,2/6', 'ingest 3 1/1,2/7'],
    'the replayed offsets 5 and 6 rebuild the state only; the revoked partition 0 is ignored',
  );
  t.same(
    committed[1]!.progress.map((a) => [a.partition, a.expected, a.next]),
    [
      [1, 1n, 2n],
      [2, 7n, 8n],
    ],
    'the second commit covers partitions 1 and 2 only, from where each stood',
  );
});

t.test(
  'a fenced commit (another process committed first): the batches in flight are dropped, every partition is rebuilt from the sink, the loop goes on',
  async (t) => {
    const log: string[] = [];
    // What PostgreSQL holds per partition: the next offset committed, by anyone.
    const pg = new Map([
      [0, 0n],
      [1, 0n],
    ]);
    const { ports } = fakes(log, {
      async progress(starts) {
        log.push(`progress ${[...starts.keys()].join(',')}`);
        return new Map([...starts.keys()].map((p) => [p, { partition: p, nextOffset: pg.get(p)!, restoreFrom: pg.get(p)!, lateOffsets: new Set<bigint>() }]));
      },
      async commit(input) {
        const line = `commit ${input.progress.map((a) => `${a.partition}:${a.expected}-${a.next}`).join(' ')}`;
        if (input.progress.some((a) => pg.get(a.partition) !== a.expected)) {
          log.push(`fenced ${line}`);
          throw new FraudSqlError('PG_FENCED', 'another consumer advanced partitions of orders');
        }
        log.push(line);
        for (const a of input.progress) pg.set(a.partition, a.next);
        // Right after, a process given partition 1 in a rebalance commits offsets 1-4 of it.
        if (pg.get(1) === 1n) pg.set(1, 5n);
      },
    });
    const engine = new Engine(ports, options());
    const fenced: Error[] = [];
    engine.events.on('fenced', (err) => fenced.push(err));
    const seeks: Map<number, bigint>[] = [];
    const source = new ScriptedSource([
      async () => {
        seeks.push(await source.onAssign([0, 1], ranges(0, 1)));
        return [msg(0, 0, 100), msg(1, 0, 100)];
      },
      async () => [msg(0, 1, 101), msg(1, 1, 101)],
      // Nothing more arrives: the fence ends the wait, the rebuild does not wait for input.
      (signal) =>
        new Promise((resolve) => {
          if (signal.aborted) resolve([]);
          signal.addEventListener('abort', () => resolve([]), { once: true });
        }),
      async () => [msg(0, 1, 101), msg(0, 2, 102), msg(1, 5, 105)],
    ]);
    Object.assign(source, {
      reassign: async () => {
        log.push('reassign');
        seeks.push(await source.onAssign([0, 1], ranges(0, 1)));
      },
    });
    await engine.run(source, loop);
    t.equal(fenced.length, 1, 'one fence reported');
    t.same(
      log.filter((l) => /commit|drop|reassign|progress/.test(l)),
      ['drop 0,1', 'progress 0,1', 'commit 0:0-1 1:0-1', 'fenced commit 0:1-2 1:1-2', 'drop 0,1', 'reassign', 'drop 0,1', 'progress 0,1', 'commit 0:1-3 1:5-6'],
      'the fenced batch is discarded, both partitions are forgotten and read back from the sink, and consumption resumes there',
    );
    t.same(
      seeks[1],
      new Map([
        [0, 1n],
        [1, 5n],
      ]),
      'partition 0 resumes at its own last commit, partition 1 after the other process',
    );
    t.same(
      engine.committedOffsets(),
      new Map([
        [0, 3n],
        [1, 6n],
      ]),
    );
  },
);

t.test('a fenced commit from a source that cannot reassign stops the loop with it', async (t) => {
  const { ports } = fakes([], {
    async commit() {
      throw new FraudSqlError('PG_FENCED', 'another consumer advanced partitions of orders');
    },
  });
  const engine = new Engine(ports, options());
  const source = new ScriptedSource([
    async () => {
      await source.onAssign([0], ranges(0));
      return [msg(0, 0, 100)];
    },
    ...Array.from({ length: 20 }, () => async () => [] as SourceMessage[]),
  ]);
  await t.rejects(engine.run(source, loop), { code: 'PG_FENCED' });
});

t.test('an engine that does not record dead letters skips malformed input and commits past it', async (t) => {
  const log: string[] = [];
  const { ports, committed } = fakes(log);
  const engine = new Engine(ports, { ...options(), recordsDeadLetters: false });
  const source = new ScriptedSource([
    async () => {
      await source.onAssign([0], ranges(0));
      return [msg(0, 0, 100), msg(0, 1, 'not an order'), msg(0, 2, 101)];
    },
  ]);
  await engine.run(source, loop);
  t.notOk(
    log.some((l) => l.startsWith('dead letters')),
    'nothing sent to the dead-letter topic',
  );
  t.same(
    committed.map((c) => [c.deadLetters.length, c.progress.map((a) => a.next)]),
    [[0, [3n]]],
    'no dead-letter row, and the offsets go past it',
  );
});

t.test('idle partitions finalise windows on wall-clock time, and only then', async (t) => {
  const log: string[] = [];
  const { ports } = fakes(log);
  let now = 1_000_000;
  const engine = new Engine(
    ports,
    options(() => now),
  );
  const source = new ScriptedSource([
    async () => {
      await source.onAssign([0], ranges(0));
      return [msg(0, 0, 100)];
    },
  ]);
  await engine.run(source, loop);
  t.same(engine.effectiveWatermarks(), new Map([[0, 95 * S]]), 'the watermark is the latest event time minus the lateness');
  await engine.tick();
  t.notOk(
    log.some((l) => l.startsWith('finalize')),
    'nothing changes while the clock stands still',
  );
  now += 9_000;
  await engine.tick();
  t.notOk(
    log.some((l) => l.startsWith('finalize')),
    'nor before the idle timeout (10 s)',
  );
  now += 4_000;
  await engine.tick();
  t.same(
    log.filter((l) => l.startsWith('finalize')),
    ['finalize 0@98'],
    '3 s past the idle timeout, the watermark moved 3 s with the clock',
  );
});

t.test('a loop that ends marks final what its last batches closed, even within the interval of the last marking', async (t) => {
  const log: string[] = [];
  const { ports, committed } = fakes(log);
  let now = 1_000_000;
  // Rows are marked final at most once a second, by a batch or by the ticker (off here).
  const engine = new Engine(ports, { ...options(() => now), retentionIntervalMs: 1_000 });
  const source = new ScriptedSource([
    async () => {
      await source.onAssign([0], ranges(0));
      return [msg(0, 0, 100)];
    },
    async () => {
      now += 300;
      return [msg(0, 1, 200)];
    },
  ]);
  await engine.run(source, loop);
  t.same(
    committed.map((c) => [...c.watermarks]),
    [[[0, 95 * S]], [[0, 195 * S]]],
    'the second batch moved the watermark 300 ms after the first one marked rows final',
  );
  t.same(
    log.filter((l) => l.startsWith('finalize')),
    ['finalize 0@195'],
    'the end of the loop marks up to the last watermark',
  );
  now += 1_000;
  await engine.tick();
  t.equal(log.filter((l) => l.startsWith('finalize')).length, 1, 'and the ticker, a second later, has nothing left to do');
});

t.test('a loop that fails marks nothing final on its way out', async (t) => {
  const log: string[] = [];
  const { ports } = fakes(log, {
    async commit() {
      throw new Error('PostgreSQL is gone');
    },
  });
  const engine = new Engine(ports, { ...options(() => 1_000_000), retentionIntervalMs: 1_000 });
  const source = new ScriptedSource([
    async () => {
      await source.onAssign([0], ranges(0));
      return [msg(0, 0, 100)];
    },
  ]);
  await t.rejects(engine.run(source, loop), /PostgreSQL is gone/);
  t.notOk(
    log.some((l) => l.startsWith('finalize')),
    'the failed batch is redone after a restart, which marks what it closes',
  );
});

t.test('a committed offset outside the topic: fail writes nothing; earliest and latest move the progress', async (t) => {
  // PostgreSQL says partition 0 is at offset 500; the topic now holds 0..120 (recreated) or 900..1000 (retention).
  const atFiveHundred = (log: string[]) =>
    fakes(log, {
      async progress(starts) {
        return new Map([...starts].map(([p]) => [p, { partition: p, nextOffset: 500n, restoreFrom: 450n, lateOffsets: new Set<bigint>() }]));
      },
      async resetProgress(p, offset) {
        log.push(`reset ${p} to ${offset}`);
      },
    }).ports;
  const cases: [OffsetGapPolicy, { low: bigint; high: bigint }, string | bigint][] = [
    ['fail', { low: 0n, high: 120n }, /past the end.*recreated.*--on-offset-gap earliest/.source],
    ['fail', { low: 900n, high: 1000n }, /before the start.*retention deleted/.source],
    ['earliest', { low: 0n, high: 120n }, 0n],
    ['latest', { low: 900n, high: 1000n }, 1000n],
    ['fail', { low: 0n, high: 500n }, 450n],
  ];
  const writes = (l: string) => /^(reset|commit|finalize)/.test(l);
  for (const [policy, range, expected] of cases) {
    const log: string[] = [];
    const engine = new Engine(
      atFiveHundred(log),
      options(() => 0, policy),
    );
    const gaps: string[] = [];
    engine.events.on('offset:gap', (g) => gaps.push(`${g.kind}/${g.policy}`));
    const assigning = engine.assign([0], new Map([[0, range]]));
    if (typeof expected === 'string') {
      await t.rejects(assigning, { code: 'OFFSET_GAP', message: new RegExp(expected) }, `${policy} ${range.low}..${range.high}`);
      t.same(log.filter(writes), [], 'nothing was written');
      t.equal(gaps.length, 1, 'the gap is reported');
    } else {
      const seek = await assigning;
      t.equal(seek.get(0), expected, `${policy} ${range.low}..${range.high}: resumes at ${expected}`);
      if (expected === 450n) t.same(gaps, [], 'no gap inside the topic: it replays from the restore point');
      else t.same(log.filter(writes), [`reset 0 to ${expected}`], 'the progress moved with the policy');
    }
  }
});

t.test(
  'through the hop, an input partition that never had an order is announced idle: it holds nothing back and commits no watermark of its own',
  async (t) => {
    const { ports, committed } = fakes([]);
    const engine = new Engine(ports, options());
    let offset = 0;
    // The hop's mark of an input partition with no order yet carries no event time (-Infinity).
    const from = (origin: number, eventS: number | null, idle = false): SourceMessage => ({
      ...msg(0, offset++, eventS ?? ''),
      origin: { topic: 'orders', partition: origin, offset: 0n, partitions: 2 },
      ...(eventS === null ? { mark: -Infinity, value: null, idle } : {}),
    });
    const source = new ScriptedSource([
      async () => {
        await source.onAssign([0], ranges(0));
        return [from(1, null, true)];
      },
      async () => [from(0, 100)],
      async () => [from(1, null, false)],
    ]);
    await engine.run(source, loop);
    t.same(
      committed.map((c) => c.progress[0]!.watermarkUs),
      [null, 95 * S, 95 * S],
      'nothing heard: no watermark; then input partition 0 alone sets it, the empty one idle; a mark without time moves nothing',
    );
  },
);

t.test('through the hop, the slowest input partition sets the watermark; marks move it; one announced idle stops holding it back', async (t) => {
  const log: string[] = [];
  const { ports, committed } = fakes(log);
  let now = 1_000_000;
  const engine = new Engine(
    ports,
    options(() => now),
  );
  // Repartitioned messages: one partition here merges input partitions 0, 1 and 2.
  let offset = 0;
  const from = (origin: number, eventS: number, mark: 'mark' | 'idle' | null = null): SourceMessage => ({
    ...msg(0, offset++, mark ? '' : eventS),
    origin: { topic: 'orders', partition: origin, offset: 0n, partitions: 3 },
    ...(mark ? { mark: eventS * S, value: null, idle: mark === 'idle' } : {}),
  });
  const steps = [
    // Input partition 0 read far ahead (a backlog), then 1 from its start: none of 1 is late.
    [from(0, 100), from(0, 200)],
    [from(1, 90), from(1, 95)],
    // Partition 2 has no order for this partition: a mark says how far it has got.
    [from(2, 150, 'mark')],
    // Behind every input partition's progress by more than the lateness: late.
    [from(1, 80), from(1, 96)],
    // Read to its end and quiet, the slowest one stops holding the others back.
    [from(1, 96, 'idle')],
  ];
  const source = new ScriptedSource(
    steps.map((batch, i) => async () => {
      if (i === 0) await source.onAssign([0], ranges(0));
      return batch;
    }),
  );
  await engine.run(source, loop);
  t.equal(engine.effectiveWatermarks().get(0), 145 * S, 'input partition 1 idle: the slowest of the others (2, at 150 s) minus the lateness');
  t.same(
    committed.flatMap((c) => c.late.map((l) => l.order.eventUs / S)),
    [80],
    'only the order behind the slowest input partition by more than the lateness is late',
  );
  t.equal(
    committed.reduce((n, c) => n + c.progress.length, 0),
    5,
    'marks move the offsets like any message',
  );
  now += 11_000;
  t.equal(engine.effectiveWatermarks().get(0), 146 * S, 'no message for the idle timeout: then the clock moves it');
});

/** A source over the real message buffer, fed by the test: batches close as they do in `run`. */
class BufferedSource implements SourcePort {
  onAssign!: AssignHandler;
  readonly buffer = new MessageBuffer(1_000);
  readonly batches: number[] = [];
  async start(onAssign: AssignHandler) {
    this.onAssign = onAssign;
  }
  async next(max: number, waitMs: number, signal: AbortSignal, free?: Promise<unknown>) {
    const batch = await this.buffer.next(max, waitMs, signal, free);
    if (batch) this.batches.push(batch.length);
    return batch;
  }
  async committed() {}
}

/** Feeds `count` orders one at a time, `everyMs` apart, then ends the input; returns the batch sizes. */
async function trickle(minBatchIntervalMs: number, count: number, everyMs: number): Promise<number[]> {
  const { ports } = fakes([]);
  const engine = new Engine(ports, options());
  const source = new BufferedSource();
  const done = engine.run(source, { ...loop, batchMaxWaitMs: 50, minBatchIntervalMs });
  while (!source.onAssign) await new Promise((r) => setImmediate(r));
  await source.onAssign([0], ranges(0));
  for (let i = 0; i < count; i++) {
    source.buffer.push([msg(0, i, 100 + i)]);
    await new Promise((r) => setTimeout(r, everyMs));
  }
  source.buffer.end();
  await done;
  return source.batches;
}

t.test('a spaced engine takes fewer, larger batches of a trickle; every order still arrives', async (t) => {
  // 40 orders 10 ms apart: about 400 ms of input.
  const unspaced = await trickle(0, 40, 10);
  const spaced = await trickle(200, 40, 10);
  t.equal(
    spaced.reduce((a, b) => a + b, 0),
    40,
  );
  t.equal(
    unspaced.reduce((a, b) => a + b, 0),
    40,
  );
  t.ok(unspaced.length >= 10, `without spacing, a batch per order or so (${unspaced.length} batches)`);
  // The first order is taken at once; after it, at most one batch per 200 ms.
  t.ok(spaced.length <= 4, `with 200 ms spacing, at most 4 batches (${spaced.length}: ${spaced.join(', ')})`);
  t.equal(spaced[0], 1, 'an order after a quiet spell is not held back');
});

t.test('spacing never holds back a full batch: a backlog drains at once', async (t) => {
  const { ports } = fakes([]);
  const engine = new Engine(ports, options());
  const source = new BufferedSource();
  const started = Date.now();
  const done = engine.run(source, { ...loop, batchMaxSize: 2, batchMaxWaitMs: 50, minBatchIntervalMs: 60_000 });
  while (!source.onAssign) await new Promise((r) => setImmediate(r));
  await source.onAssign([0], ranges(0));
  source.buffer.push([0, 1, 2, 3, 4, 5].map((i) => msg(0, i, 100 + i)));
  source.buffer.end();
  await done;
  t.same(source.batches, [2, 2, 2]);
  t.ok(Date.now() - started < 30_000, 'long before one spacing of 60 s');
});
