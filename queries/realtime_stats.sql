-- name: realtime_stats
-- description: Orders, sales and active suspicious IPs per tumbling event-time window.
-- severity: info
-- target: realtime_stats_partial
-- key: source_partition, stat_time
-- grows: total_orders, suspicious_ip_count
-- final_after: stat_time
-- state: $window + $burst_window
-- param window = 30s
-- param burst_window = 60s
--
-- stat_time is the window's end. The totals are incremental: the window's row as of
-- the last batch (result_realtime_stats) plus the batch's orders in it.
-- suspicious_ip_count counts the distinct IPs with at least one order of a burst
-- (see suspicious_ips.sql) inside the window; it reads that rule's current rows
-- (result_suspicious_ips) and the ones this batch changed (changed_suspicious_ips),
-- so it runs after it. An order at t of an IP with a burst can change burst
-- membership within (t - burst_window, t + burst_window): those windows are
-- recounted too, from the orders inside bursts only.
WITH added AS (
  SELECT kafka_partition, time_bucket($window, event_time) AS window_start,
         count(*) AS orders, sum(price * quantity) AS sales
  FROM batch_orders
  GROUP BY ALL
),
touched AS (
  SELECT kafka_partition, window_start FROM added
  UNION
  SELECT DISTINCT o.kafka_partition,
         unnest(range(time_bucket($window, o.event_time - $burst_window), o.event_time + $burst_window, $window))
  FROM batch_orders o
  SEMI JOIN changed_suspicious_ips c ON c.source_partition = o.kafka_partition AND c.ip_address = o.ip_address
),
suspicious AS (
  SELECT o.kafka_partition, time_bucket($window, o.event_time) AS window_start,
         count(DISTINCT o.ip_address) AS suspicious_ip_count
  FROM orders o
  JOIN result_suspicious_ips b
    ON b.source_partition = o.kafka_partition
   AND b.ip_address = o.ip_address
   AND o.event_time BETWEEN b.window_start AND b.window_end
  WHERE (o.kafka_partition, time_bucket($window, o.event_time)) IN (SELECT kafka_partition, window_start FROM touched)
  GROUP BY ALL
)
SELECT
  t.kafka_partition                                    AS source_partition,
  t.window_start + $window                             AS stat_time,
  coalesce(p.total_orders, 0) + coalesce(a.orders, 0)  AS total_orders,
  coalesce(p.total_sales, 0) + coalesce(a.sales, 0)    AS total_sales,
  -- INTEGER: the column's type in the original design's table.
  coalesce(s.suspicious_ip_count, 0)::INTEGER          AS suspicious_ip_count
FROM touched t
LEFT JOIN added a USING (kafka_partition, window_start)
LEFT JOIN suspicious s USING (kafka_partition, window_start)
LEFT JOIN result_realtime_stats p
  ON p.source_partition = t.kafka_partition AND p.stat_time = t.window_start + $window
-- A window with no orders has no row.
WHERE a.orders IS NOT NULL OR p.stat_time IS NOT NULL
