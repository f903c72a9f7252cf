-- One row per customer: contact data and consent, with purchase history up to the as-of date.
-- frequency counts distinct purchase days (as the buy-till-you-die models do); monetary_value is the
-- total spend; recency_days is the number of days from the last purchase to the as-of date.
--
-- test: unique(customer_id)
-- test: relationships(customer_id, dim_customer.customer_id)
-- test: expression(frequency <= order_count and monetary_value >= 0)
with customers as (
    select * from dim_customer
),

orders as (
    select * from fct_orders where customer_id is not null
),

order_stats as (
    select
        customer_id,
        min(order_date)                     as first_purchase_date,
        max(order_date)                     as last_purchase_date,
        count(distinct order_date)          as frequency,
        count(*)                            as order_count,
        sum(order_amount)                   as monetary_value,
        sum(case when channel = 'web' then 1 else 0 end)    as web_order_count,
        sum(case when channel = 'store' then 1 else 0 end)  as store_order_count
    from orders
    group by customer_id
)

select
    c.customer_id,
    c.first_name,
    c.last_name,
    c.email,
    c.phone,
    c.street,
    c.postcode,
    c.city,
    c.birth_date,
    c.is_opted_out,
    c.email is not null                                             as has_email,
    c.has_valid_email,
    c.has_valid_phone,
    c.has_postal_address,
    c.source_record_count,
    c.has_crm_record,
    c.has_web_record,
    s.first_purchase_date,
    s.last_purchase_date,
    coalesce(s.frequency, 0)                                        as frequency,
    coalesce(s.order_count, 0)                                      as order_count,
    coalesce(s.monetary_value, cast(0 as decimal(22, 2)))           as monetary_value,
    s.web_order_count,
    s.store_order_count,
    cast(as_of_date() - s.last_purchase_date as bigint)             as recency_days,
    cast(as_of_date() - coalesce(c.first_seen_date, s.first_purchase_date) as bigint) as tenure_days
from customers c
left join order_stats s on s.customer_id = c.customer_id
order by c.customer_id
