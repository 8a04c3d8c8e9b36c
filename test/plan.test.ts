/** Which orders meet where (src/plan.ts): pure, no Kafka. */
import t from 'tap';
import { KeyingSample, planPipelines, type PlannedRule } from '../src/plan.js';

const rule = (name: string, partitionKey: string | null, after: string[] = [], stateMicros = 60_000_000): PlannedRule => ({
  name,
  file: `${name}.sql`,
  partitionKey,
  after,
  stateMicros,
});
const BUILT_IN = [
  rule('high_value_orders', null, [], 0),
  rule('popular_products', null),
  rule('suspicious_ips', 'ip_address'),
  rule('realtime_stats', null, ['suspicious_ips']),
  rule('card_testing', 'user_id'),
  rule('shared_ip_accounts', 'ip_address'),
];
const opts = { topic: 'orders', group: 'fraud-sql', inputKeyedBy: null };

t.test('one repartition topic per field in use; rules that need no key and readers follow', async (t) => {
  const { plan, diagnostics } = planPipelines(BUILT_IN, opts);
  t.same(diagnostics, []);
  t.same(
    plan.pipelines.map((p) => [p.key, p.topic, p.group, p.rules, p.deadLetters]),
    [
      [
        'ip_address',
        'fraud-sql.orders-by-ip_address',
        'fraud-sql.orders-by-ip_address',
        ['popular_products', 'suspicious_ips', 'realtime_stats', 'shared_ip_accounts'],
        true,
      ],
      ['user_id', 'fraud-sql.orders-by-user_id', 'fraud-sql.orders-by-user_id', ['card_testing'], false],
      [null, 'orders', 'fraud-sql.per-order', ['high_value_orders'], false],
    ],
  );
  t.same(plan.repartition, {
    group: 'fraud-sql',
    targets: [
      { key: 'ip_address', topic: 'fraud-sql.orders-by-ip_address' },
      { key: 'user_id', topic: 'fraud-sql.orders-by-user_id' },
    ],
    deadLetterTopic: 'fraud-sql.orders-by-ip_address',
  });
});

t.test('input keyed by a field in use: its rules read the input as the group; the hop gets its own group', async (t) => {
  const { plan } = planPipelines(BUILT_IN, { ...opts, inputKeyedBy: 'ip_address' });
  t.same(
    plan.pipelines.map((p) => [p.key, p.topic, p.group, p.repartitioned, p.deadLetters]),
    [
      ['ip_address', 'orders', 'fraud-sql', false, true],
      ['user_id', 'fraud-sql.orders-by-user_id', 'fraud-sql.orders-by-user_id', true, false],
      [null, 'orders', 'fraud-sql.per-order', false, false],
    ],
  );
  t.same(plan.repartition, { group: 'fraud-sql.repartition', targets: [{ key: 'user_id', topic: 'fraud-sql.orders-by-user_id' }], deadLetterTopic: null });
  const only = planPipelines([rule('suspicious_ips', 'ip_address')], { ...opts, inputKeyedBy: 'ip_address' }).plan;
  t.equal(only.repartition, null, 'nothing to repartition');
});

t.test('no keyed rule: the input as it is, no hop', async (t) => {
  const { plan } = planPipelines([rule('popular_products', null)], opts);
  t.same(
    plan.pipelines.map((p) => [p.key, p.topic, p.rules]),
    [[null, 'orders', ['popular_products']]],
  );
  t.equal(plan.repartition, null);
});

t.test('rules that look at each order alone run in their own lane on the input, unless they are all there is or another rule reads them', async (t) => {
  const both = planPipelines([rule('high_value_orders', null, [], 0), rule('popular_products', null)], opts).plan;
  t.same(
    both.pipelines.map((p) => [p.topic, p.group, p.rules, p.deadLetters, p.perOrder]),
    [
      ['orders', 'fraud-sql', ['popular_products'], true, false],
      ['orders', 'fraud-sql.per-order', ['high_value_orders'], false, true],
    ],
    'the window rules keep the group and the dead letters',
  );
  t.same(
    planPipelines([rule('high_value_orders', null, [], 0)], opts).plan.pipelines.map((p) => [p.group, p.rules]),
    [['fraud-sql', ['high_value_orders']]],
  );
  const read = planPipelines([rule('big', null, [], 0), rule('reader', null, ['big'])], opts).plan;
  t.same(
    read.pipelines.map((p) => p.rules),
    [['big', 'reader']],
    'a rule read by another stays with it',
  );
  const keyed = planPipelines([rule('per_ip', 'ip_address', [], 0), rule('popular_products', null)], opts).plan;
  t.notOk(
    keyed.pipelines.some((p) => p.perOrder),
    'a partitioned rule is not per order, whatever its state',
  );
});

t.test('a rule whose orders cannot meet in one place is refused, naming why', async (t) => {
  const { diagnostics } = planPipelines([rule('by_ip', 'ip_address'), rule('by_user', 'user_id'), rule('both', null, ['by_ip', 'by_user'])], opts);
  t.match(diagnostics, [{ file: 'both.sql', message: 'its orders cannot all meet in one place: it reads by_ip by ip_address, it reads by_user by user_id' }]);
  const mixed = planPipelines([rule('by_ip', 'ip_address'), rule('by_user', 'user_id', ['by_ip'])], opts).diagnostics;
  t.match(mixed, [{ file: 'by_user.sql', message: /it is partitioned by user_id, it reads by_ip by ip_address/ }]);
});

t.test('--input-keyed-by is checked on a sample of the input', async (t) => {
  const keyed = new KeyingSample('ip_address', 4);
  for (const [ip, p] of [
    ['10.0.0.1', 0],
    ['10.0.0.2', 1],
    ['10.0.0.1', 0],
    ['10.0.0.3', 2],
  ] as const)
    keyed.add(ip, p, ip);
  t.ok(keyed.done);
  t.equal(keyed.verdict(), null, 'keyed by IP: no warning');

  const byOrder = new KeyingSample('ip_address', 4);
  byOrder.add('ORD1', 0, '10.0.0.1');
  byOrder.add('ORD2', 1, '10.0.0.1');
  byOrder.add(null, 2, null); // not an order: not counted
  byOrder.add('ORD3', 2, '10.0.0.2');
  t.notOk(byOrder.done);
  byOrder.add('ORD4', 0, '10.0.0.3');
  t.match(
    byOrder.verdict(),
    /^--input-keyed-by ip_address: 4 of the first 4 orders have a message key other than their ip_address, and 1 ip_address values came in on more than one partition/,
  );
});
