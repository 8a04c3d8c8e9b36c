import t from 'tap';
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
  t.match(parseRule('q/x.sql', '-- key: a\n-- state: 0s\nSELECT 1\n').diagnostics.map((d) => d.message).join('\n'), /missing "-- target/);
});

t.test('duration expressions', async (t) => {
  const p = new Map([['w', parseParamValue('30s') as never], ['b', parseParamValue('60s') as never]]);
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
  t.match(tuned.sql, /lag\(r\.event_time, 12 - 1\)/);
  t.not(tuned.version, base.version, 'another parameter value is another rule version');
  const bad = loadRules(dir, new Map([['suspicious_ips.nope', '3']]));
  t.same(bad.rules.map((r) => r.name).sort(), ['high_value_orders', 'popular_products']);
  t.match(bad.diagnostics.map((d) => d.message), [/has no parameter "nope"/, /not loaded: it reads the results of "suspicious_ips", whose rule is invalid/]);
});
