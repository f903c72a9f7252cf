-- name: Qualifying grid: build a strong lasting relationship
-- description: High potential profitability (CLV in the upper half) and high opportunity to add value (propensity in the upper half): invest in a personal, lasting relationship.
-- owner: crm-marketing
with scored as (
    select
        customer_id,
        clv,
        propensity,
        ntile(2) over (order by clv, customer_id)        as clv_half,
        ntile(2) over (order by propensity, customer_id) as propensity_half
    from customer_scores
    where clv is not null and propensity is not null
)

select customer_id, clv, propensity
from scored
where clv_half = 2 and propensity_half = 2
