-- name: blocked_activity
-- description: Every order from a block-listed IP address or user (lists/block_ips.csv, lists/block_users.csv), on its first order.
-- severity: high
-- alert: new
-- target: blocked_activity
-- key: order_id
-- state: 0s
-- label: blocked
--
-- One row per order, written in the micro-batch that read it: a blocked address or
-- account is reported from its first order on, with no window to fill first.
-- blocked_by says which list matched (ip_address, user_id, or both).
SELECT
  kafka_partition          AS source_partition,
  event_time               AS order_time,
  order_id,
  user_id,
  ip_address,
  price * quantity         AS total_price,
  concat_ws(', ',
    CASE WHEN ip_address IN (SELECT ip_address FROM block_ips) THEN 'ip_address' END,
    CASE WHEN user_id IN (SELECT user_id FROM block_users) THEN 'user_id' END) AS blocked_by
FROM batch_orders
WHERE ip_address IN (SELECT ip_address FROM block_ips)
   OR user_id IN (SELECT user_id FROM block_users)
