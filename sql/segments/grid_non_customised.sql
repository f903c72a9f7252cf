-- name: Qualifying grid: use a non-customised approach
-- description: Low potential profitability but open to offers (propensity in the upper half): reach them with standard, low-cost campaigns.
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
where clv_half = 1 and propensity_half = 2
