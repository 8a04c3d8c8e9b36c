/**
 * Ingest into the window state (src/state/duckdb.ts): each order counted once,
 * whatever the producer put in its id. Real DuckDB, no Kafka.
 */
import t from 'tap';
import { DuckState } from '../src/state/duckdb.js';
import type { IngestRow } from '../src/engine/ports.js';

const T = Date.parse('2026-01-01T00:00:00Z') * 1000;
const row = (orderId: string, eventUs: number, partition: number, offset: number): IngestRow => ({
  order: { orderId, eventUs, userId: 'U1', productId: 'P1', productName: 'n', price: 1n, quantity: 1, ipAddress: '10.0.0.1', paymentMethod: null },
  partition,
  offset: BigInt(offset),
});

/** Both ways of checking for redeliveries: in JavaScript (small batches) and in DuckDB (large ones). */
const WAYS = [
  { way: 'in JavaScript', stagedFrom: Infinity },
  { way: 'in DuckDB', stagedFrom: 1 },
];

const retained = async (s: DuckState) => {
  const r = await s.query(
    'SELECT order_id, epoch_us(event_time) - $1::BIGINT, kafka_partition, kafka_offset FROM orders ORDER BY kafka_partition, kafka_offset',
    [T],
  );
  return r.columns[0]!.map((id, i) => `${String(id)}@${String(r.columns[1]![i])} ${String(r.columns[2]![i])}/${String(r.columns[3]![i])}`);
};

for (const { way, stagedFrom } of WAYS) {
  t.test(`${way}: ids the producer wrote: NUL, quotes and SQL, lone surrogates; a redelivery is recognised`, async (t) => {
    const s = await DuckState.open(':memory:', { threads: 1, stagedFrom });
    t.teardown(() => s.close());
    {
      for (const id of ['a\u0000b', "x'); DROP TABLE orders; --", 'z\ud800', 'back\\slash']) {
        t.same(await s.ingest([row(id, T, 0, 1)], 1), { inserted: 1, duplicates: 0 }, `${JSON.stringify(id)} is ingested`);
        t.same(await s.ingest([row(id, T, 1, 2)], 2), { inserted: 0, duplicates: 1 }, `${JSON.stringify(id)} again is a redelivery`);
      }
      // DuckDB stores text as UTF-8: both become "q\ufffd", one order.
      t.same(await s.ingest([row('q\ud800', T, 0, 5), row('q\udc00', T, 0, 6)], 3), { inserted: 1, duplicates: 1 });
      t.equal((await retained(s)).length, 5);
    }
  });

  t.test(`${way}: in a batch, the first delivery by partition and offset; one already retained does not count`, async (t) => {
    const s = await DuckState.open(':memory:', { threads: 1, stagedFrom });
    t.teardown(() => s.close());
    {
      t.same(await s.ingest([row('A', T + 100, 0, 0)], 1), { inserted: 1, duplicates: 0 });
      // The batch repeats A as retained (same event time) and brings an order with A's id at
      // another time: that one is new. B comes twice; partition 0 offset 3 is its first.
      const batch = [row('B', T + 300, 1, 9), row('A', T + 100, 0, 1), row('A', T + 200, 0, 2), row('B', T + 300, 0, 3)];
      t.same(await s.ingest(batch, 2), { inserted: 2, duplicates: 2 });
      t.same(await retained(s), ['A@100 0/0', 'A@200 0/2', 'B@300 0/3']);
    }
  });

  t.test(`${way}: redeliveries within a batch, all at one time: the first by partition and offset is kept`, async (t) => {
    const s = await DuckState.open(':memory:', { threads: 1, stagedFrom });
    t.teardown(() => s.close());
    {
      const batch = [row('B', T + 300, 1, 9), row('C', T + 400, 1, 10), row('B', T + 300, 0, 3), row('C', T + 400, 1, 4)];
      t.same(await s.ingest(batch, 1), { inserted: 2, duplicates: 2 });
      t.same(await retained(s), ['B@300 0/3', 'C@400 1/4']);
    }
  });

  t.test(
    `${way}: a batch whose event-time range holds many more retained orders than it has (one late order widens it) still finds its redeliveries`,
    async (t) => {
      const s = await DuckState.open(':memory:', { threads: 1, stagedFrom });
      t.teardown(() => s.close());
      {
        const earlier = Array.from({ length: 500 }, (_, i) => row(`M${i}`, T + i * 1000, 0, i));
        t.same(await s.ingest(earlier, 1), { inserted: 500, duplicates: 0 });
        // Its range is all 500 retained orders: two of them again, and one new one.
        const batch = [row('M0', T, 1, 0), row('N1', T + 499_000, 1, 1), row('M250', T + 250_000, 1, 2)];
        t.same(await s.ingest(batch, 2), { inserted: 1, duplicates: 2 });
        t.equal((await retained(s)).length, 501);
      }
    },
  );
}

t.test('a batch an earlier version left in a file’s staging table is not the next batch’s', async (t) => {
  const file = `${t.testdir()}/state.duckdb`;
  const first = await DuckState.open(file, { threads: 1 });
  // Earlier versions kept the staging table in the file, where a crash could leave a batch.
  await first.run('CREATE TABLE incoming_orders AS SELECT * FROM orders LIMIT 0');
  await first.run("INSERT INTO incoming_orders VALUES ('LEFT', make_timestamp(0::BIGINT), 'U', 'P', 'n', 1, 1, '10.0.0.9', NULL, 0, 0, 1)");
  first.close();
  const s = await DuckState.open(file, { threads: 1, stagedFrom: 1 });
  t.teardown(() => s.close());
  t.same(await s.ingest([row('A', T, 0, 1)], 2), { inserted: 1, duplicates: 0 });
  t.same(await retained(s), ['A@0 0/1']);
  t.equal((await s.query("SELECT table_name FROM duckdb_tables() WHERE table_name = 'incoming_orders'")).rowCount, 0, 'no staging table is left behind');
});

t.test('a file reopened: a redelivery of an order it retains is recognised, however late the order is', async (t) => {
  const file = `${t.testdir()}/state.duckdb`;
  const first = await DuckState.open(file, { threads: 1, stagedFrom: Infinity });
  t.same(await first.ingest([row('A', T, 0, 1), row('B', T + 5_000_000, 0, 2)], 1), { inserted: 2, duplicates: 0 });
  first.close();
  const s = await DuckState.open(file, { threads: 1, stagedFrom: Infinity });
  t.teardown(() => s.close());
  // Later than anything this process ingested, not than what the file holds.
  t.same(await s.ingest([row('B', T + 5_000_000, 1, 7)], 2), { inserted: 0, duplicates: 1 }, 'the newest retained order again');
  t.same(await s.ingest([row('C', T + 6_000_000, 1, 8)], 3), { inserted: 1, duplicates: 0 }, 'a later order');
  t.same(await s.ingest([row('A', T, 1, 9), row('D', T + 7_000_000, 1, 10)], 4), { inserted: 1, duplicates: 1 }, 'a batch reaching back to the oldest');
  t.same(await s.ingest([row('D', T + 7_000_000, 2, 11)], 5), { inserted: 0, duplicates: 1 }, 'the order just ingested, again');
});
