-- The RFM input: one row per customer who has bought, with the three measures, in id order.
-- reads: customer_view

select
    cast(customer_id as varchar)    as customer_id,
    cast(recency_days as bigint)    as recency_days,
    cast(frequency as bigint)       as frequency,
    cast(monetary_value as double)  as monetary_value
from customer_view
where frequency > 0
order by customer_id
