-- name: high_value_orders
-- description: Every order whose total (price x quantity) reaches the threshold.
-- severity: medium
-- alert: new
-- target: high_value_orders
-- key: order_id
-- state: 0s
-- param threshold = 500000
-- label: * where price * quantity >= $threshold
--
-- One row per order, written in the micro-batch that read it. The label is every
-- order over the threshold, not the generator's high_value scenario: a laptop in
-- normal traffic is high value too, and that scenario also sends 499,999 KRW orders
-- that are not; this rule is a definition, and backtest checks it against one.
SELECT
  kafka_partition          AS source_partition,
  event_time               AS order_time,
  order_id,
  product_name,
  quantity,
  price * quantity         AS total_price,
  ip_address
FROM batch_orders
WHERE price * quantity >= $threshold
