/**
 * The PostgreSQL schema: migrations, applied in order by `fraud-sql migrate` and on
 * start, and the catalog of result tables that rules may target.
 *
 * The four tables of the original design keep their names and columns (design.md
 * section 2). Windowed results are written per Kafka partition, so several
 * processes can share the work (design.md section 5): popular_products and
 * realtime_stats are views that sum the per-partition rows of *_partial tables.
 */

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'result and operational tables',
    sql: `
CREATE TABLE popular_products_partial (
  id               bigserial PRIMARY KEY,
  source_partition integer     NOT NULL,
  window_start     timestamptz NOT NULL,
  window_end       timestamptz NOT NULL,
  product_name     text        NOT NULL,
  order_count      bigint      NOT NULL,
  total_sales      bigint      NOT NULL,
  is_final         boolean     NOT NULL DEFAULT false,
  rule_version     text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  UNIQUE (source_partition, window_start, product_name)
);
CREATE INDEX ON popular_products_partial (window_start);
CREATE INDEX ON popular_products_partial (created_at);
CREATE INDEX ON popular_products_partial (source_partition, window_end) WHERE NOT is_final;

CREATE VIEW popular_products AS
SELECT min(id) AS id, window_start, window_end, product_name,
       sum(order_count)::bigint AS order_count, sum(total_sales)::bigint AS total_sales,
       bool_and(is_final) AS is_final, min(created_at) AS created_at, max(updated_at) AS updated_at
FROM popular_products_partial
GROUP BY window_start, window_end, product_name;

CREATE TABLE suspicious_ips (
  id               bigserial PRIMARY KEY,
  source_partition integer     NOT NULL,
  window_start     timestamptz NOT NULL,
  window_end       timestamptz NOT NULL,
  ip_address       text        NOT NULL,
  order_count      bigint      NOT NULL,
  total_spent      bigint      NOT NULL,
  is_final         boolean     NOT NULL DEFAULT false,
  rule_version     text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  UNIQUE (source_partition, ip_address, window_start)
);
CREATE INDEX ON suspicious_ips (created_at);
CREATE INDEX ON suspicious_ips (source_partition, window_end) WHERE NOT is_final;

CREATE TABLE high_value_orders (
  id               bigserial PRIMARY KEY,
  source_partition integer     NOT NULL,
  order_time       timestamptz NOT NULL,
  order_id         text        NOT NULL UNIQUE,
  product_name     text        NOT NULL,
  quantity         integer     NOT NULL,
  total_price      bigint      NOT NULL,
  ip_address       text        NOT NULL,
  rule_version     text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON high_value_orders (created_at);
CREATE INDEX ON high_value_orders (order_time);

CREATE TABLE realtime_stats_partial (
  id                  bigserial PRIMARY KEY,
  source_partition    integer     NOT NULL,
  stat_time           timestamptz NOT NULL,
  total_orders        bigint      NOT NULL,
  total_sales         bigint      NOT NULL,
  suspicious_ip_count integer     NOT NULL,
  is_final            boolean     NOT NULL DEFAULT false,
  rule_version        text,
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now(),
  UNIQUE (source_partition, stat_time)
);
CREATE INDEX ON realtime_stats_partial (stat_time);
CREATE INDEX ON realtime_stats_partial (source_partition, stat_time) WHERE NOT is_final;

CREATE VIEW realtime_stats AS
SELECT min(id) AS id, stat_time,
       sum(total_orders)::bigint AS total_orders,
       sum(total_sales)::bigint AS total_sales,
       round(sum(total_sales)::numeric / nullif(sum(total_orders), 0), 2) AS avg_order_value,
       sum(suspicious_ip_count)::integer AS suspicious_ip_count,
       bool_and(is_final) AS is_final, min(created_at) AS created_at, max(updated_at) AS updated_at
FROM realtime_stats_partial
GROUP BY stat_time;

CREATE TABLE dead_letters (
  id              bigserial PRIMARY KEY,
  topic           text        NOT NULL,
  kafka_partition integer     NOT NULL,
  kafka_offset    bigint      NOT NULL,
  message_key     text,
  payload         bytea,
  payload_bytes   integer     NOT NULL,
  reason          text        NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  UNIQUE (topic, kafka_partition, kafka_offset)
);

CREATE TABLE late_events (
  id              bigserial PRIMARY KEY,
  topic           text        NOT NULL,
  kafka_partition integer     NOT NULL,
  kafka_offset    bigint      NOT NULL,
  order_id        text        NOT NULL,
  event_time      timestamptz NOT NULL,
  watermark       timestamptz NOT NULL,
  ip_address      text        NOT NULL,
  total_price     bigint      NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  UNIQUE (topic, kafka_partition, kafka_offset)
);

CREATE TABLE consumer_progress (
  consumer_group  text        NOT NULL,
  topic           text        NOT NULL,
  kafka_partition integer     NOT NULL,
  next_offset     bigint      NOT NULL,
  restore_from    bigint      NOT NULL,
  watermark       timestamptz,
  updated_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer_group, topic, kafka_partition)
);
`,
  },
  {
    version: 2,
    name: 'card_testing and shared_ip_accounts',
    sql: `
CREATE TABLE card_testing (
  id                  bigserial PRIMARY KEY,
  source_partition    integer     NOT NULL,
  window_start        timestamptz NOT NULL,
  window_end          timestamptz NOT NULL,
  user_id             text        NOT NULL,
  order_count         bigint      NOT NULL,
  method_count        bigint      NOT NULL,
  method_count_values text        NOT NULL,
  is_final            boolean     NOT NULL DEFAULT false,
  rule_version        text,
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now(),
  UNIQUE (source_partition, user_id, window_start)
);
CREATE INDEX ON card_testing (created_at);
CREATE INDEX ON card_testing (source_partition, window_end) WHERE NOT is_final;

CREATE TABLE shared_ip_accounts (
  id                  bigserial PRIMARY KEY,
  source_partition    integer     NOT NULL,
  window_start        timestamptz NOT NULL,
  window_end          timestamptz NOT NULL,
  ip_address          text        NOT NULL,
  order_count         bigint      NOT NULL,
  user_count          bigint      NOT NULL,
  user_count_values   text        NOT NULL,
  is_final            boolean     NOT NULL DEFAULT false,
  rule_version        text,
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now(),
  UNIQUE (source_partition, ip_address, window_start)
);
CREATE INDEX ON shared_ip_accounts (created_at);
CREATE INDEX ON shared_ip_accounts (source_partition, window_end) WHERE NOT is_final;
`,
  },
];

/** Columns the sink manages itself; rules never output them. */
export const MANAGED_COLUMNS = new Set(['id', 'is_final', 'rule_version', 'created_at', 'updated_at']);

/** Result tables rules may target, with the columns a rule may write and their types. */
export const TARGETS: Readonly<Record<string, Readonly<Record<string, string>>>> = {
  popular_products_partial: {
    source_partition: 'integer',
    window_start: 'timestamptz',
    window_end: 'timestamptz',
    product_name: 'text',
    order_count: 'bigint',
    total_sales: 'bigint',
  },
  suspicious_ips: {
    source_partition: 'integer',
    window_start: 'timestamptz',
    window_end: 'timestamptz',
    ip_address: 'text',
    order_count: 'bigint',
    total_spent: 'bigint',
  },
  high_value_orders: {
    source_partition: 'integer',
    order_time: 'timestamptz',
    order_id: 'text',
    product_name: 'text',
    quantity: 'integer',
    total_price: 'bigint',
    ip_address: 'text',
  },
  realtime_stats_partial: {
    source_partition: 'integer',
    stat_time: 'timestamptz',
    total_orders: 'bigint',
    total_sales: 'bigint',
    suspicious_ip_count: 'integer',
  },
  // *_values: the distinct values a burst has seen, a JSON array, so that the
  // distinct count of a burst carried from batch to batch stays exact.
  card_testing: {
    source_partition: 'integer',
    window_start: 'timestamptz',
    window_end: 'timestamptz',
    user_id: 'text',
    order_count: 'bigint',
    method_count: 'bigint',
    method_count_values: 'text',
  },
  shared_ip_accounts: {
    source_partition: 'integer',
    window_start: 'timestamptz',
    window_end: 'timestamptz',
    ip_address: 'text',
    order_count: 'bigint',
    user_count: 'bigint',
    user_count_values: 'text',
  },
};

/** The natural key of each result table (its UNIQUE constraint above). */
export const TARGET_KEYS: Readonly<Record<string, readonly string[]>> = {
  popular_products_partial: ['source_partition', 'window_start', 'product_name'],
  suspicious_ips: ['source_partition', 'ip_address', 'window_start'],
  high_value_orders: ['order_id'],
  realtime_stats_partial: ['source_partition', 'stat_time'],
  card_testing: ['source_partition', 'user_id', 'window_start'],
  shared_ip_accounts: ['source_partition', 'ip_address', 'window_start'],
};

/** Targets with an is_final column (their rules must say when a row is final). */
export const FINALIZABLE = new Set(['popular_products_partial', 'suspicious_ips', 'realtime_stats_partial', 'card_testing', 'shared_ip_accounts']);

/** The DuckDB type that holds each PostgreSQL column type of TARGETS. */
export const DUCK_TYPES: Readonly<Record<string, string>> = { timestamptz: 'TIMESTAMP', integer: 'INTEGER', bigint: 'BIGINT', text: 'VARCHAR' };

/** Which DuckDB result types may go into a PostgreSQL column type. */
export function compatible(pgType: string, duckType: string): boolean {
  const d = duckType.toUpperCase();
  switch (pgType) {
    case 'timestamptz':
      return d.startsWith('TIMESTAMP');
    case 'integer':
    case 'bigint':
      return /^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|UHUGEINT)$/.test(d) || /^DECIMAL\(\d+,0\)$/.test(d);
    case 'text':
      return d === 'VARCHAR';
    default:
      return false;
  }
}
