-- Till receipts of loyalty members, in New Zealand dollars.
--
-- test: unique(order_id)
-- test: not_null(order_id, record_id, order_date, order_amount)
with source as (
    select * from raw.pos_sales
),

renamed as (
    select
        'pos:' || receipt                                          as order_id,
        'pos:' || card_no                                          as record_id,
        'store'                                                    as channel,
        date                                                       as order_date,
        cast(null as bigint)                                       as quantity,
        total                                                      as order_amount,
        'NZD'                                                      as currency
    from source
    where date <= as_of_date()
)

select * from renamed
order by order_id
