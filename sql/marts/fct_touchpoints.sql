-- Every contact between the business and a customer, one row per touch point: orders (by their
-- channel), campaign sends and responses (by the campaign's channel) and service tickets, with the
-- day, what it refers to (order, campaign or ticket id) and the amount for orders. Touch points of
-- records that identity resolution could not place are left out: they have no customer.
--
-- test: not_null(customer_id, touchpoint_type, channel, touch_date, reference)
-- test: accepted_values(touchpoint_type, 'order', 'campaign_contact', 'campaign_response', 'service_ticket')
-- test: accepted_values(channel, 'store', 'web', 'email', 'direct_mail', 'service')
-- test: relationships(customer_id, dim_customer.customer_id)
-- test: expression((touchpoint_type = 'order') = (amount is not null))
-- Every row is one customer's: under a memory limit a large base runs in ranges of customer ids,
-- each part joining the responses and tickets to its range's records
-- (docs/performance.md#models-in-parts). At 10 M persons under 4,096 MiB 4 parts ran out of the
-- pool and 8 did not, so a part reads fewer than the default.
-- parts: int_customer_records__matched.customer_id, 1800 rows per MiB
with records as (
    select record_id, customer_id from int_customer_records__matched
),

orders as (
    select customer_id, 'order' as touchpoint_type, channel, order_date as touch_date,
           order_id as reference, order_amount as amount
    from fct_orders
    where customer_id is not null
),

campaign_contacts as (
    select r.customer_id, 'campaign_contact' as touchpoint_type, c.channel, c.sent_date as touch_date,
           c.campaign_id as reference, cast(null as decimal(12, 2)) as amount
    from stg_campaigns__responses c
    join records r on r.record_id = c.record_id
),

campaign_responses as (
    select r.customer_id, 'campaign_response' as touchpoint_type, c.channel, c.response_date as touch_date,
           c.campaign_id as reference, cast(null as decimal(12, 2)) as amount
    from stg_campaigns__responses c
    join records r on r.record_id = c.record_id
    where c.has_responded
),

service_tickets as (
    select r.customer_id, 'service_ticket' as touchpoint_type, 'service' as channel, t.opened_date as touch_date,
           t.ticket_id as reference, cast(null as decimal(12, 2)) as amount
    from stg_service__tickets t
    join records r on r.record_id = t.record_id
),

unioned as (
    select * from orders
    union all
    select * from campaign_contacts
    union all
    select * from campaign_responses
    union all
    select * from service_tickets
)

select * from unioned
order by customer_id, touch_date, touchpoint_type, reference
