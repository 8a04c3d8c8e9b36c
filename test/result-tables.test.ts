/**
 * Result tables derived from rule files, against the real PostgreSQL and DuckDB: a
 * new rule gets its tables with no code, an added column is added, a destructive
 * change is refused with one line, a re-run changes nothing; and every fixture
 * writes the same rows through the PostgreSQL sink as through the DuckDB one.
 */
import t, { type Test } from 'tap';
import { execFile } from 'node:child_process';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { loadConfig } from '../src/config.js';
import { fixtureFiles, readFixture, runFixtures } from '../src/commands/fixtures.js';
import { backtest } from '../src/commands/backtest.js';
import { runInMemory } from '../src/compose.js';
import { silentLogger, type Logger } from '../src/log.js';
import { RuleSet } from '../src/rules/index.js';
import { DuckSink } from '../src/sink/duck.js';
import { PgSink } from '../src/sink/postgres.js';
import { createTableSql, deriveTable, type ResultTable } from '../src/sink/tables.js';
import { finalizeSql, replaceSql, rowsFrom, sqlString, upsertSql, watermarksFrom } from '../src/sink/sql.js';
import { rowsOf as rowsOfDuck } from '../src/types.js';
import { DuckState } from '../src/state/duckdb.js';
import { PG_URL, uniqueName } from './helpers.js';

const QUERIES = new URL('../queries', import.meta.url).pathname;
const USER_METHODS = new URL('./rules/user_methods', import.meta.url).pathname;
const CLI = new URL('../dist/cli.js', import.meta.url).pathname;
const exec = promisify(execFile);

/** The built-in rules plus user_methods, in a directory the test may edit (the test's one testdir). */
function rulesDir(t: Test): string {
  const dir = t.testdir();
  cpSync(QUERIES, dir, { recursive: true });
  cpSync(USER_METHODS, dir, { recursive: true });
  return dir;
}

async function tablesOf(dir: string): Promise<ResultTable[]> {
  const state = await DuckState.open(':memory:', { threads: 1 });
  try {
    return (await RuleSet.load(state, dir)).tables();
  } finally {
    state.close();
  }
}

function editRule(dir: string, edit: (sql: string) => string): void {
  const file = path.join(dir, 'user_methods.sql');
  writeFileSync(file, edit(readFileSync(file, 'utf8')));
}

async function schema(t: Test): Promise<{ name: string; pool: pg.Pool }> {
  const name = uniqueName('tables');
  const pool = new pg.Pool({ connectionString: PG_URL, max: 2, options: `-c search_path=${name} -c TimeZone=UTC` });
  t.teardown(async () => {
    await pool.query(`DROP SCHEMA IF EXISTS ${name} CASCADE`);
    await pool.end();
  });
  return { name, pool };
}

/** A logger that keeps the DDL the sink runs. */
function ddlLogger(): Logger & { ddl: string[] } {
  const ddl: string[] = [];
  return { ...silentLogger, ddl, info: (msg: string) => void (msg.startsWith('result tables: ') && ddl.push(msg.slice('result tables: '.length))) };
}

const columnsOf = async (pool: pg.Pool, table: string) =>
  (
    await pool.query(
      `SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position`,
      [table],
    )
  ).rows.map((r) => `${r.column_name} ${r.data_type}`);

t.test('PostgreSQL: a new rule gets its table, an added column is added, a destructive change is refused, a re-run does nothing', async (t) => {
  const dir = rulesDir(t);
  const { name, pool } = await schema(t);
  const open = async (logger: Logger) => {
    const sink = await PgSink.open({ databaseUrl: PG_URL, schema: name, consumerGroup: 'g', topic: 'orders', logger, tables: await tablesOf(dir) });
    await sink.close();
  };
  const first = ddlLogger();
  await open(first);
  t.same(await columnsOf(pool, 'user_methods'), [
    'id bigint',
    'source_partition integer',
    'user_id text',
    'window_start timestamp with time zone',
    'window_end timestamp with time zone',
    'order_count bigint',
    'method_count bigint',
    'is_final boolean',
    'rule_version text',
    'created_at timestamp with time zone',
    'updated_at timestamp with time zone',
  ]);
  t.ok(
    first.ddl.every((s) => ['"user_methods"', '"card_testing"', '"shared_ip_accounts"', '"blocked_activity"'].some((table) => s.includes(table))),
    'the tables of migration 1 already are what the built-in rules derive: only the tables of the newer rules are created',
  );
  t.same(
    (await pool.query(`SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'popular_products'`)).rowCount,
    9,
    'the views stay',
  );

  const again = ddlLogger();
  await open(again);
  t.same(again.ddl, [], 'a re-run is a no-op');

  editRule(dir, (s) =>
    s.replace(
      'count(DISTINCT o.payment_method)  AS method_count',
      'count(DISTINCT o.payment_method)  AS method_count,\n  sum(o.price * o.quantity)         AS total_spent',
    ),
  );
  const added = ddlLogger();
  await open(added);
  t.same(added.ddl, ['ALTER TABLE "user_methods" ADD COLUMN "total_spent" bigint']);
  t.ok((await columnsOf(pool, 'user_methods')).includes('total_spent bigint'));

  const refused = async (edit: (s: string) => string, message: RegExp) => {
    const before = await columnsOf(pool, 'user_methods');
    editRule(dir, edit);
    const err = await open(silentLogger).then(
      () => null,
      (e: Error & { code?: string }) => e,
    );
    t.equal(err?.code, 'TABLE_CHANGE_REFUSED');
    t.match(err?.message, message);
    t.notMatch(err?.message, /\n/, 'in one line');
    t.match(err?.message, /write to a new table \(change "-- target:"\), or drop table user_methods/, 'saying what to do');
    t.same(await columnsOf(pool, 'user_methods'), before, 'and nothing changed');
  };
  await refused(
    (s) => s.replace(',\n  sum(o.price * o.quantity)         AS total_spent', ''),
    /^rule user_methods \(.*user_methods\.sql\) writes table user_methods: column "total_spent" of the table is no longer in the rule's output/,
  );
  editRule(dir, (s) =>
    s.replace(
      'count(DISTINCT o.payment_method)  AS method_count',
      'count(DISTINCT o.payment_method)  AS method_count,\n  sum(o.price * o.quantity)         AS total_spent',
    ),
  );
  await refused((s) => s.replace('AS method_count', '::VARCHAR AS method_count'), /column "method_count" is bigint in the table, the rule now outputs text/);
  editRule(dir, (s) => s.replace('::VARCHAR AS method_count', 'AS method_count'));
  await refused(
    (s) => s.replace('-- key: source_partition, user_id, window_start', '-- key: source_partition, user_id, window_end'),
    /with key \(source_partition, user_id, window_end\), but the table's key is \(source_partition, user_id, window_start\)/,
  );
});

t.test('fraud-sql migrate creates the tables of the rules, and prints a refusal as its one line', async (t) => {
  const dir = rulesDir(t);
  const { name, pool } = await schema(t);
  const migrate = () =>
    exec('node', [CLI, 'migrate', '--queries-dir', dir, '--pg-schema', name, '--database-url', PG_URL]).then(
      (r) => ({ code: 0, err: r.stderr }),
      (e: { code: number; stderr: string }) => ({ code: e.code, err: e.stderr }),
    );
  t.equal((await migrate()).code, 0);
  t.ok((await columnsOf(pool, 'user_methods')).includes('method_count bigint'));
  editRule(dir, (s) => s.replace('AS method_count', '::INTEGER AS method_count'));
  const r = await migrate();
  t.not(r.code, 0);
  t.match(r.err, /rule user_methods \(.*\) writes table user_methods: column "method_count" is bigint in the table, the rule now outputs integer/);
});

t.test('DuckDB: the same derivation, growth and refusal in a demo file', async (t) => {
  const dir = rulesDir(t);
  const file = path.join(dir, 'demo.duckdb');
  const open = async () => {
    const state = await DuckState.open(file, { threads: 1 });
    try {
      await DuckSink.open(state, 'demo', await tablesOf(dir));
      return ((await state.query(`SELECT column_name || ' ' || data_type AS c FROM duckdb_columns() WHERE table_name = 'user_methods'`)).columns[0] ??
        []) as string[];
    } finally {
      state.close();
    }
  };
  t.same(await open(), [
    'source_partition INTEGER',
    'user_id VARCHAR',
    'window_start TIMESTAMP',
    'window_end TIMESTAMP',
    'order_count BIGINT',
    'method_count BIGINT',
    'is_final BOOLEAN',
    'rule_version VARCHAR',
    'created_at TIMESTAMP',
    'updated_at TIMESTAMP',
  ]);
  t.same(await open(), await open(), 'reopening changes nothing');
  editRule(dir, (s) =>
    s.replace('count(DISTINCT o.payment_method)  AS method_count', 'count(DISTINCT o.payment_method)  AS method_count,\n  max(o.price)  AS top_price'),
  );
  t.ok((await open()).includes('top_price BIGINT'), 'an added column is added');
  editRule(dir, (s) => s.replace(',\n  max(o.price)  AS top_price', ''));
  await t.rejects(open(), { code: 'TABLE_CHANGE_REFUSED', message: /column "top_price" of the table is no longer in the rule's output/ });
});

t.test('under a running engine, a destructive edit is rejected and the previous rules keep running; an added column is applied', async (t) => {
  const dir = rulesDir(t);
  const state = await DuckState.open(':memory:', { threads: 1 });
  t.teardown(() => state.close());
  const rules = await RuleSet.load(state, dir);
  const sink = await DuckSink.open(state, 'demo', rules.tables());
  const version = () => rules.prepared().find((p) => p.rule.name === 'user_methods')!.rule.version;
  const before = version();
  editRule(dir, (s) => s.replace('AS order_count,\n  count(DISTINCT o.payment_method)  AS method_count', 'AS order_count'));
  const r = await rules.reload(dir, undefined, (tables) => sink.ensureTables(tables));
  t.equal(r.ok, false);
  t.match(r.problems, [{ file: path.join(dir, 'user_methods.sql'), message: /column "method_count" of the table is no longer in the rule's output/ }]);
  t.equal(r.problems.length, 1);
  t.equal(version(), before, 'the previous version keeps running');

  editRule(dir, (s) => s.replace('AS order_count', 'AS order_count,\n  count(DISTINCT o.payment_method)  AS method_count,\n  max(o.price) AS top_price'));
  const r2 = await rules.reload(dir, undefined, (tables) => sink.ensureTables(tables));
  t.equal(r2.ok, true);
  t.same(r2.changed, ['user_methods']);
  const cols = (await state.query(`SELECT column_name FROM duckdb_columns() WHERE table_name = 'user_methods'`)).columns[0] as string[];
  t.ok(cols.includes('top_price'), 'the added column is in the table');
});

t.test('a rule added as a SQL file alone runs in rules test and backtest', async (t) => {
  const dir = rulesDir(t);
  const config = loadConfig({ queriesDir: dir }, {});
  const outcomes = await runFixtures(config, 'user_methods');
  t.equal(outcomes.length, 1);
  t.ok(outcomes[0]!.ok, outcomes[0]!.problem ?? 'the user_methods fixture passes');
  const fx = readFixture(path.join(dir, 'fixtures/user_methods/three-methods.json'));
  if (fx.problem !== undefined) throw new Error(fx.problem);
  const input = path.join(dir, 'orders.jsonl');
  writeFileSync(input, fx.batches.flatMap((b) => b.map((m) => m.value.toString())).join('\n') + '\n');
  const report = await backtest(config, { input });
  t.equal(report.counts.user_methods, 1, 'backtest counts its row');
});

t.test('upsert, replace, grows and finalize do the same on PostgreSQL and DuckDB', async (t) => {
  const { name, pool } = await schema(t);
  await pool.query(`CREATE SCHEMA ${name}`);
  const state = await DuckState.open(':memory:', { threads: 1 });
  t.teardown(() => state.close());
  const table = deriveTable(
    { name: 'bursts', file: 'bursts.sql', target: 'bursts', key: ['source_partition', 'ip', 'start_at'], grows: ['n'], finalAfter: 'start_at' },
    ['source_partition', 'ip', 'start_at', 'n'],
    ['INTEGER', 'VARCHAR', 'TIMESTAMP', 'BIGINT'],
  ) as ResultTable;
  for (const sql of createTableSql('postgres', table)) await pool.query(sql);
  for (const sql of createTableSql('duckdb', table)) await state.run(sql);
  const names = table.columns.map((c) => c.name);
  type Row = [number, string, string, number];
  const write = async (rows: Row[], version: string, replace: string[] = []) => {
    const cols = names.map((_, i) => rows.map((r) => r[i]));
    const pgFrom = rowsFrom('postgres', table.columns);
    if (replace.length > 0) await pool.query(replaceSql(table, 'bursts', replace, pgFrom), cols);
    await pool.query(upsertSql(table, 'bursts', names, pgFrom, `$${names.length + 1}::text`, ['n']), [...cols, version]);
    const values = rows.map((r) => `(${r[0]}, '${r[1]}', TIMESTAMP '${r[2]}', ${r[3]})`).join(', ');
    await state.run(`CREATE OR REPLACE TEMP TABLE changed_bursts AS SELECT * FROM (VALUES ${values}) AS v(${names.join(', ')})`);
    const duckFrom = rowsFrom('duckdb', table.columns, 'changed_bursts');
    if (replace.length > 0) await state.run(replaceSql(table, 'bursts', replace, duckFrom));
    await state.run(upsertSql(table, 'bursts', names, duckFrom, sqlString(version), ['n']));
  };
  const finalize = async (us: number) => {
    await pool.query(finalizeSql('bursts', 'start_at', watermarksFrom('postgres', new Map([[0, us]]))), [[0], [new Date(us / 1000).toISOString()]]);
    await state.run(finalizeSql('bursts', 'start_at', watermarksFrom('duckdb', new Map([[0, us]]))));
  };
  // updated_at is shown as "touched": changed since the step before, per key.
  let pgStamp = new Map<string, string>();
  let duckStamp = new Map<string, string>();
  const expectBoth = async (step: string, want: string[]) => {
    const pgRows = (
      await pool.query(`SELECT ip, ip || start_at::text AS k, n, rule_version, is_final, updated_at::text AS u FROM bursts ORDER BY ip, start_at`)
    ).rows;
    const duckRows = rowsOfDuck(
      await state.query(`SELECT ip, ip || start_at::VARCHAR AS k, n, rule_version, is_final, updated_at::VARCHAR AS u FROM bursts ORDER BY ip, start_at`),
    );
    const show = (rows: Record<string, unknown>[], before: Map<string, string>) =>
      rows.map(
        (r) => `${r.ip} ${r.n} ${r.rule_version} ${r.is_final ? 'final' : 'open'}${before.has(`${r.k}`) && before.get(`${r.k}`) !== r.u ? ' touched' : ''}`,
      );
    t.same(show(pgRows, pgStamp), want, `PostgreSQL: ${step}`);
    t.same(show(duckRows, duckStamp), want, `DuckDB: ${step}`);
    pgStamp = new Map(pgRows.map((r) => [`${r.k}`, r.u as string]));
    duckStamp = new Map(duckRows.map((r) => [`${r.k}`, r.u as string]));
    await new Promise((r) => setTimeout(r, 5));
  };
  await write(
    [
      [0, 'a', '2025-12-30 12:00:00', 5],
      [0, 'b', '2025-12-30 12:00:00', 2],
    ],
    'v1',
  );
  await expectBoth('inserted', ['a 5 v1 open', 'b 2 v1 open']);
  await write([[0, 'a', '2025-12-30 12:00:00', 5]], 'v1');
  await expectBoth('an identical row is not touched', ['a 5 v1 open', 'b 2 v1 open']);
  await write([[0, 'a', '2025-12-30 12:00:00', 4]], 'v1');
  await expectBoth('the same version never lowers a grows column', ['a 5 v1 open', 'b 2 v1 open']);
  await write([[0, 'a', '2025-12-30 12:00:00', 3]], 'v2');
  await expectBoth('a new version may', ['a 3 v2 open touched', 'b 2 v1 open']);
  await finalize(Date.parse('2025-12-30T12:00:00Z') * 1000);
  await expectBoth('final once the watermark passes final_after', ['a 3 v2 final touched', 'b 2 v1 final touched']);
  await write([[0, 'a', '2025-12-30 12:00:00', 6]], 'v2');
  await expectBoth('a changed row is open again', ['a 6 v2 open touched', 'b 2 v1 final']);
  await write([[0, 'a', '2025-12-30 12:01:00', 7]], 'v2', ['source_partition', 'ip']);
  await expectBoth('replace drops the open rows of the group the result no longer has', ['a 7 v2 open', 'b 2 v1 final']);
});

/** A rule's rows as text, its columns and is_final, sorted: what both sinks must agree on. */
const rowsSql = (table: ResultTable, dialect: 'postgres' | 'duckdb') => {
  const cols = [...table.columns.map((c) => ({ name: c.name, ts: c.duck === 'TIMESTAMP' })), ...(table.finalizable ? [{ name: 'is_final', ts: false }] : [])];
  const text = (c: { name: string; ts: boolean }) =>
    dialect === 'postgres'
      ? c.ts
        ? `(extract(epoch FROM "${c.name}") * 1000000)::bigint::text`
        : `"${c.name}"::text`
      : c.ts
        ? `epoch_us("${c.name}")::VARCHAR`
        : `"${c.name}"::VARCHAR`;
  return `SELECT ${cols.map(text).join(" || '|' || ")} AS r FROM "${table.name}" ORDER BY 1`;
};

t.test('every fixture writes the same rows to PostgreSQL as to DuckDB', async (t) => {
  const dir = rulesDir(t);
  const config = loadConfig({ queriesDir: dir }, {});
  const files = fixtureFiles(dir);
  t.ok(files.length >= 8, `${files.length} fixtures`);
  for (const file of files) {
    const fx = readFixture(file);
    if (fx.problem !== undefined) throw new Error(`${file}: ${fx.problem}`);
    const { name, pool } = await schema(t);
    const sink = await PgSink.open({ databaseUrl: PG_URL, schema: name, consumerGroup: 'parity', topic: 'input', logger: silentLogger });
    const { state, rules } = await runInMemory(config, dir, fx.batches, { postgres: sink });
    try {
      let rows = 0;
      for (const table of rules.tables()) {
        const duck = ((await state.query(rowsSql(table, 'duckdb'))).columns[0] ?? []) as string[];
        const pgRows = (await pool.query(rowsSql(table, 'postgres'))).rows.map((r) => r.r as string);
        t.same(pgRows, duck, `${path.relative(dir, file)}: ${table.name}`);
        rows += duck.length;
      }
      t.ok(rows > 0, `${path.relative(dir, file)} writes rows`);
    } finally {
      state.close();
      await sink.close();
    }
  }
});

t.test('closing windows on the watermark alone never lowers a partition watermark another instance has advanced', async (t) => {
  const { name, pool } = await schema(t);
  const sink = await PgSink.open({ databaseUrl: PG_URL, schema: name, consumerGroup: 'g', topic: 'orders', logger: silentLogger });
  t.teardown(() => sink.close());
  const us = (iso: string) => Date.parse(iso) * 1000;
  // The partition's new owner has committed up to 12:00:30; a stopping instance still holds 12:00:10.
  await pool.query(
    `INSERT INTO consumer_progress (consumer_group, topic, kafka_partition, next_offset, restore_from, watermark) VALUES ('g', 'orders', 0, 10, 0, '2026-11-27T12:00:30Z')`,
  );
  const watermark = async () => (await pool.query(`SELECT watermark FROM consumer_progress WHERE kafka_partition = 0`)).rows[0].watermark.toISOString();
  await sink.finalize([], new Map([[0, us('2026-11-27T12:00:10Z')]]));
  t.equal(await watermark(), '2026-11-27T12:00:30.000Z', 'an older watermark leaves it as it is');
  await sink.finalize([], new Map([[0, us('2026-11-27T12:00:40Z')]]));
  t.equal(await watermark(), '2026-11-27T12:00:40.000Z', 'a newer one advances it');
});

t.test('alert payloads reach the outbox exactly as built, whatever the order fields held', async (t) => {
  const { name, pool } = await schema(t);
  const sink = await PgSink.open({ databaseUrl: PG_URL, schema: name, consumerGroup: 'g', topic: 'orders', logger: silentLogger });
  t.teardown(() => sink.close());
  const fields = [
    `<script>alert("x")</script>`,
    `'; DROP TABLE orders; --`,
    'back\\slash "quoted" \\"',
    '\u0000\u001b[31m\n\t',
    '\ud800 lone surrogate',
    '주문 \u{1F600}',
    '{"a":[1,2]}',
    '',
  ];
  const alerts = fields.map((field, i) => ({
    id: `alert-${i}`,
    rule: 'high_value_orders',
    key: `key "${i}"`,
    payload: JSON.stringify({ alert_id: `alert-${i}`, row: { product_name: field }, evidence: { order_ids: [field] } }),
  }));
  await sink.commit({ results: [], deadLetters: [], late: [], progress: [], finalizers: [], watermarks: new Map(), alerts, evidence: [] });
  const rows = (await pool.query(`SELECT alert_id, alert_key, payload FROM alert_outbox ORDER BY alert_id`)).rows;
  t.same(
    rows.map((r) => [r.alert_id, r.alert_key, r.payload]),
    alerts.map((a) => [a.id, a.key, a.payload]),
    'each payload and key as built, in its own row',
  );
  t.same(
    rows.map((r) => JSON.parse(r.payload).row.product_name),
    fields,
    'and each field back from the JSON, a lone surrogate included',
  );
});
