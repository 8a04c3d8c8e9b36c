-- name: high_value_orders
-- description: Every order whose total (price x quantity) reaches the threshold.
-- severity: medium
-- target: high_value_orders
-- key: order_id
-- state: 0s
-- param threshold = 500000
--
-- One row per order, written in the micro-batch that read it.
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
