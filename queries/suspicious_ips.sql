-- name: suspicious_ips
-- description: Macro/bot buying: an IP with at least min_orders orders within any window (true sliding); one row per burst.
-- severity: high
-- alert: new
-- target: suspicious_ips
-- burst: ip_address when count(*) >= $min_orders within $window
-- param min_orders = 10
-- param window = 60s
-- label: bot, burst where orders >= $min_orders within $window
--
-- An order at time t is hot when its IP has >= min_orders orders in (t - window, t],
-- itself included: a true sliding window, so a burst across a minute boundary is
-- caught and min_orders - 1 orders are not. Each hot order covers (t - window, t];
-- overlapping spans of one IP merge into one burst, written as one row:
--   window_start  the burst's first order
--   window_end    its last hot order
--   and the aggregates below, over every order of the burst.
-- fraud-sql carries an open burst from batch to batch, so a bot buying for hours
-- stays one exact row while only two windows of orders are kept.
SELECT
  count(*)                AS order_count,
  sum(price * quantity)   AS total_spent
FROM burst
-- An allow-listed address (lists/allow_ips.csv: an office NAT, a known reseller) is never reported.
WHERE ip_address NOT IN (SELECT ip_address FROM allow_ips)
