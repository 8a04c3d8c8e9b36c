/** The pure alert logic: the header, which rows alert, stable ids, the JSON. */
import t from 'tap';
import { alertCandidates, alertId, alertPayloads, parseAlertHeader, type AlertSpec } from '../src/alerts/alert.js';
import { retryDelayMs, signature } from '../src/alerts/publisher.js';
import type { ResultSet } from '../src/engine/ports.js';
import { loadRules, ORDER_KEY_FIELDS } from '../src/rules/loader.js';

const KEY = ['source_partition', 'ip_address', 'window_start'];

const rows = (orderCounts: number[], ip = '10.0.0.1'): ResultSet => ({
  rule: 'suspicious_ips',
  target: 'suspicious_ips',
  key: KEY,
  replace: [],
  grows: ['order_count'],
  version: 'abcdef012345',
  alert: null,
  evidence: null,
  names: ['source_partition', 'ip_address', 'window_start', 'window_end', 'order_count', 'total_spent'],
  types: ['INTEGER', 'VARCHAR', 'TIMESTAMP', 'TIMESTAMP', 'BIGINT', 'HUGEINT'],
  columns: [
    orderCounts.map(() => 0),
    orderCounts.map(() => ip),
    orderCounts.map((_, i) => `2026-01-01T00:00:0${i}.000000Z`),
    orderCounts.map(() => '2026-01-01T00:01:00.000000Z'),
    orderCounts.map(String),
    orderCounts.map(() => '90071992547409930'),
  ],
  rowCount: orderCounts.length,
});

t.test('the header: "new", or "new, <column> every <N>"; anything else is refused with what it reads', async (t) => {
  const spec = parseAlertHeader('new', 'high', KEY, ORDER_KEY_FIELDS) as AlertSpec;
  t.same(spec, { severity: 'high', keyColumns: ['ip_address'], evidenceField: 'ip_address', step: null, evidenceMax: 100 });
  t.same((parseAlertHeader('new, order_count every 50', 'high', KEY, ORDER_KEY_FIELDS) as AlertSpec).step, { column: 'order_count', every: 50n });
  t.match(parseAlertHeader('always', 'high', KEY, ORDER_KEY_FIELDS), /alert reads "new" or "new, <column> every <N>"/);
  t.match(parseAlertHeader('new, order_count every 0', 'high', KEY, ORDER_KEY_FIELDS), /every 0/);
  t.match(parseAlertHeader('new', 'high', ['source_partition', 'window_start'], ORDER_KEY_FIELDS), /names nothing but/);
  t.equal((parseAlertHeader('new', 'info', ['source_partition', 'window_start', 'product_name'], ORDER_KEY_FIELDS) as AlertSpec).evidenceField, 'product_name');
});

t.test('ids depend on the detection and the step, never on the batch the row came in', async (t) => {
  const spec = parseAlertHeader('new, order_count every 10', 'high', KEY, ORDER_KEY_FIELDS) as AlertSpec;
  const early = alertCandidates(rows([12]), spec);
  const late = alertCandidates(rows([35]), spec);
  t.same(
    early.map((c) => c.step),
    [0, 1],
    'a row of 12 orders: new, and step 1 (10)',
  );
  t.same(
    late.map((c) => c.step),
    [0, 1, 2, 3],
    'the same burst at 35 orders: every step up to it, so a batch split differently gives the same ids',
  );
  t.same(
    late.slice(0, 2).map((c) => c.id),
    early.map((c) => c.id),
    'the ids already sent are asked for again, unchanged',
  );
  t.not(
    alertId('suspicious_ips', 'abcdef012345', ['10.0.0.1'], null, 0),
    alertId('suspicious_ips', 'abcdef012345', ['10.0.0.2'], null, 0),
    'another key, another id',
  );
  t.not(alertId('r', 'v1', ['k'], null, 0), alertId('r', 'v2', ['k'], null, 0), 'another rule version, another id');
  t.not(alertId('r', 'v', ['a,b', 'c'], null, 0), alertId('r', 'v', ['a', 'b,c'], null, 0), 'key values cannot run into each other (a comma in a value)');
  t.not(alertId('r', 'v', [null], null, 0), alertId('r', 'v', [''], null, 0), 'a null is not an empty string');
  t.not(alertId('r', 'v', ['a'], 'b', 0), alertId('r', 'v', ['a', 'b'], null, 0), 'nor the key the window start');
});

t.test('a rule keyed by two columns: its evidence is the orders of its order field, its id keeps the values apart', async (t) => {
  const spec = parseAlertHeader('new', 'high', ['source_partition', 'user_id', 'ip_address'], ORDER_KEY_FIELDS) as AlertSpec;
  t.same(spec.keyColumns, ['user_id', 'ip_address']);
  const rs: ResultSet = {
    ...rows([5]),
    rule: 'pair',
    names: ['source_partition', 'user_id', 'ip_address'],
    types: ['INTEGER', 'VARCHAR', 'VARCHAR'],
    columns: [
      [0, 0],
      ['U,1', 'U'],
      ['10.0.0.1', '1,10.0.0.1'],
    ],
    rowCount: 2,
  };
  const [a, b] = alertCandidates(rs, spec);
  t.equal(a!.keyValue, b!.keyValue, 'both read "U,1,10.0.0.1" joined');
  t.not(a!.id, b!.id, 'but they are two detections, two ids');
  t.same([a!.evidenceValue, b!.evidenceValue], ['U,1', 'U'], 'evidence by the first order field of the key, its own value');
});

t.test('the JSON: exact integers, no bookkeeping column, hostile values kept as data', async (t) => {
  const spec = parseAlertHeader('new', 'high', KEY, ORDER_KEY_FIELDS) as AlertSpec;
  const hostile = `<script>alert(1)</script>'; DROP TABLE orders; --"\u0000\u001b[31m`;
  const rs = rows([10], hostile);
  const [c] = alertCandidates(rs, spec);
  const text = alertPayloads(rs, spec, '2026-01-01T00:02:00.000Z')(c!, { orderIds: ['A"1'], orderCount: 1 });
  t.notOk(
    [...text].some((ch) => ch.charCodeAt(0) < 0x20),
    'control characters are escaped in the JSON text',
  );
  const alert = JSON.parse(text);
  t.equal(alert.key.value, hostile, 'the value comes back exactly');
  t.equal(alert.row.order_count, 10, 'a small BIGINT is a number');
  t.equal(alert.row.total_spent, '90071992547409930', 'an integer past 2^53 is a decimal string, not a rounded number');
  t.notOk('source_partition' in alert.row, 'the partition is fraud-sql’s own');
  t.same(alert.evidence, { order_ids: ['A"1'], order_count: 1 });
  const carried = { ...rs, names: [...rs.names, 'total_spent_values'], types: [...rs.types, 'VARCHAR'], columns: [...rs.columns, ['["a"]']] };
  const omitting = { ...spec, omit: ['total_spent_values'] };
  t.notOk('total_spent_values' in JSON.parse(alertPayloads(carried, omitting, '')(c!, { orderIds: [], orderCount: 0 })).row, 'nor a burst’s carried values');
});

t.test('each alert of a batch carries its own row: values per row, nulls, exact decimals', async (t) => {
  const spec = parseAlertHeader('new', 'high', KEY, ORDER_KEY_FIELDS) as AlertSpec;
  const base = rows([3, 7, 12]);
  const rs: ResultSet = {
    ...base,
    names: [...base.names, 'avg_price', 'total_decimal'],
    types: [...base.types, 'DOUBLE', 'DECIMAL(38,0)'],
    columns: [base.columns[0]!, ['10.0.0.1', '10.0.0.2', null], ...base.columns.slice(2), [1.5, null, 2.25], ['12345678901234567890', '5', null]],
  };
  const payload = alertPayloads(rs, spec, '2026-01-01T00:02:00.000Z');
  const alerts = alertCandidates(rs, spec).map((c) => JSON.parse(payload(c, { orderIds: [], orderCount: 0 })));
  t.same(
    alerts.map((a) => [a.row.ip_address, a.row.order_count, a.row.avg_price, a.row.total_decimal, a.window_start]),
    [
      ['10.0.0.1', 3, 1.5, '12345678901234567890', '2026-01-01T00:00:00.000000Z'],
      ['10.0.0.2', 7, null, 5, '2026-01-01T00:00:01.000000Z'],
      [null, 12, 2.25, null, '2026-01-01T00:00:02.000000Z'],
    ],
    'row by row, as each row holds it',
  );
});

t.test('a burst rule’s alert leaves out the values it carries for itself', async (t) => {
  const { rules } = loadRules(new URL('../queries', import.meta.url).pathname);
  t.same(rules.find((r) => r.name === 'shared_ip_accounts')!.alert!.omit, ['user_count_values']);
  t.same(rules.find((r) => r.name === 'card_testing')!.alert!.omit, ['method_count_values']);
});

t.test('webhook signature and retry delays', async (t) => {
  // As `printf body | openssl dgst -sha256 -hmac k` computes it.
  t.equal(signature('k', 'body'), 'sha256=c6d811ef3aeb02437cd423f1abe13209041864630bdc4e2c04def5c7b0031a23');
  t.not(signature('k', 'body'), signature('k', 'body '), 'any change to the body changes it');
  t.same(
    [1, 2, 3, 10].map((a) => retryDelayMs(100, a)),
    [100, 200, 400, 51_200],
  );
  t.equal(retryDelayMs(1_000, 20), 60_000, 'at most a minute');
});
