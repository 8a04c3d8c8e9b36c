-- name: suspicious_ips
-- description: Macro/bot buying: an IP with at least min_orders orders within any window (true sliding); one row per burst.
-- severity: high
-- target: suspicious_ips
-- key: source_partition, ip_address, window_start
-- replace: source_partition, ip_address
-- grows: order_count
-- final_after: window_end + $window
-- state: $window per ip_address
-- param min_orders = 10
-- param window = 60s
--
-- An order at time t is *hot* when its IP has >= min_orders orders in (t - window, t],
-- itself included. Each hot order covers (t - window, t]; overlapping spans of one IP
-- merge into a burst. A burst's row counts every order inside its spans:
--   window_start = the burst's first order, window_end = its last hot order.
-- All bursts of the IPs this batch touched are recomputed from their retained
-- orders; fraud-sql retains an IP's orders while the IP stays active (no pause of a
-- whole window), so a burst is always recomputed whole. `replace: ip_address` removes
-- an IP's open rows that the new result no longer has (two bursts that merged).
WITH heat AS (
  SELECT o.*,
         count(*) OVER (
           PARTITION BY kafka_partition, ip_address ORDER BY event_time
           RANGE BETWEEN $window - INTERVAL 1 MICROSECOND PRECEDING AND CURRENT ROW
         ) AS recent_orders
  FROM orders o
  WHERE (kafka_partition, ip_address) IN (SELECT kafka_partition, ip_address FROM batch_orders)
),
hot AS (
  -- A hot order starts a new burst when its span does not overlap the previous hot order's.
  SELECT kafka_partition, ip_address, event_time,
         sum(CASE WHEN previous IS NULL OR event_time - previous >= $window THEN 1 ELSE 0 END)
           OVER (PARTITION BY kafka_partition, ip_address ORDER BY event_time) AS burst_no
  FROM (
    SELECT kafka_partition, ip_address, event_time,
           lag(event_time) OVER (PARTITION BY kafka_partition, ip_address ORDER BY event_time) AS previous
    FROM heat
    WHERE recent_orders >= $min_orders
  )
),
bursts AS (
  SELECT kafka_partition, ip_address, burst_no, min(event_time) AS first_hot, max(event_time) AS last_hot
  FROM hot
  GROUP BY ALL
)
SELECT
  b.kafka_partition              AS source_partition,
  b.ip_address,
  min(o.event_time)              AS window_start,
  b.last_hot                     AS window_end,
  count(*)                       AS order_count,
  sum(o.price * o.quantity)      AS total_spent
FROM bursts b
JOIN heat o
  ON o.kafka_partition = b.kafka_partition
 AND o.ip_address = b.ip_address
 AND o.event_time >  b.first_hot - $window
 AND o.event_time <= b.last_hot
GROUP BY b.kafka_partition, b.ip_address, b.burst_no, b.last_hot
