-- Legacy order log (CDNOW layout), one row per order line up to the as-of date. The order id is
-- the log file's name and the line, as the log has none of its own: unique across the monthly
-- files of a landing folder, and the same on every rerun of the same files. The stores take
-- the reporting currency only.
--
-- test: unique(order_id)
-- test: not_null(order_id, record_id, order_date, order_amount)
with source as (
    select * from raw.legacy_orders
),

renamed as (
    select
        'legacy:' || regexp_replace(_file, '^.*/', '') || ':' || cast(_line as varchar) as order_id,
        'crm:' || customer_no                                       as record_id,
        'store'                                                     as channel,
        order_date,
        quantity,
        amount                                                      as order_amount,
        reporting_currency()                                        as currency
    from source
    where order_date <= as_of_date()
)

select * from renamed
order by order_id
