import t from 'tap';
import { readFileSync } from 'node:fs';
import { parseRule, loadRules } from '../src/rules/loader.js';
import { evalDuration, originalColumn, substitute, parseParamValue } from '../src/rules/params.js';

const header = `-- name: r
-- target: high_value_orders
-- key: order_id
-- state: 0s
-- param threshold = 500000
-- param window = 30s
`;

t.test('parameters become literals; comments keep $names', async (t) => {
  const { rule, diagnostics } = parseRule('q/r.sql', header + 'SELECT $threshold, $window -- $window\n');
  t.same(diagnostics, []);
  t.match(rule!.sql, /SELECT 500000, INTERVAL '30 seconds' -- \$window/);
});

t.test('configuration overrides a parameter; a wrong kind is reported', async (t) => {
  const ok = parseRule('q/r.sql', header + 'SELECT $threshold\n', new Map([['r.threshold', '700000']]));
  t.match(ok.rule!.sql, /SELECT 700000/);
  const bad = parseRule('q/r.sql', header + 'SELECT $threshold\n', new Map([['r.threshold', '5s']]));
  t.match(bad.diagnostics[0]!.message, /expected a integer, got a duration/);
});

t.test('diagnostics carry file, line and column', async (t) => {
  const { diagnostics } = parseRule('q/r.sql', header + 'SELECT\n  $nope\n');
  t.same(diagnostics, [{ file: 'q/r.sql', line: 8, column: 3, message: 'unknown parameter $nope (declare it with "-- param nope = ...")' }]);
  t.match(parseRule('q/x.sql', 'SELECT 1\n').diagnostics[0]!.message, /no header/);
  t.match(parseRule('q/x.sql', header).diagnostics[0]!.message, /no SELECT/);
  t.match(
    parseRule('q/x.sql', '-- key: a\n-- state: 0s\nSELECT 1\n')
      .diagnostics.map((d) => d.message)
      .join('\n'),
    /missing "-- target/,
  );
});

t.test('duration expressions', async (t) => {
  const p = new Map([
    ['w', parseParamValue('30s') as never],
    ['b', parseParamValue('60s') as never],
  ]);
  t.equal(evalDuration('$w + 2 * $b', p), 150_000_000);
  t.equal(evalDuration('0s', p), 0);
  t.match(evalDuration('$w +', p), /unexpected end/);
  t.match(evalDuration('$x', p), /unknown parameter/);
});

t.test('columns in substituted text map back to the file', async (t) => {
  const s = substitute('SELECT $w, foo', new Map([['w', parseParamValue('30s') as never]]));
  const fooAt = s.text.indexOf('foo') + 1;
  t.equal(originalColumn(1, fooAt, s.substitutions), 'SELECT $w, '.length + 1);
});

t.test('the built-in rules load, ordered so realtime_stats runs after suspicious_ips', async (t) => {
  const { rules, diagnostics } = loadRules(new URL('../queries', import.meta.url).pathname);
  t.same(diagnostics, []);
  const names = rules.map((r) => r.name);
  t.ok(names.indexOf('suspicious_ips') < names.indexOf('realtime_stats'));
});

t.test('a missing directory is one clear diagnostic', async (t) => {
  const { diagnostics } = loadRules('/nonexistent/queries');
  t.match(diagnostics[0]!.message, /cannot read the rules directory/);
});

t.test('parameter overrides reach the SQL and the version; a bad one blocks the rules that read it', async (t) => {
  const dir = new URL('../queries', import.meta.url).pathname;
  const base = loadRules(dir).rules.find((r) => r.name === 'suspicious_ips')!;
  const tuned = loadRules(dir, new Map([['suspicious_ips.min_orders', '12']])).rules.find((r) => r.name === 'suspicious_ips')!;
  t.match(tuned.sql, /count\(\*\) >= 12/);
  t.not(tuned.version, base.version, 'another parameter value is another rule version');
  const bad = loadRules(dir, new Map([['suspicious_ips.nope', '3']]));
  t.same(bad.rules.map((r) => r.name).sort(), ['blocked_activity', 'card_testing', 'high_value_orders', 'popular_products', 'shared_ip_accounts']);
  t.match(
    bad.diagnostics.map((d) => d.message),
    [/has no parameter "nope"/, /not loaded: it reads the results of "suspicious_ips", whose rule is invalid/],
  );
});

t.test('a label names generator scenarios and a condition at the actual parameters', async (t) => {
  const ips = `-- target: suspicious_ips
-- key: source_partition, ip_address, window_start
-- state: $window
-- param min_orders = 10
-- param window = 60s
-- label: bot, burst where orders >= $min_orders within $window
SELECT 1
`;
  t.same(parseRule('q/ips.sql', ips).rule!.label, {
    scenarios: ['bot', 'burst'],
    condition: { kind: 'orders_within', min: 10, windowMicros: 60_000_000 },
    keyFields: ['ip_address'],
    text: 'bot, burst where orders >= 10 within 60s',
  });
  const overridden = parseRule('q/ips.sql', ips, new Map([['ips.min_orders', '12']])).rule!.label!;
  t.same(overridden.condition, { kind: 'orders_within', min: 12, windowMicros: 60_000_000 }, 'an override reaches the label');
  t.same(parseRule('q/r.sql', header + '-- label: * where price * quantity >= $threshold\nSELECT 1\n').rule!.label!.condition, {
    kind: 'total_at_least',
    min: 500000n,
  });
  t.same(parseRule('q/r.sql', header + '-- label: card_testing\nSELECT 1\n').rule!.label, {
    scenarios: ['card_testing'],
    condition: null,
    keyFields: ['order_id'],
    text: 'card_testing',
  });
  const cards = parseRule(
    'q/card_testing.sql',
    readFileSync(new URL('../queries/card_testing.sql', import.meta.url), 'utf8'),
    new Map([['card_testing.min_methods', '4']]),
  );
  t.same(
    cards.rule!.label,
    {
      scenarios: ['card_testing'],
      condition: { kind: 'distinct_within', field: 'payment_method', min: 4, windowMicros: 600_000_000 },
      keyFields: ['user_id'],
      text: 'card_testing where distinct payment_method >= 4 within 600s',
    },
    'distinct values of a field within a window, at the overridden parameter',
  );
  t.match(parseRule('q/r.sql', header + '-- label: card_testing where distinct colour >= 3 within $window\nSELECT 1\n').diagnostics, [
    { line: 7, column: 39, message: /label: "colour" is not an order field/ },
  ]);
  t.equal(parseRule('q/r.sql', header + 'SELECT 1\n').rule!.label, null, 'no label, no score');
});

t.test('a wrong label is reported at its file, line and column', async (t) => {
  const problems = (label: string, key = 'order_id') =>
    parseRule('q/r.sql', header.replace('-- key: order_id', `-- key: ${key}`) + `-- label: ${label}\nSELECT 1\n`).diagnostics.map(
      (d) => `${d.line}:${d.column}: ${d.message}`,
    );
  t.same(problems('bot, bots'), [
    '7:16: label "bots" is not a generator scenario (one of: normal, bot, burst, near_miss, high_value, card_testing, shared_ip, blocked, allowed, late, malformed)',
  ]);
  t.same(problems('*, bot'), ['7:11: label "*" (every order) cannot be combined with scenario names']);
  t.same(problems(''), ['7:1: label names no scenario (e.g. "-- label: bot, burst", or "*" for every order)']);
  t.same(problems('bot where orders >= $window within $window'), ['7:31: label: $window is a duration, not a integer']);
  t.same(
    problems('bot where orders >= $threshold within $threshold'),
    ['7:49: label: $threshold is a integer, not a duration'],
    'the second operand, not the first',
  );
  t.same(problems('bot where orders >= 10 within $nope'), ['7:41: label: unknown parameter $nope']);
  t.same(problems('bot where count(*) > 3'), [
    '7:21: a label condition reads "where orders >= N within D", "where distinct <field> >= N within D" or "where price * quantity >= N" (N, D: literals or $params)',
  ]);
  t.same(problems('bot', 'source_partition, stat_time'), [
    '7:11: label: the key (source_partition, stat_time) has no column that names an order field (order_id, user_id, product_id, product_name, ip_address, payment_method), so a row cannot be traced to orders',
  ]);
});

t.test('evidence: detections keep 100 orders unless the header says; mistakes are reported at their line', async (t) => {
  const burst = (extra: string) =>
    parseRule('q/b.sql', `-- name: b\n-- target: b\n-- burst: ip_address when count(*) >= 3 within 60s\n${extra}SELECT count(*) AS order_count FROM burst\n`);
  t.same(burst('-- alert: new\n').rule!.evidence, { keyColumns: ['ip_address'], field: 'ip_address', max: 100 }, 'an alerting rule keeps 100');
  const five = burst('-- alert: new\n-- evidence: 5\n').rule!;
  t.same([five.evidence!.max, five.alert!.evidenceMax], [5, 5], 'the header sets how many, for the table and the alert');
  t.equal(burst('-- alert: new\n-- evidence: off\n').rule!.evidence, null, 'off keeps none');
  t.equal(burst('').rule!.evidence, null, 'a rule that does not alert keeps none');
  t.equal(burst('-- evidence: 20\n').rule!.evidence!.max, 20, 'unless it asks');
  t.same(
    burst('-- evidence: lots\n').diagnostics.map((d) => [d.line, d.message]),
    [[4, 'evidence reads a number of orders from 1 to 10000 (e.g. "100"), or "off"; not "lots"']],
  );
  t.equal(parseRule('q/r.sql', header + '-- alert: new\nSELECT 1 AS order_id\n').rule!.evidence, null, 'a rule keyed by the order is its own evidence');
  const windows = parseRule('q/w.sql', '-- name: w\n-- target: w\n-- key: window_start\n-- state: 30s\n-- evidence: 10\nSELECT 1\n');
  t.match(
    windows.diagnostics.map((d) => [d.line, d.message]),
    [[5, /^evidence is kept for burst rules/]],
  );
});
