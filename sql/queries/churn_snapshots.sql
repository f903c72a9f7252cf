-- Churn training and validation snapshots: every customer who bought on or before {cutoff},
-- labelled 1 when they do not buy again by {horizon_end} (the churn window after the cutoff).
-- params: cutoff (date), horizon_end (date)
-- reads: fct_orders

with buyers as (
    select distinct customer_id from fct_orders
    where customer_id is not null and order_date <= cast('{cutoff}' as date)
),

bought_again as (
    select distinct customer_id from fct_orders
    where order_date > cast('{cutoff}' as date) and order_date <= cast('{horizon_end}' as date)
)

select b.customer_id, cast('{cutoff}' as date) as _snapshot_date, 'all' as _group,
       case when l.customer_id is null then 1 else 0 end as label
from buyers b
left join bought_again l on l.customer_id = b.customer_id
