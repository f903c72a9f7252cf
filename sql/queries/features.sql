-- Classifier features around {snapshots}: a query returning customer_id, _snapshot_date, _group
-- and optionally label. Every feature sees only what was known on the snapshot date: orders and
-- touch points on or before it, complaints still open on it; demographics are today's
-- (docs/models.md). No order by: the reader puts the rows in customer, date and group order
-- (FeatureTable::sort_rows), so the result streams instead of being held whole by a sort.
-- params: snapshots (a query: one of the *_snapshots queries)
-- reads: fct_orders, fct_touchpoints, stg_service__tickets, customer_view

with snapshots as (
{snapshots}
),

keys as (
    select distinct customer_id, _snapshot_date from snapshots
),

-- One row per customer and purchase day: a day's orders are one purchase day (the models count
-- purchase days, as the buy-till-you-die literature does), and the join below is over days.
daily_orders as (
    select customer_id, order_date,
           count(*) as orders,
           -- Decimal, so that sums are exact and the same whatever order partial sums merge in.
           sum(cast(order_amount as decimal(18, 2))) as amount,
           sum(case when channel = 'web' then 1 else 0 end) as web_orders
    from fct_orders
    where customer_id is not null
    group by customer_id, order_date
),

orders as (
    select k.customer_id, k._snapshot_date,
           cast(k._snapshot_date - o.order_date as bigint) as days_ago,
           o.orders, o.amount, o.web_orders
    from keys k
    join daily_orders o on o.customer_id = k.customer_id and o.order_date <= k._snapshot_date
),

order_features as (
    select customer_id, _snapshot_date,
           sum(orders)                                             as orders,
           count(*)                                                as purchase_days,
           cast(sum(amount) as double)                             as total_spend,
           cast(sum(amount) as double) / sum(orders)               as mean_order_value,
           min(days_ago)                                           as days_since_last_order,
           max(days_ago)                                           as days_since_first_order,
           sum(case when days_ago < 90 then orders else 0 end)     as orders_last_90_days,
           sum(case when days_ago < 365 then orders else 0 end)    as orders_last_365_days,
           cast(sum(case when days_ago < 365 then amount else 0 end) as double) as spend_last_365_days,
           cast(sum(web_orders) as double) / sum(orders)           as web_order_share
    from orders
    group by customer_id, _snapshot_date
),

campaigns as (
    select k.customer_id, k._snapshot_date,
           sum(case when t.touchpoint_type = 'campaign_contact' then 1 else 0 end)  as campaign_contacts,
           sum(case when t.touchpoint_type = 'campaign_response' then 1 else 0 end) as campaign_responses,
           min(case when t.touchpoint_type = 'campaign_response'
                    then cast(k._snapshot_date - t.touch_date as bigint) end)       as days_since_last_response
    from keys k
    join fct_touchpoints t on t.customer_id = k.customer_id and t.touch_date <= k._snapshot_date
    where t.touchpoint_type in ('campaign_contact', 'campaign_response')
    group by k.customer_id, k._snapshot_date
),

service as (
    select k.customer_id, k._snapshot_date,
           count(*)                                                  as service_tickets,
           sum(case when x.category = 'complaint' then 1 else 0 end) as complaints,
           sum(case when x.category = 'complaint'
                     and (x.closed_date is null or x.closed_date > k._snapshot_date)
                    then 1 else 0 end)                               as open_complaints
    from keys k
    join fct_touchpoints t on t.customer_id = k.customer_id and t.touch_date <= k._snapshot_date
                          and t.touchpoint_type = 'service_ticket'
    join stg_service__tickets x on x.ticket_id = t.reference
    group by k.customer_id, k._snapshot_date
),

attributes as (
    select customer_id, age_band, income_band, lifestyle_segment, home_ownership,
           is_business, household_size
    from customer_view
)

select
    s.*,
    coalesce(o.orders, 0)                                   as orders,
    coalesce(o.purchase_days, 0)                            as purchase_days,
    coalesce(o.total_spend, 0)                              as total_spend,
    o.mean_order_value,
    o.days_since_last_order,
    o.days_since_first_order,
    case when o.purchase_days > 1
         then cast(o.days_since_first_order - o.days_since_last_order as double) / (o.purchase_days - 1)
    end                                                     as mean_days_between_purchases,
    case when o.purchase_days > 1 and o.days_since_first_order > o.days_since_last_order
         then o.days_since_last_order * (o.purchase_days - 1)
              / cast(o.days_since_first_order - o.days_since_last_order as double)
    end                                                     as overdue_ratio,
    coalesce(o.orders_last_90_days, 0)                      as orders_last_90_days,
    coalesce(o.orders_last_365_days, 0)                     as orders_last_365_days,
    coalesce(o.spend_last_365_days, 0)                      as spend_last_365_days,
    o.web_order_share,
    coalesce(c.campaign_contacts, 0)                        as campaign_contacts,
    coalesce(c.campaign_responses, 0)                       as campaign_responses,
    c.days_since_last_response,
    coalesce(v.service_tickets, 0)                          as service_tickets,
    coalesce(v.complaints, 0)                               as complaints,
    coalesce(v.open_complaints, 0)                          as open_complaints,
    a.age_band,
    a.income_band,
    a.lifestyle_segment,
    a.home_ownership,
    a.is_business,
    a.household_size
from snapshots s
left join order_features o on o.customer_id = s.customer_id and o._snapshot_date = s._snapshot_date
left join campaigns c on c.customer_id = s.customer_id and c._snapshot_date = s._snapshot_date
left join service v on v.customer_id = s.customer_id and v._snapshot_date = s._snapshot_date
left join attributes a on a.customer_id = s.customer_id
