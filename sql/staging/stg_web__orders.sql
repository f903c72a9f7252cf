-- Web orders, one row per order up to the as-of date; the order date is the UTC date of the order,
-- the amount in the currency the customer paid (fct_orders converts it).
--
-- test: unique(order_id)
-- test: not_null(order_id, record_id, order_date, order_amount)
with source as (
    select * from raw.web_orders
),

renamed as (
    select
        order_id,
        'web:' || web_customer_id        as record_id,
        'web'                            as channel,
        cast(ordered_at as date)         as order_date,
        items                            as quantity,
        total_amount                     as order_amount,
        upper(trim(currency))            as currency
    from source
    where cast(ordered_at as date) <= as_of_date()
)

select * from renamed
order by order_id
