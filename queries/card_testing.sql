-- name: card_testing
-- description: Card testing: one user paying with at least min_methods distinct payment methods within any window; one row per burst.
-- severity: high
-- alert: new
-- target: card_testing
-- burst: user_id when count(DISTINCT payment_method) >= $min_methods within $window
-- param min_methods = 3
-- param window = 10m
-- label: card_testing where distinct payment_method >= $min_methods within $window
--
-- An order at time t is hot when its user has paid with >= min_methods distinct
-- methods in (t - window, t], itself included: someone trying stolen cards or
-- accounts one after another. Overlapping spans of one user merge into one burst:
--   window_start  the burst's first order
--   window_end    its last hot order
--   method_count  the distinct methods over the whole burst (method_count_values
--                 lists them, so that fraud-sql carries the count exactly)
-- An order without a payment method counts as an order, not as a method.
SELECT
  count(*)                         AS order_count,
  count(DISTINCT payment_method)   AS method_count
FROM burst
