-- name: Qualifying grid: seek better opportunities elsewhere
-- description: Low potential profitability and few opportunities to add value: spend the budget elsewhere.
-- owner: crm-marketing
-- needs: clv, propensity
select customer_id, clv, propensity
from int_customer_scores__qualified
where clv_half = 1 and propensity_half = 1
