/** Allow and block lists (src/rules/lists.ts): parsing, problems at their line, and the tables rules read. */
import t from 'tap';
import { mkdirSync, writeFileSync } from 'node:fs';
import { installLists, loadLists, parseList, withEntries, type List } from '../src/rules/lists.js';
import { DuckState } from '../src/state/duckdb.js';

const problems = (file: string, text: string) => {
  const r = parseList(file, text);
  return 'list' in r ? [] : r.diagnostics.map((d) => `${d.line}: ${d.message}`);
};

t.test('a list is a header line, then one entry per line; quoted values keep commas, quotes and line breaks', async (t) => {
  const r = parseList('lists/allow_ips.csv', 'ip_address,reason\r\n203.0.113.9,office NAT\n"10.0.0.1","reseller, ""trusted""\nsince 2024"\n\n');
  t.ok('list' in r);
  if (!('list' in r)) return;
  t.equal(r.list.name, 'allow_ips');
  t.same(r.list.columns, ['ip_address', 'reason']);
  t.same(r.list.rows, [
    ['203.0.113.9', 'office NAT'],
    ['10.0.0.1', 'reseller, "trusted"\nsince 2024'],
  ]);
  const empty = parseList('lists/block_ips.csv', 'ip_address,reason\n');
  t.same('list' in empty && empty.list.rows, [], 'a header alone is an empty list');
});

t.test('every problem is reported at its line', async (t) => {
  t.same(problems('lists/block_ips.csv', 'ip_address,reason\n192.0.2.1,fraud\n192.0.2.2\n192.0.2.3,a,b\n'), [
    '3: 1 values where the header names 2 columns (ip_address, reason)',
    '4: 3 values where the header names 2 columns (ip_address, reason)',
  ]);
  t.same(problems('lists/block_ips.csv', 'ip_address\n192.0.2.1\n"192.0.2.2\n'), ['3: a quoted value is never closed (a " is missing)']);
  t.same(problems('lists/block_ips.csv', ''), ['1: a list starts with a header line naming its columns, e.g. "ip_address,reason"']);
  t.same(problems('lists/block_ips.csv', 'IP Address,reason\n'), ['1: column "IP Address" must be lower_snake_case (letters, digits, _)']);
  t.same(problems('lists/block_ips.csv', 'ip,ip\n'), ['1: column "ip" is named twice']);
  t.same(problems('lists/Block-IPs.csv', 'ip\n'), ['1: a list\'s file name is its table\'s name: "Block-IPs" must be lower_snake_case (letters, digits, _)']);
  t.same(problems('lists/orders.csv', 'ip\n'), ['1: "orders" is a table fraud-sql keeps itself: name the list otherwise']);
});

t.test('the lists of a rules directory become tables any rule can read; a broken one is named, the others load', async (t) => {
  const dir = t.testdir();
  mkdirSync(`${dir}/lists`);
  writeFileSync(`${dir}/lists/allow_ips.csv`, 'ip_address,reason\n203.0.113.9,office\n');
  writeFileSync(`${dir}/lists/block_users.csv`, 'user_id\nUSER1,extra\n');
  writeFileSync(`${dir}/lists/notes.txt`, 'not a list');
  const { lists, diagnostics } = loadLists(dir);
  t.same(
    lists.map((l) => l.name),
    ['allow_ips'],
  );
  t.same(diagnostics, [{ file: `${dir}/lists/block_users.csv`, line: 2, column: 1, message: '2 values where the header names 1 columns (user_id)' }]);
  const state = await DuckState.open(':memory:', { threads: 1 });
  t.teardown(() => state.close());
  await installLists(state, lists);
  t.same((await state.query("SELECT count(*) FROM allow_ips WHERE ip_address = '203.0.113.9'")).columns, [['1']]);
  await installLists(state, [{ ...lists[0]!, rows: [] }]);
  t.same((await state.query('SELECT count(*) FROM allow_ips')).columns, [['0']], 'loaded again, a list is replaced, not added to');
  t.same(loadLists(`${dir}/none`), { lists: [], diagnostics: [] }, 'no lists folder: no lists');
});

t.test('entries added at run time join their file list: value in the first column, reason where there is one', async (t) => {
  const allow: List = { name: 'allow_ips', file: 'allow_ips.csv', columns: ['ip_address', 'reason'], rows: [['10.0.0.1', 'office']] };
  const bare: List = { name: 'block_users', file: 'block_users.csv', columns: ['user_id', 'note', 'since'], rows: [] };
  const merged = withEntries(
    [allow, bare],
    [
      { list: 'allow_ips', value: '10.0.0.2', reason: 'new office' },
      { list: 'block_users', value: 'U1', reason: 'chargebacks' },
      { list: 'no_such_list', value: 'x', reason: '' },
    ],
  );
  t.same(merged[0]!.rows, [
    ['10.0.0.1', 'office'],
    ['10.0.0.2', 'new office'],
  ]);
  t.same(merged[1]!.rows, [['U1', '', '']], 'a list without a reason column keeps only the value');
  t.equal(merged.length, 2, 'an entry of a list without a file adds no list');
  t.same(allow.rows, [['10.0.0.1', 'office']], 'the file list itself is not changed');
});
