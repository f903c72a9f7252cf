-- name: Qualifying grid: focus a loyalty programme
-- description: High potential profitability but few opportunities to add value (propensity in the lower half): keep them with a loyalty programme.
-- owner: crm-marketing
-- needs: clv, propensity
select customer_id, clv, propensity
from int_customer_scores__qualified
where clv_half = 2 and propensity_half = 1
