/**
 * The PostgreSQL schema's migrations, applied in order by `fraud-sql migrate` and
 * on start. The rules' result tables are not listed here: each is derived from its
 * rule file (sink/tables.ts) and created or grown after the migrations.
 *
 * Migration 1 predates that and created the four tables of the original design
 * with their names and columns, which the built-in rules
 * derive exactly, so a database migrated by it is left as it is. Windowed results
 * are written per Kafka partition, so several processes can share the work
 * (README.md, *Scale out*): popular_products and realtime_stats are views that sum
 * the per-partition rows of the *_partial tables.
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
    name: 'alert outbox, webhook deliveries, alert dead letters',
    // Alerts are written in the batch's own transaction (an outbox): a detection
    // committed always has its alert, and a replayed batch finds its alert_id taken.
    sql: `
CREATE TABLE alert_outbox (
  seq          bigserial PRIMARY KEY,
  alert_id     text        NOT NULL UNIQUE,
  rule         text        NOT NULL,
  alert_key    text        NOT NULL,
  payload      text        NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  published_at timestamptz
);
CREATE INDEX alert_outbox_unpublished ON alert_outbox (seq) WHERE published_at IS NULL;

CREATE TABLE alert_deliveries (
  alert_id        text        NOT NULL REFERENCES alert_outbox (alert_id),
  url             text        NOT NULL,
  attempts        integer     NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  last_error      text,
  delivered_at    timestamptz,
  PRIMARY KEY (alert_id, url)
);
CREATE INDEX alert_deliveries_due ON alert_deliveries (next_attempt_at) WHERE delivered_at IS NULL;

CREATE TABLE alert_dead_letters (
  alert_id   text        NOT NULL,
  url        text        NOT NULL,
  attempts   integer     NOT NULL,
  last_error text        NOT NULL,
  payload    text        NOT NULL,
  failed_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (alert_id, url)
);
`,
  },
  {
    version: 3,
    name: 'list entries added at run time',
    // `fraud-sql lists add`: entries on top of queries/lists/*.csv, applied by every
    // running process at its next batch (NOTIFY fraud_sql_lists).
    sql: `
CREATE TABLE list_entries (
  list     text        NOT NULL,
  value    text        NOT NULL,
  reason   text        NOT NULL DEFAULT '',
  added_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (list, value)
);
`,
  },
  {
    version: 4,
    name: 'detection evidence and totals',
    // Written in the batch's own transaction (alerts/evidence.ts): per detection,
    // its first orders by event time and the count of them all. A rule without
    // windows has no window_start: NULL, which the keys compare as one value.
    sql: `
CREATE TABLE detection_evidence (
  rule         text        NOT NULL,
  key_value    text        NOT NULL,
  window_start timestamptz,
  order_id     text        NOT NULL,
  event_time   timestamptz NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX detection_evidence_key ON detection_evidence (rule, key_value, (coalesce(window_start, '-infinity')), event_time, order_id);

CREATE TABLE detection_totals (
  rule         text        NOT NULL,
  key_value    text        NOT NULL,
  window_start timestamptz,
  window_end   timestamptz,
  order_count  bigint      NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX detection_totals_key ON detection_totals (rule, key_value, (coalesce(window_start, '-infinity')));
`,
  },
];
