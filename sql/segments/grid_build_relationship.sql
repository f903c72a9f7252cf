-- name: Qualifying grid: build a strong lasting relationship
-- description: High potential profitability (CLV in the upper half) and high opportunity to add value (propensity in the upper half): invest in a personal, lasting relationship.
-- owner: crm-marketing
-- needs: clv, propensity
select customer_id, clv, propensity
from int_customer_scores__qualified
where clv_half = 2 and propensity_half = 2
