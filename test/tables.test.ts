// A rule's result table derived from its header and output types, and the
// statements that bring an existing table to it (pure: no database).
import t from 'tap';
import { columnType, createTableSql, deriveTable, planTable, type ExistingTable, type ResultTable } from '../src/sink/tables.js';

const cardTesting = {
  name: 'card_testing',
  file: 'queries/card_testing.sql',
  target: 'card_testing',
  key: ['source_partition', 'user_id', 'window_start'],
  grows: ['order_count'],
  finalAfter: 'window_end',
};
const names = ['source_partition', 'user_id', 'window_start', 'window_end', 'order_count', 'method_count'];
const duckTypes = ['INTEGER', 'VARCHAR', 'TIMESTAMP', 'TIMESTAMP', 'BIGINT', 'BIGINT'];

t.test('column types follow the DuckDB output types', async (t) => {
  const cases: [string, string | null][] = [
    ['INTEGER', 'integer'],
    ['SMALLINT', 'integer'],
    ['BIGINT', 'bigint'],
    ['HUGEINT', 'bigint'],
    ['DECIMAL(38,0)', 'bigint'],
    ['VARCHAR', 'text'],
    ['BOOLEAN', 'boolean'],
    ['DOUBLE', 'double precision'],
    ['TIMESTAMP', 'timestamp with time zone'],
    ['TIMESTAMP WITH TIME ZONE', 'timestamp with time zone'],
    ['DECIMAL(18,2)', null],
    ['INTEGER[]', null],
    ['STRUCT(a INTEGER)', null],
  ];
  for (const [duck, pg] of cases) t.equal(columnType(duck)?.pg ?? null, pg, duck);
});

t.test('a rule file defines its table: columns, key, finalizable', async (t) => {
  const table = deriveTable(cardTesting, names, duckTypes) as ResultTable;
  t.same(
    table.columns.map((c) => [c.name, c.pg, c.duck]),
    [
      ['source_partition', 'integer', 'INTEGER'],
      ['user_id', 'text', 'VARCHAR'],
      ['window_start', 'timestamp with time zone', 'TIMESTAMP'],
      ['window_end', 'timestamp with time zone', 'TIMESTAMP'],
      ['order_count', 'bigint', 'BIGINT'],
      ['method_count', 'bigint', 'BIGINT'],
    ],
  );
  t.same(table.key, cardTesting.key);
  t.equal(table.finalizable, true);
  t.equal((deriveTable({ ...cardTesting, finalAfter: null }, names, duckTypes) as ResultTable).finalizable, false);
});

t.test('what no table can hold is a problem naming the column', async (t) => {
  const problems = deriveTable(
    {
      ...cardTesting,
      key: ['source_partition', 'card'],
      grows: ['seen'],
      alert: { severity: 'high', keyColumns: ['card'], evidenceField: null, step: { column: 'tries', every: 10n }, evidenceMax: 100 },
    },
    ['user_id', 'is_final', 'amount', 'user_id'],
    ['VARCHAR', 'BOOLEAN', 'DECIMAL(18,2)', 'VARCHAR'],
  ) as string[];
  t.match(problems, [
    /"is_final" is managed by fraud-sql/,
    /"amount" is DECIMAL\(18,2\), which a result table cannot hold/,
    /outputs a column name twice/,
    /does not output "source_partition"/,
    /key column "source_partition"/,
    /key column "card"/,
    /grows column "seen"/,
    /alert step column "tries" is not in the rule's output/,
  ]);
});

t.test('an alert step counts a whole-number column', async (t) => {
  const alert = { severity: 'high', keyColumns: ['user_id'], evidenceField: 'user_id', step: { column: 'spent', every: 1000n }, evidenceMax: 100 };
  t.match(deriveTable({ ...cardTesting, alert }, [...names, 'spent'], [...duckTypes, 'DOUBLE']), [
    /alert step column "spent" is double precision: steps count whole numbers/,
  ]);
  t.notOk(Array.isArray(deriveTable({ ...cardTesting, alert }, [...names, 'spent'], [...duckTypes, 'HUGEINT'])), 'a sum of integers is fine');
});

t.test("fraud-sql's own tables are no rule's target", async (t) => {
  for (const target of ['orders', 'incoming_orders', 'dead_letters', 'consumer_progress', 'popular_products', 'result_card_testing']) {
    t.match(deriveTable({ ...cardTesting, target }, names, duckTypes), [new RegExp(`target "${target}" is a table of fraud-sql itself`)], target);
  }
  t.notOk(Array.isArray(deriveTable({ ...cardTesting, target: 'popular_products_partial' }, names, duckTypes)), "the partial tables are the rules' own");
});

t.test('CREATE TABLE: managed columns added, key unique, is_final only when rows become final', async (t) => {
  const table = deriveTable(cardTesting, names, duckTypes) as ResultTable;
  const [pg] = createTableSql('postgres', table);
  t.match(pg, /^CREATE TABLE "card_testing" \("id" bigserial PRIMARY KEY, "source_partition" integer NOT NULL, "user_id" text NOT NULL, /);
  t.match(pg, /"order_count" bigint, "method_count" bigint, "is_final" boolean NOT NULL DEFAULT false, "rule_version" text, "created_at" timestamptz/);
  t.match(pg, /UNIQUE \("source_partition", "user_id", "window_start"\)\)$/);
  const [duck] = createTableSql('duckdb', { ...table, finalizable: false }, 'result_card_testing', { replace: true });
  t.match(duck, /^CREATE OR REPLACE TABLE "result_card_testing" \("source_partition" INTEGER NOT NULL, /);
  t.notMatch(duck, /is_final|"id"/);
  t.match(duck, /PRIMARY KEY \("source_partition", "user_id", "window_start"\)\)$/);
});

t.test('an existing table: equal is left alone, added columns added, destructive changes refused in one line', async (t) => {
  const table = deriveTable(cardTesting, names, duckTypes) as ResultTable;
  const existing = (): ExistingTable => ({
    columns: new Map([
      ['id', 'bigint'],
      ...table.columns.map((c): [string, string] => [c.name, c.pg]),
      ['is_final', 'boolean'],
      ['rule_version', 'text'],
      ['created_at', 'timestamp with time zone'],
      ['updated_at', 'timestamp with time zone'],
    ]),
    uniques: [['id'], ['window_start', 'user_id', 'source_partition']],
  });
  t.same(planTable('postgres', table, existing()), { statements: [] }, 'equal (key in any order): nothing to do');
  t.match(planTable('postgres', table, null), { statements: [/^CREATE TABLE "card_testing"/, /created_at/, /WHERE NOT "is_final"/] });

  const older = existing();
  older.columns.delete('method_count');
  older.columns.delete('is_final');
  t.same(planTable('postgres', table, older), {
    statements: [
      'ALTER TABLE "card_testing" ADD COLUMN "method_count" bigint',
      'ALTER TABLE "card_testing" ADD COLUMN "is_final" boolean NOT NULL DEFAULT false',
    ],
  });

  const retyped = existing();
  retyped.columns.set('method_count', 'integer');
  const dropped = existing();
  dropped.columns.set('card_count', 'bigint');
  const rekeyed = existing();
  rekeyed.uniques = [['id'], ['source_partition', 'user_id']];
  const refusals = [planTable('postgres', table, retyped), planTable('postgres', table, dropped), planTable('postgres', table, rekeyed)].map((p) =>
    'refusal' in p ? p.refusal : '',
  );
  t.match(
    refusals[0],
    /^rule card_testing \(queries\/card_testing.sql\) writes table card_testing: column "method_count" is integer in the table, the rule now outputs bigint/,
  );
  t.match(refusals[1], /column "card_count" of the table is no longer in the rule's output/);
  t.match(refusals[2], /with key \(source_partition, user_id, window_start\), but the table's key is \(source_partition, user_id\)/);
  for (const r of refusals) {
    t.match(r, /write to a new table \(change "-- target:"\), or drop table card_testing/);
    t.notMatch(r, /\n/, 'one line');
  }
});
