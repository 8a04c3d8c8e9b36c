-- name: shared_ip_accounts
-- description: Account farming: one IP used by at least min_users distinct users within any window; one row per burst.
-- severity: medium
-- alert: new
-- target: shared_ip_accounts
-- burst: ip_address when count(DISTINCT user_id) >= $min_users within $window
-- param min_users = 5
-- param window = 5m
-- label: shared_ip where distinct user_id >= $min_users within $window
--
-- An order at time t is hot when its IP has orders of >= min_users distinct users
-- in (t - window, t], itself included: many accounts behind one address, as a
-- farm of fake or stolen accounts shows. Overlapping spans of one IP merge into
-- one burst:
--   window_start  the burst's first order
--   window_end    its last hot order
--   user_count    the distinct users over the whole burst (user_count_values lists
--                 them, so that fraud-sql carries the count exactly)
SELECT
  count(*)                  AS order_count,
  count(DISTINCT user_id)   AS user_count
FROM burst
-- An allow-listed address (lists/allow_ips.csv: an office NAT, a known reseller) is never reported.
WHERE ip_address NOT IN (SELECT ip_address FROM allow_ips)
