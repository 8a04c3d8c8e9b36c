-- name: popular_products
-- description: Orders and sales per product in tumbling event-time windows.
-- severity: info
-- target: popular_products_partial
-- key: source_partition, window_start, product_name
-- grows: order_count
-- final_after: window_end
-- state: $window
-- param window = 30s
--
-- Recomputes only the windows this batch's orders fall into, from every retained
-- order of those windows, so a late order (within the allowed lateness) updates
-- its window. Windows are half-open [window_start, window_end), aligned to the epoch.
WITH touched AS (
  SELECT DISTINCT kafka_partition, time_bucket($window, event_time) AS window_start
  FROM batch_orders
)
SELECT
  t.kafka_partition              AS source_partition,
  t.window_start,
  t.window_start + $window       AS window_end,
  o.product_name,
  count(*)                       AS order_count,
  sum(o.price * o.quantity)      AS total_sales
FROM touched t
JOIN orders o
  ON o.kafka_partition = t.kafka_partition
 AND o.event_time >= t.window_start
 AND o.event_time <  t.window_start + $window
GROUP BY ALL
