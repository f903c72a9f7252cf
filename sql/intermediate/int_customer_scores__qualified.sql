-- The qualifying grid: every customer with both a CLV and a campaign propensity, with the half
-- of those customers they fall in by each (1 lower, 2 upper; ties broken by customer id). The
-- four grid segments (sql/segments/grid_*.sql) each select one quadrant of it.
-- test: unique(customer_id)
-- test: not_null(customer_id, clv, propensity, clv_half, propensity_half)
-- test: expression(clv_half in (1, 2) and propensity_half in (1, 2))
with scores as (
    select customer_id, clv, propensity
    from customer_scores
    where clv is not null and propensity is not null
),

halves as (
    select
        customer_id,
        clv,
        propensity,
        cast(ntile(2) over (order by clv, customer_id) as int)        as clv_half,
        cast(ntile(2) over (order by propensity, customer_id) as int) as propensity_half
    from scores
)

select customer_id, clv, propensity, clv_half, propensity_half
from halves
order by customer_id
