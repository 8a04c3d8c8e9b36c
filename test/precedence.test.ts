/** The per-order lane's work goes first (src/engine/precedence.ts): pure, no DuckDB. */
import t from 'tap';
import { settled } from './settled.js';
import { Precedence } from '../src/engine/precedence.js';

// A wait no test reaches.
const LONG = 60_000;

t.test('nothing goes first: the others do not wait', async (t) => {
  t.equal(new Precedence(LONG).turn(), null);
});

t.test('the others wait until the work that goes first is done', async (t) => {
  const p = new Precedence(LONG);
  let done!: () => void;
  const first = p.first(() => new Promise<string>((r) => (done = () => r('result'))));
  const turn = p.turn();
  t.ok(turn, 'a turn to wait for');
  t.notOk(await settled(turn!), 'still waiting while it runs');
  done();
  t.equal(await first, 'result', 'first() gives what its work gives');
  t.ok(await settled(turn!), 'their turn once it is done');
  t.equal(p.turn(), null, 'and nothing to wait for after');
});

t.test('overlapping work: the others wait for all of it', async (t) => {
  const p = new Precedence(LONG);
  const ends: (() => void)[] = [];
  const a = p.first(() => new Promise<void>((r) => ends.push(r)));
  const b = p.first(() => new Promise<void>((r) => ends.push(r)));
  const turn = p.turn()!;
  ends[0]!();
  await a;
  t.notOk(await settled(turn), 'one still runs');
  ends[1]!();
  await b;
  t.ok(await settled(turn));
});

t.test('a failure ends the precedence too', async (t) => {
  const p = new Precedence(LONG);
  let fail!: () => void;
  const first = p.first(() => new Promise<void>((_, reject) => (fail = () => reject(new Error('boom')))));
  const turn = p.turn()!;
  fail();
  await t.rejects(first, /boom/);
  t.ok(await settled(turn));
});

t.test('the others wait at most maxWaitMs: a busy lane slows them down, never stops them', async (t) => {
  const p = new Precedence(5);
  let done!: () => void;
  const first = p.first(() => new Promise<void>((r) => (done = r)));
  await p.turn(); // resolves on its own while the work still runs
  t.ok(p.turn(), 'the work still runs');
  done();
  await first;
});
