/** `fraud-sql backtest`: recorded orders through the rules, in memory, scored per rule against the labels. */
import t from 'tap';
import { execFile } from 'node:child_process';
import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { backtest } from '../src/commands/backtest.js';
import { loadConfig } from '../src/config.js';
import { csvField } from '../src/csv.js';
import { expectedKeys } from '../src/generator/truth.js';

const exec = promisify(execFile);
const CLI = new URL('../dist/cli.js', import.meta.url).pathname;
const QUERIES = new URL('../queries', import.meta.url).pathname;

const T0 = Date.parse('2025-12-30T12:00:00Z');
const order = (n: number, ip: string, label: string, seconds: number, extra: Record<string, unknown> = {}) => ({
  order_id: `O${n}`,
  timestamp: new Date(T0 + seconds * 1000).toISOString(),
  user_id: 'USER0001',
  product_id: 'P008',
  product_name: '마우스',
  price: 10_000,
  quantity: 1,
  ip_address: ip,
  payment_method: 'card',
  label,
  ...extra,
});

/**
 * 11 bot orders from one IP and 12 burst orders from another, each a second apart;
 * 10 near-miss orders from a third (a false positive at 10, not at 12); two orders
 * of 500,000 KRW or more, one of them late; one line that is not an order.
 */
function recording(dir: string): string {
  const orders = [
    ...Array.from({ length: 11 }, (_, i) => order(i, '10.0.0.1', 'bot', i)),
    ...Array.from({ length: 12 }, (_, i) => order(100 + i, '10.0.0.2', 'burst', i)),
    ...Array.from({ length: 10 }, (_, i) => order(200 + i, '10.0.0.3', 'near_miss', i)),
    order(300, '10.0.0.4', 'normal', 20, { price: 250_000, quantity: 2 }),
    order(301, '10.0.0.5', 'high_value', 21, { price: 499_999 }),
  ];
  // In event-time order, so that only the order meant to be late is.
  const lines = orders.sort((a, b) => a.timestamp.localeCompare(b.timestamp)).map((o) => JSON.stringify(o));
  lines.push('{"order_id": "broken');
  lines.push(JSON.stringify(order(302, '10.0.0.6', 'late', -60, { price: 1_500_000 })));
  writeFileSync(`${dir}/orders.jsonl`, lines.join('\n') + '\n');
  return `${dir}/orders.jsonl`;
}

t.test('each rule is scored against its label at its actual parameters', async (t) => {
  const input = recording(t.testdir());
  // Small batches, so that the last order arrives behind the watermark and is late.
  const config = (params: string[] = []) => loadConfig({ queriesDir: QUERIES, batchMaxSize: 10, params }, {});

  const at10 = await backtest(config(), { input });
  t.match(at10.lines.join('\n'), /late_events\s+1\n/, 'the 1,500,000 KRW order is late, so no rule sees it');
  t.same(at10.scores.suspicious_ips, {
    label: 'bot, burst where orders >= 10 within 60s',
    keyFields: ['ip_address'],
    expected: 2,
    found: 3,
    hits: 2,
    labelled: 2,
    recall: 1,
    precision: 2 / 3,
  });
  t.same(
    at10.scores.high_value_orders,
    {
      label: '* where price * quantity >= 500000',
      keyFields: ['order_id'],
      expected: 1,
      found: 1,
      hits: 1,
      labelled: 35,
      recall: 1,
      precision: 1,
    },
    'every accepted order is labelled for "*"; only the 250,000 x 2 one meets the threshold',
  );
  t.notOk('popular_products' in at10.scores, 'a rule without a label gets row counts only');
  t.match(at10.lines.join('\n'), /popular_products\s+no label: rows only/);
  t.match(at10.lines.join('\n'), /suspicious_ips\s+recall 100\.0% \(2 of 2 expected\)\s+precision 66\.7% \(2 of 3 found\)/);

  // At 12 the bot IP's 11 orders are no longer enough, for the rule and for the truth alike.
  const at12 = await backtest(config(['suspicious_ips.min_orders=12']), { input });
  t.same(at12.scores.suspicious_ips, {
    label: 'bot, burst where orders >= 12 within 60s',
    keyFields: ['ip_address'],
    expected: 1,
    found: 1,
    hits: 1,
    labelled: 2,
    recall: 1,
    precision: 1,
  });
  const strictHv = await backtest(config(['high_value_orders.threshold=600000']), { input });
  t.same([strictHv.scores.high_value_orders!.expected, strictHv.scores.high_value_orders!.found], [0, 0]);
  // Nothing to find and nothing found is no figure, not a perfect one.
  t.same([strictHv.scores.high_value_orders!.recall, strictHv.scores.high_value_orders!.precision], [null, null]);
  t.match(strictHv.lines.join('\n'), /high_value_orders\s+recall n\/a \(0 of 0 expected\)\s+precision n\/a \(0 of 0 found\)/);
});

t.test('an unlabelled recording gets row counts only', async (t) => {
  const dir = t.testdir({ 'orders.jsonl': JSON.stringify({ ...order(1, '10.0.0.1', '', 0), label: undefined }) + '\n' });
  const r = await backtest(loadConfig({ queriesDir: QUERIES }, {}), { input: `${dir}/orders.jsonl` });
  t.same(r.scores, {});
  t.notMatch(r.lines.join('\n'), /against the labels/);
});

t.test('the oracle works for any key that names an order field', async (t) => {
  const orders = [
    { fields: { user_id: 'U1', price: 1, quantity: 1 }, eventUs: 0, label: 'card_testing' },
    { fields: { user_id: 'U1', price: 1, quantity: 1 }, eventUs: 1, label: 'normal' },
    { fields: { user_id: 'U2', price: 1, quantity: 1 }, eventUs: 0, label: 'normal' },
    { fields: { user_id: 'U3', price: 1, quantity: 1 }, eventUs: 0, label: 'card_testing' },
  ];
  const any = expectedKeys(orders, { scenarios: ['card_testing'], condition: null, keyFields: ['user_id'] });
  t.same([...any.expected].sort(), ['user_id=U1', 'user_id=U3']);
  const two = expectedKeys(orders, { scenarios: ['card_testing'], condition: { kind: 'orders_within', min: 2, windowMicros: 10 }, keyFields: ['user_id'] });
  t.same([...two.expected], ['user_id=U1'], "U1's two orders, whatever their labels, are within the window");
  t.same([...two.labelled].sort(), ['user_id=U1', 'user_id=U3']);
});

t.test('a distinct-values condition counts the values of the key within the window, half-open', async (t) => {
  const at = (user: string, eventUs: number, payment_method: string | null, label = 'card_testing') => ({
    fields: { user_id: user, payment_method },
    eventUs,
    label,
  });
  const orders = [
    // U1: three methods, the third exactly one window after the first: never three within it.
    at('U1', 0, 'card'),
    at('U1', 5, 'kakaopay'),
    at('U1', 10, 'naverpay'),
    // U2: three methods within the window, one of them from an order with another label.
    at('U2', 0, 'card'),
    at('U2', 5, 'kakaopay', 'normal'),
    at('U2', 9, 'naverpay'),
    // U3: an order without a method is no method.
    at('U3', 0, 'card'),
    at('U3', 1, null),
    at('U3', 2, 'kakaopay'),
  ];
  const r = expectedKeys(orders, {
    scenarios: ['card_testing'],
    condition: { kind: 'distinct_within', field: 'payment_method', min: 3, windowMicros: 10 },
    keyFields: ['user_id'],
  });
  t.same([...r.expected], ['user_id=U2']);
  t.same([...r.labelled].sort(), ['user_id=U1', 'user_id=U2', 'user_id=U3']);
});

t.test('--output writes every rule as CSV that a spreadsheet shows as text', async (t) => {
  const dir = t.testdir();
  const hostile = '=HYPERLINK("http://evil.example","click"),\n"x"';
  writeFileSync(
    `${dir}/orders.jsonl`,
    [
      order(1, '10.0.0.1', 'normal', 0, { order_id: '@SUM(A1)', product_name: hostile, price: 600_000 }),
      order(2, '10.0.0.2', 'normal', 1, { order_id: '-2+3', product_name: 'plain', price: 700_000 }),
    ]
      .map((o) => JSON.stringify(o))
      .join('\n'),
  );
  await backtest(loadConfig({ queriesDir: QUERIES }, {}), { input: `${dir}/orders.jsonl`, output: `${dir}/out` });
  t.equal(
    readFileSync(`${dir}/out/high_value_orders.csv`, 'utf8'),
    'source_partition,order_time,order_id,product_name,quantity,total_price,ip_address\r\n' +
      `0,2025-12-30T12:00:01.000000Z,"'-2+3","plain",1,700000,"10.0.0.2"\r\n` +
      `0,2025-12-30T12:00:00.000000Z,"'@SUM(A1)","'=HYPERLINK(""http://evil.example"",""click""),\n""x""",1,600000,"10.0.0.1"\r\n`,
  );
  for (const rule of ['popular_products', 'suspicious_ips', 'realtime_stats']) {
    t.match(readFileSync(`${dir}/out/${rule}.csv`, 'utf8'), /^source_partition,/, `${rule}.csv has its header`);
  }
  t.equal(
    readFileSync(`${dir}/out/suspicious_ips.csv`, 'utf8'),
    'source_partition,ip_address,window_start,window_end,order_count,total_spent\r\n',
    'no burst: the header alone',
  );
  t.equal(
    readFileSync(`${dir}/out/shared_ip_accounts.csv`, 'utf8'),
    'source_partition,ip_address,window_start,window_end,order_count,user_count\r\n',
    'the output columns, not the distinct user ids fraud-sql keeps for itself (user_count_values)',
  );
  t.equal(csvField(-5, false), '-5', 'a negative number stays a number');
  t.equal(csvField('+82 10', true), `"'+82 10"`);
  t.equal(csvField('\tx', true), `"'\tx"`);
  t.equal(csvField(null, true), '');
});

/** 20,000 generated orders from 2025-12-30 12:00 UTC, as fast as they come. */
const generate = (seed: number, mix: string, output: string) =>
  exec('node', [CLI, 'generate', '--seed', String(seed), '--count', '20000', '--fast', '--start', '2025-12-30T12:00:00Z', '--mix', mix, '--output', output]);

t.test('the CLI: generated traffic scored per rule, and --compare shows what a change adds and removes', async (t) => {
  const dir = t.testdir();
  await generate(5, 'normal=84,bot=10,burst=2,near_miss=2,high_value=1,late=1', `${dir}/orders.jsonl`);
  const { stdout } = await exec('node', [CLI, 'backtest', '--input', `${dir}/orders.jsonl`, '--output', `${dir}/csv`]);
  t.match(stdout, /20,000 orders from/);
  t.match(stdout, /suspicious_ips\s+\d+ rows in suspicious_ips/);
  t.match(stdout, /late_events\s+[1-9]\d*/, 'late orders are recorded, not applied');
  t.match(stdout, /suspicious_ips\s+recall 100\.0% \((\d+) of \1 expected\)\s+precision 100\.0%/);
  t.match(stdout, /high_value_orders\s+recall 100\.0% \((\d+) of \1 expected\)\s+precision 100\.0%/);
  t.match(stdout, /rows of every rule written to .*\/csv\/<rule>\.csv/);
  const rows = readFileSync(`${dir}/csv/suspicious_ips.csv`, 'utf8').trimEnd().split('\r\n').length - 1;
  t.match(stdout, new RegExp(`suspicious_ips\\s+${rows} rows`), 'the CSV holds every row');

  // A stricter rule (13 orders instead of 10) against the same recording.
  cpSync(QUERIES, `${dir}/strict`, { recursive: true });
  const f = `${dir}/strict/suspicious_ips.sql`;
  writeFileSync(f, readFileSync(f, 'utf8').replace('-- param min_orders = 10', '-- param min_orders = 13'));
  const cmp = await exec('node', [CLI, 'backtest', '--input', `${dir}/orders.jsonl`, '--compare', `${dir}/strict`]);
  const line = /suspicious_ips: (\d+) rows only with .*strict, (\d+) rows only with .*queries, (\d+) rows with other values/.exec(cmp.stdout);
  t.ok(line, 'a comparison line for suspicious_ips');
  t.equal(Number(line![1]), 0, 'a stricter rule adds no burst');
  t.ok(Number(line![2]) > 0, `it drops ${line![2]} bursts of 10-12 orders`);
  t.match(cmp.stdout, /high_value_orders: 0 rows only with .*, 0 rows only with .*, 0 rows with other values/, 'other rules are unaffected');
});

t.test('--compare with a rule added on one side and removed on the other lists each, and compares the rest', async (t) => {
  const dir = t.testdir();
  const input = recording(dir);
  cpSync(QUERIES, `${dir}/other`, { recursive: true });
  rmSync(`${dir}/other/high_value_orders.sql`);
  writeFileSync(
    `${dir}/other/big_baskets.sql`,
    '-- name: big_baskets\n-- description: three or more of one product in one order\n-- target: big_baskets\n-- key: order_id\n-- state: 0s\nSELECT kafka_partition AS source_partition, order_id, quantity FROM batch_orders WHERE quantity >= 3\n',
  );
  const r = await backtest(loadConfig({ queriesDir: QUERIES, batchMaxSize: 10 }, {}), { input, compare: `${dir}/other` });
  const text = r.lines.join('\n');
  t.ok(text.includes(`high_value_orders: written only by the rules of ${QUERIES} (1 row)`), 'the removed rule');
  t.match(text, /big_baskets: written only by the rules of .*other \(0 rows\)/, 'the added rule');
  t.match(text, /suspicious_ips: 0 rows only with .*other, 0 rows only with .*, 0 rows with other values/, 'the rules both have');
});

t.test('lists in a backtest: the blocked scenario is found, the allow-listed office never', async (t) => {
  const dir = t.testdir();
  const input = `${dir}/orders.jsonl`;
  await generate(8, 'normal=85,bot=10,blocked=1,allowed=4', input);
  const { stdout } = await exec('node', [CLI, 'backtest', '--input', input]);
  t.match(stdout, /blocked_activity\s+recall 100\.0% \(([1-9]\d*) of \1 expected\)\s+precision 100\.0%/, 'every blocked order, nothing else');
  t.match(stdout, /suspicious_ips\s+recall 100\.0% \(\d+ of \d+ expected\)\s+precision 100\.0%/, 'the office NAT is no bot');
  t.match(
    stdout,
    /shared_ip_accounts\s+recall (?:[\d.]+%|n\/a) \(\d+ of \d+ expected\)\s+precision (?:100\.0% \(\d+|n\/a \(0) of \d+ found\)/,
    'nor a shared IP',
  );
  // The same orders without the allow list's entry: the office is reported.
  cpSync(QUERIES, `${dir}/q`, { recursive: true });
  writeFileSync(`${dir}/q/lists/allow_ips.csv`, 'ip_address,reason\n');
  const without = await exec('node', [CLI, 'backtest', '--input', input, '--queries-dir', `${dir}/q`]);
  t.match(
    without.stdout,
    /suspicious_ips\s+recall 100\.0% \(\d+ of \d+ expected\)\s+precision (?!100\.0%)[\d.]+%/,
    'without its entry the office counts as a bot',
  );
});

t.test('a missing input file is one clear error', async (t) => {
  try {
    await exec('node', [CLI, 'backtest', '--input', '/nonexistent/orders.jsonl']);
    t.fail('should fail');
  } catch (err) {
    const e = err as { code: number; stderr: string };
    t.equal(e.code, 1);
    t.match(e.stderr, /^fraud-sql: cannot read \/nonexistent\/orders.jsonl: ENOENT/);
    t.notMatch(e.stderr, /\n\s+at /, 'no stack trace');
  }
});
