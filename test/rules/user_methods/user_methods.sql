-- name: user_methods
-- description: One user paying with at least min_methods payment methods within a window (a user trying card after card).
-- severity: high
-- target: user_methods
-- key: source_partition, user_id, window_start
-- partition_by: user_id
-- grows: order_count
-- final_after: window_end
-- state: $window
-- param window = 10m
-- param min_methods = 3
--
-- A rule that only a SQL file defines: its table (user_methods) is derived from
-- this header and the columns below, in PostgreSQL and in DuckDB.
WITH touched AS (
  SELECT DISTINCT kafka_partition, user_id, time_bucket($window, event_time) AS window_start
  FROM batch_orders
)
SELECT
  t.kafka_partition                 AS source_partition,
  t.user_id,
  t.window_start,
  t.window_start + $window          AS window_end,
  count(*)                          AS order_count,
  count(DISTINCT o.payment_method)  AS method_count
FROM touched t
JOIN orders o
  ON o.kafka_partition = t.kafka_partition
 AND o.user_id = t.user_id
 AND o.event_time >= t.window_start
 AND o.event_time <  t.window_start + $window
GROUP BY ALL
HAVING count(DISTINCT o.payment_method) >= $min_methods
