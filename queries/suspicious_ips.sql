-- name: suspicious_ips
-- description: Macro/bot buying: an IP with at least min_orders orders within any window (true sliding); one row per burst.
-- severity: high
-- target: suspicious_ips
-- key: source_partition, ip_address, window_start
-- partition_by: ip_address
-- replace: source_partition, ip_address
-- grows: order_count
-- final_after: window_end + $window
-- state: 2 * $window
-- param min_orders = 10
-- param window = 60s
-- label: bot, burst where orders >= $min_orders within $window
--
-- An order at time t is *hot* when its IP has >= min_orders orders in (t - window, t],
-- itself included. Each hot order covers (t - window, t]; overlapping spans of one IP
-- merge into a burst. A burst's row counts every order inside its spans:
--   window_start = the burst's first order, window_end = its last hot order.
--
-- The rule is incremental, so a bot that never pauses costs the same every batch:
-- it reads its own rows as of the last batch (result_suspicious_ips) and only the
-- last two windows of orders of the IPs in this batch. New orders are never behind
-- the watermark, so nothing more than a window before an IP's first new order can
-- change: older hot orders stay hot, older bursts stay as they are. A burst that
-- started before that point is *carried*: it keeps its start and its count so far,
-- adds the new orders inside it, and grows at its end. Everything else is
-- recomputed from the retained orders. `replace: ip_address` removes an IP's open
-- rows that the new result no longer has (two bursts that merged).
WITH touched AS (
  -- Per IP of this batch: its first new order. Offsets only grow within a partition,
  -- so the IP's orders from first_offset on are exactly the new ones.
  SELECT kafka_partition, ip_address, min(event_time) AS first_new, min(kafka_offset) AS first_offset
  FROM batch_orders
  GROUP BY ALL
),
previous AS (
  -- Typed, as the rule's own output types come from this (queries/README.md, "Incremental rules").
  SELECT r.source_partition, r.ip_address, r.window_start::TIMESTAMP AS window_start, r.window_end::TIMESTAMP AS window_end,
         r.order_count::BIGINT AS order_count, r.total_spent::HUGEINT AS total_spent, t.first_new
  FROM result_suspicious_ips r
  JOIN touched t ON t.kafka_partition = r.source_partition AND t.ip_address = r.ip_address
),
carried AS (
  -- At most one per IP: a burst still in reach of the new orders that began too early
  -- to be recomputed.
  SELECT * FROM previous
  WHERE window_start < first_new - $window AND window_end >= first_new - $window
),
recent AS (
  -- The IP's orders that the new counts need: from two windows before its first new
  -- order (every order from one window before it on then has its whole last window
  -- here, so its count is exact); with a carried burst, from one window before the
  -- burst's end (only orders after it are counted anew), and every new order.
  SELECT o.kafka_partition, o.ip_address, o.event_time, o.price, o.quantity,
         t.first_new, o.kafka_offset >= t.first_offset AS is_new
  FROM orders o
  JOIN touched t ON t.kafka_partition = o.kafka_partition AND t.ip_address = o.ip_address
  LEFT JOIN carried c ON c.source_partition = o.kafka_partition AND c.ip_address = o.ip_address
  WHERE o.event_time > CASE WHEN c.window_end IS NULL THEN t.first_new - 2 * $window
                            ELSE least(c.window_end - $window, t.first_new - INTERVAL 1 MICROSECOND) END
),
busy AS (
  -- Most IPs have too few recent orders for any of them to be hot: only the others
  -- (and those with a carried burst to update) are counted order by order.
  SELECT kafka_partition, ip_address FROM recent GROUP BY ALL HAVING count(*) >= $min_orders
  UNION
  SELECT source_partition, ip_address FROM carried
),
heat AS (
  -- nth_back: the time of the order min_orders - 1 places earlier. When it is inside
  -- (t - window, t] for the last order at time t, min_orders orders lie in that
  -- window: the orders at t are hot. (Cheaper than counting every order's window.)
  SELECT r.*,
         lag(r.event_time, $min_orders - 1) OVER (PARTITION BY r.kafka_partition, r.ip_address ORDER BY r.event_time) AS nth_back
  FROM recent r
  SEMI JOIN busy b ON b.kafka_partition = r.kafka_partition AND b.ip_address = r.ip_address
),
hot AS (
  SELECT r.kafka_partition, r.ip_address, r.event_time,
         NULL::TIMESTAMP AS carried_start, NULL::TIMESTAMP AS carried_end, NULL::BIGINT AS carried_count, NULL::HUGEINT AS carried_spent
  FROM heat r
  LEFT JOIN carried c ON c.source_partition = r.kafka_partition AND c.ip_address = r.ip_address
  WHERE r.event_time >= r.first_new - $window
    AND (c.window_end IS NULL OR r.event_time > c.window_end)
  GROUP BY r.kafka_partition, r.ip_address, r.event_time
  HAVING bool_or(r.nth_back > r.event_time - $window)
  UNION ALL
  -- A carried burst stands in as its last hot order.
  SELECT source_partition, ip_address, window_end, window_start, window_end, order_count, total_spent
  FROM carried
),
bursts AS (
  -- A hot order starts a new burst when its span does not overlap the previous hot order's.
  SELECT kafka_partition, ip_address, burst_no,
         min(event_time) AS first_hot, max(event_time) AS last_hot,
         max(carried_start) AS carried_start, max(carried_end) AS carried_end,
         max(carried_count) AS carried_count, max(carried_spent) AS carried_spent
  FROM (
    SELECT *, sum(CASE WHEN previous IS NULL OR event_time - previous >= $window THEN 1 ELSE 0 END)
                OVER (PARTITION BY kafka_partition, ip_address ORDER BY event_time) AS burst_no
    FROM (
      SELECT *, lag(event_time) OVER (PARTITION BY kafka_partition, ip_address ORDER BY event_time) AS previous
      FROM hot
    )
  )
  GROUP BY ALL
)
SELECT
  b.kafka_partition                                      AS source_partition,
  b.ip_address,
  coalesce(b.carried_start, min(o.event_time))           AS window_start,
  b.last_hot                                             AS window_end,
  coalesce(b.carried_count, 0) + count(o.event_time)     AS order_count,
  coalesce(b.carried_spent, 0) + coalesce(sum(o.price * o.quantity), 0) AS total_spent
FROM bursts b
LEFT JOIN heat o
  ON o.kafka_partition = b.kafka_partition
 AND o.ip_address = b.ip_address
 AND o.event_time <= b.last_hot
 -- A recomputed burst counts its orders from a window before its first hot order; a
 -- carried one adds the new orders up to its old end and every order after it.
 AND CASE WHEN b.carried_end IS NULL THEN o.event_time > b.first_hot - $window
          ELSE o.event_time > b.carried_end OR o.is_new END
GROUP BY b.kafka_partition, b.ip_address, b.burst_no, b.last_hot, b.carried_start, b.carried_count, b.carried_spent
UNION ALL
-- The IP's bursts out of the new orders' reach, as they are (so `replace` keeps them).
SELECT source_partition, ip_address, window_start, window_end, order_count, total_spent
FROM previous
WHERE window_end < first_new - $window
