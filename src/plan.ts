/**
 * Which orders meet where (README.md, *Scale out*). A rule keyed by an order field
 * (`-- partition_by: ip_address`) is exact only when every order with the same
 * value of that field reaches the same engine. Kafka guarantees that for the
 * partitions of a topic keyed by the field, so, as Kafka Streams does, fraud-sql
 * re-publishes the decoded input to one internal *repartition topic* per field in
 * use, keyed by it, and runs each field's rules on that topic. Several processes
 * in one consumer group then split the keys between them and stay exact.
 *
 * One pipeline per field: an engine with its own state, the rules partitioned by
 * that field, and the rules that read their results. Rules that need no particular
 * partitioning (per-window sums, per-order checks) run in the first pipeline.
 * The hop is skipped for the field the input is already keyed by (`--input-keyed-by`).
 */
import type { Diagnostic } from './engine/ports.js';
import type { Order } from './types.js';

export interface PlannedRule {
  name: string;
  file: string;
  partitionKey: string | null;
  /** Rules whose results this one reads: it must run in the same pipeline. */
  after: readonly string[];
  /** How far back in event time it reads (0: the orders of the batch alone). */
  stateMicros: number;
}

export interface Pipeline {
  /** The order field its input is partitioned by; null: the input as it comes. */
  key: string | null;
  /** The topic it consumes: the input itself, or a repartition topic. */
  topic: string;
  /** Its consumer group (progress in PostgreSQL is kept per group and topic). */
  group: string;
  /** Whether `topic` is a repartition topic that fraud-sql fills. */
  repartitioned: boolean;
  /** The names of the rules it runs, in dependency order. */
  rules: string[];
  /** Malformed input is recorded here, and only here: one pipeline owns dead letters. */
  deadLetters: boolean;
  /** The per-order lane: rules that look at each order alone (see planPipelines). */
  perOrder: boolean;
}

export interface Plan {
  pipelines: Pipeline[];
  /**
   * The hop: consumes the input topic as `group` and forwards every order to each
   * target keyed by its field; malformed messages go to `deadLetterTopic` (the
   * first pipeline's), unless that pipeline reads the input itself. Null when no
   * pipeline is repartitioned.
   */
  repartition: { group: string; targets: { key: string; topic: string }[]; deadLetterTopic: string | null } | null;
}

/** `<group>.<topic>-by-<field>`, e.g. `fraud-sql.orders-by-ip_address`. */
export function repartitionTopic(group: string, topic: string, key: string): string {
  return `${group}.${topic}-by-${key}`;
}

/** `<group>.per-order`: the group of the per-order lane. */
export function perOrderGroup(group: string): string {
  return `${group}.per-order`;
}

/**
 * Rules that look at each order alone (`-- state: 0s`, not partitioned, reading and
 * read by no other rule) need no window state and no repartitioning: they run in
 * their own lane, an engine reading the input directly, so a high-value order is
 * committed after one small batch of its own, not after the window rules and the
 * hop. The rest form one pipeline per field.
 */
export function planPipelines(
  rules: readonly PlannedRule[],
  opts: {
    topic: string;
    group: string;
    inputKeyedBy: string | null;
    /**
     * Whether there is a per-order lane. By default there is one when some rules are
     * per order and some are not; a running process keeps the shape it started with
     * when its rules are edited (without a lane, per-order rules join the others).
     */
    lane?: boolean;
  },
): { plan: Plan; diagnostics: Diagnostic[] } {
  const read = new Set(rules.flatMap((r) => r.after));
  const isPerOrder = (r: PlannedRule) => r.stateMicros === 0 && r.partitionKey === null && r.after.length === 0 && !read.has(r.name);
  const perOrder = rules.filter(isPerOrder);
  if (!(opts.lane ?? (perOrder.length > 0 && perOrder.length < rules.length))) return planKeyed(rules, opts);
  const { plan, diagnostics } = planKeyed(
    rules.filter((r) => !isPerOrder(r)),
    opts,
  );
  const lane: Pipeline = {
    key: null,
    topic: opts.topic,
    group: perOrderGroup(opts.group),
    repartitioned: false,
    rules: perOrder.map((r) => r.name),
    deadLetters: false,
    perOrder: true,
  };
  return { plan: { ...plan, pipelines: [...plan.pipelines, lane] }, diagnostics };
}

function planKeyed(
  rules: readonly PlannedRule[],
  opts: { topic: string; group: string; inputKeyedBy: string | null },
): { plan: Plan; diagnostics: Diagnostic[] } {
  const diagnostics: Diagnostic[] = [];
  const keyOf = new Map<string, string | null>();
  // Rules come in dependency order: a rule's dependencies are placed before it.
  for (const r of rules) {
    const inherited = new Set(r.after.map((d) => keyOf.get(d) ?? null).filter((k): k is string => k !== null));
    if (r.partitionKey) inherited.add(r.partitionKey);
    if (inherited.size > 1) {
      const parts = r.after.filter((d) => keyOf.get(d)).map((d) => `${d} by ${keyOf.get(d)}`);
      diagnostics.push({
        file: r.file,
        line: 1,
        column: 1,
        message: `its orders cannot all meet in one place: ${[r.partitionKey ? `it is partitioned by ${r.partitionKey}` : null, ...parts.map((p) => `it reads ${p}`)].filter(Boolean).join(', ')}`,
      });
    }
    keyOf.set(r.name, [...inherited][0] ?? null);
  }
  const keys = [...new Set([...keyOf.values()].filter((k): k is string => k !== null))].sort((a, b) =>
    a === opts.inputKeyedBy ? -1 : b === opts.inputKeyedBy ? 1 : a.localeCompare(b),
  );
  if (keys.length === 0) {
    const only: Pipeline = {
      key: null,
      topic: opts.topic,
      group: opts.group,
      repartitioned: false,
      rules: rules.map((r) => r.name),
      deadLetters: true,
      perOrder: false,
    };
    return { plan: { pipelines: [only], repartition: null }, diagnostics };
  }
  const pipelines: Pipeline[] = keys.map((key, i) => {
    const direct = key === opts.inputKeyedBy;
    const topic = direct ? opts.topic : repartitionTopic(opts.group, opts.topic, key);
    return {
      key,
      topic,
      group: direct ? opts.group : topic,
      repartitioned: !direct,
      rules: rules.filter((r) => (keyOf.get(r.name) ?? keys[0]) === key).map((r) => r.name),
      deadLetters: i === 0,
      perOrder: false,
    };
  });
  const hops = pipelines.filter((p) => p.repartitioned);
  const direct = pipelines.some((p) => !p.repartitioned);
  return {
    plan: {
      pipelines,
      repartition:
        hops.length === 0
          ? null
          : {
              // The input's own group when no pipeline reads the input directly, so lag tools see it under the configured name.
              group: direct ? `${opts.group}.repartition` : opts.group,
              targets: hops.map((p) => ({ key: p.key!, topic: p.topic })),
              deadLetterTopic: direct ? null : pipelines[0]!.topic,
            },
    },
    diagnostics,
  };
}

/** The plan's shape, for telling whether a rule edit needs a restart. */
export function planShape(plan: Plan): string {
  return plan.pipelines.map((p) => `${p.key ?? (p.perOrder ? 'per-order' : '*')}@${p.topic}`).join(',');
}

const ORDER_PROPERTY: Readonly<Record<string, keyof Order>> = {
  order_id: 'orderId',
  user_id: 'userId',
  product_id: 'productId',
  product_name: 'productName',
  ip_address: 'ipAddress',
  payment_method: 'paymentMethod',
};

/** The order's value of a field a pipeline is keyed by; an absent optional field is the empty key. */
export function orderFieldValue(order: Order, field: string): string {
  const v = order[ORDER_PROPERTY[field]!];
  return v === null ? '' : String(v);
}

/**
 * Checks `--input-keyed-by` on the first orders read: each message's key should be
 * the order's value of the field, and each value should come through one partition.
 * Either failing means the rules partitioned by the field would see a key's orders
 * split: `verdict` says so once enough orders were seen.
 */
export class KeyingSample {
  private seen = 0;
  private wrongKey = 0;
  private readonly partitionOf = new Map<string, number>();
  private readonly split = new Set<string>();

  constructor(
    private readonly field: string,
    private readonly size = 1_000,
  ) {}

  /** Whether the sample is complete (further messages need not be shown). */
  get done(): boolean {
    return this.seen >= this.size;
  }

  /** One message: its key and partition, and the field's value in its order (null: not a valid order). */
  add(key: string | null, partition: number, value: string | null): void {
    if (this.done || value === null) return;
    this.seen++;
    if (key !== value) this.wrongKey++;
    const p = this.partitionOf.get(value);
    if (p === undefined) this.partitionOf.set(value, partition);
    else if (p !== partition) this.split.add(value);
  }

  /** A warning when the sample contradicts the setting, else null. */
  verdict(): string | null {
    if (this.wrongKey === 0 && this.split.size === 0) return null;
    const what = [
      this.wrongKey > 0 ? `${this.wrongKey} of the first ${this.seen} orders have a message key other than their ${this.field}` : null,
      this.split.size > 0 ? `${this.split.size} ${this.field} values came in on more than one partition` : null,
    ].filter(Boolean);
    return `--input-keyed-by ${this.field}: ${what.join(', and ')}: the input is not partitioned by ${this.field}, so the rules partitioned by it may miss or split detections. Leave --input-keyed-by out to have fraud-sql repartition the input`;
  }
}
