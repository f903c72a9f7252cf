-- name: Qualifying grid: use a non-customised approach
-- description: Low potential profitability but open to offers (propensity in the upper half): reach them with standard, low-cost campaigns.
-- owner: crm-marketing
-- needs: clv, propensity
select customer_id, clv, propensity
from int_customer_scores__qualified
where clv_half = 1 and propensity_half = 2
