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
-- stat_time is the window's end. suspicious_ip_count counts the distinct IPs with at
-- least one order of a burst (see suspicious_ips.sql) inside the window; it reads
-- that rule's current rows (result_suspicious_ips) and the ones this batch changed
-- (changed_suspicious_ips), so it runs after it.
-- An order at t of an IP with a burst can change burst membership within
-- (t - burst_window, t + burst_window): those windows are recomputed too.
WITH touched AS (
  SELECT DISTINCT kafka_partition, time_bucket($window, event_time) AS window_start
  FROM batch_orders
  UNION
  SELECT DISTINCT o.kafka_partition,
         unnest(range(time_bucket($window, o.event_time - $burst_window), o.event_time + $burst_window, $window))
  FROM batch_orders o
  SEMI JOIN changed_suspicious_ips c ON c.source_partition = o.kafka_partition AND c.ip_address = o.ip_address
),
windowed AS (
  SELECT t.kafka_partition, t.window_start, o.ip_address, o.event_time, o.price * o.quantity AS amount
  FROM touched t
  JOIN orders o
    ON o.kafka_partition = t.kafka_partition
   AND o.event_time >= t.window_start
   AND o.event_time <  t.window_start + $window
),
suspicious AS (
  SELECT w.kafka_partition, w.window_start, count(DISTINCT w.ip_address) AS suspicious_ip_count
  FROM windowed w
  JOIN result_suspicious_ips b
    ON b.source_partition = w.kafka_partition
   AND b.ip_address = w.ip_address
   AND w.event_time BETWEEN b.window_start AND b.window_end
  GROUP BY ALL
)
SELECT
  w.kafka_partition                     AS source_partition,
  w.window_start + $window              AS stat_time,
  count(*)                              AS total_orders,
  sum(w.amount)                         AS total_sales,
  coalesce(any_value(s.suspicious_ip_count), 0) AS suspicious_ip_count
FROM windowed w
LEFT JOIN suspicious s USING (kafka_partition, window_start)
GROUP BY w.kafka_partition, w.window_start
