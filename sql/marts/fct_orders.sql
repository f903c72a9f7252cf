-- Every order from every channel, linked to its customer, with its amount in the reporting
-- currency (the job's reporting_currency). An order paid in another currency keeps that currency
-- and its original amount, and order_amount is converted at the latest rate of
-- stg_finance__exchange_rates valid on the order date (or the currency's undated rate); an order
-- in a currency without any rate fails the data test below, naming it, rather than counting as
-- nothing. An order whose customer record is unknown (for example quarantined) keeps an empty
-- customer_id rather than being dropped, so totals reconcile with the sources.
--
-- test: unique(order_id)
-- test: accepted_values(channel, 'store', 'web')
-- test: expression(original_amount >= 0)
-- test: expression(currency = reporting_currency() or exchange_rate is not null)
-- test: relationships(customer_id, dim_customer.customer_id)
-- Every row is one order of one customer record: under a memory limit a large base runs in ranges
-- of record ids (docs/performance.md#models-in-parts), each part joining its records' orders to
-- their customers (the exchange rates are read whole by every part), so the rows are ordered by
-- record first. At 1 M persons under 410 MiB 16 parts of 388,000 keyed rows were needed.
-- parts: int_customer_records__matched.record_id, 1000 rows per MiB
with orders as (
    select order_id, record_id, channel, order_date, quantity, order_amount,
           coalesce(currency, reporting_currency()) as currency
    from stg_legacy__orders
    union all
    select order_id, record_id, channel, order_date, quantity, order_amount,
           coalesce(currency, reporting_currency()) as currency
    from stg_web__orders
),

foreign_orders as (
    select order_id, currency, order_date
    from orders
    where currency is distinct from reporting_currency()
),

-- Each foreign order takes the latest dated rate of its currency on or before its date: rates and
-- orders in one stream per currency, a rate before the orders of its own day.
rate_events as (
    select currency, valid_from as event_date, 0 as event_kind, rate, cast(null as varchar) as order_id
    from stg_finance__exchange_rates
    where valid_from is not null
    union all
    select currency, order_date, 1, cast(null as decimal(18, 8)), order_id
    from foreign_orders
),

dated_rates as (
    select order_id, rate
    from (
        select
            order_id,
            last_value(rate) ignore nulls over (
                partition by currency order by event_date, event_kind
                rows between unbounded preceding and current row
            ) as rate
        from rate_events
    )
    where order_id is not null
),

undated_rates as (
    select currency, max(rate) as rate
    from stg_finance__exchange_rates
    where valid_from is null
    group by currency
),

order_rates as (
    select f.order_id, coalesce(d.rate, u.rate) as rate
    from foreign_orders f
    left join dated_rates d on d.order_id = f.order_id
    left join undated_rates u on u.currency = f.currency
),

records as (
    select record_id, customer_id from int_customer_records__matched
)

select
    o.order_id,
    r.customer_id,
    o.record_id,
    o.channel,
    o.order_date,
    o.quantity,
    case
        when x.order_id is null then o.order_amount
        else cast(o.order_amount * x.rate as decimal(12, 2))
    end                                                        as order_amount,
    o.currency,
    o.order_amount                                             as original_amount,
    case
        when x.order_id is null then cast(1 as decimal(18, 8))
        else x.rate
    end                                                        as exchange_rate,
    r.customer_id is not null                                  as has_known_customer
from orders o
left join order_rates x on x.order_id = o.order_id
left join records r on r.record_id = o.record_id
order by o.record_id, o.order_id
