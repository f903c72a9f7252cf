-- Online orders, in the currency the customer paid (fct_orders converts to NZD); the order date
-- is the date in Auckland.
--
-- test: unique(order_id)
-- test: not_null(order_id, record_id, order_date, order_amount, currency)
with source as (
    select * from raw.shop_orders
),

renamed as (
    select
        'shop:' || order_number                                    as order_id,
        'shop:' || customer_id                                     as record_id,
        'web'                                                      as channel,
        cast(created_at + interval '13 hours' as date)             as order_date,
        cast(null as bigint)                                       as quantity,
        total_price                                                as order_amount,
        currency
    from source
    where cast(created_at + interval '13 hours' as date) <= as_of_date()
)

select * from renamed
order by order_id
