-- One row per customer: contact data and consent, with purchase history up to the as-of date.
-- frequency counts distinct purchase days (as the buy-till-you-die models do); monetary_value is the
-- total spend; recency_days is the number of days from the last purchase to the as-of date.
--
-- test: unique(customer_id)
-- test: relationships(customer_id, dim_customer.customer_id)
-- test: expression(frequency <= order_count and monetary_value >= 0)
-- test: accepted_values(lifecycle_stage, 'aware', 'trial', 'purchase', 'multiple_purchase', 'loyalty')
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
        sum(case when channel = 'store' then 1 else 0 end)  as store_order_count,
        -- Quarters (91-day periods ending at the as-of date) of the last year with a purchase.
        count(distinct case
            when cast(as_of_date() - order_date as bigint) between 0 and 363
            then cast(as_of_date() - order_date as bigint) / 91
        end)                                as active_quarters_last_year
    from orders
    group by customer_id
),

staged as (
    select
        c.*,
        s.first_purchase_date,
        s.last_purchase_date,
        coalesce(s.frequency, 0)                                        as frequency,
        coalesce(s.order_count, 0)                                      as order_count,
        coalesce(s.monetary_value, cast(0 as decimal(22, 2)))           as monetary_value,
        s.web_order_count,
        s.store_order_count,
        coalesce(s.active_quarters_last_year, 0)                        as active_quarters_last_year
    from customers c
    left join order_stats s on s.customer_id = c.customer_id
)

select
    customer_id,
    first_name,
    last_name,
    email,
    phone,
    street,
    postcode,
    city,
    birth_date,
    is_opted_out,
    email is not null                                               as has_email,
    has_valid_email,
    has_valid_phone,
    has_postal_address,
    source_record_count,
    has_crm_record,
    has_web_record,
    first_purchase_date,
    last_purchase_date,
    frequency,
    order_count,
    monetary_value,
    web_order_count,
    store_order_count,
    cast(as_of_date() - last_purchase_date as bigint)               as recency_days,
    cast(as_of_date() - coalesce(first_seen_date, first_purchase_date) as bigint) as tenure_days,
    active_quarters_last_year,
    -- The lifecycle stage (docs/identity.md#lifecycle-stages).
    case
        when frequency = 0 then 'aware'
        when frequency = 1 then 'trial'
        when frequency = 2 then 'purchase'
        when cast(as_of_date() - first_purchase_date as bigint) >= 365
             and active_quarters_last_year >= 3 then 'loyalty'
        else 'multiple_purchase'
    end                                                             as lifecycle_stage
from staged
order by customer_id
