-- Every order from every channel, in one currency (GBP), linked to its customer. An order whose
-- customer record is unknown (for example quarantined) keeps an empty customer_id rather than being
-- dropped, so totals reconcile with the sources.
--
-- test: unique(order_id)
-- test: accepted_values(channel, 'store', 'web')
-- test: expression(order_amount >= 0)
-- test: relationships(customer_id, dim_customer.customer_id)
with orders as (
    select order_id, record_id, channel, order_date, quantity, order_amount from stg_legacy__orders
    union all
    select order_id, record_id, channel, order_date, quantity, order_amount from stg_web__orders
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
    o.order_amount,
    r.customer_id is not null as has_known_customer
from orders o
left join records r on r.record_id = o.record_id
order by o.order_id
