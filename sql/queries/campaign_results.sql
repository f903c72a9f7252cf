-- Every campaign an earlier run sent with a control group, per group: customers, those who
-- bought within the export's response window after the send (up to {as_of}), and revenue with
-- its sum of squares for the interval.
-- params: as_of (date), window_days (an expression over a.export giving each export's response
--   window in days, e.g. `case a.export when 'mail' then 14 else 30 end`)
-- reads: history.export_audience, fct_orders

with audience as (
    select cast(as_of as date) as sent_date, export, segment, campaign_id, customer_id, "group"
    from history.export_audience
    where as_of < cast('{as_of}' as date)
      and campaign_id in (select campaign_id from history.export_audience
                          where "group" = 'control' and as_of < cast('{as_of}' as date))
),

outcome as (
    select a.campaign_id, a.export, a.segment, a.sent_date, a.customer_id, a."group",
           {window_days} as window_days,
           count(o.order_id) as orders,
           coalesce(sum(cast(o.order_amount as double)), 0) as revenue
    from audience a
    left join fct_orders o
      on o.customer_id = a.customer_id
     and o.order_date > a.sent_date
     and cast(o.order_date - a.sent_date as bigint) <= {window_days}
     and o.order_date <= cast('{as_of}' as date)
    group by a.campaign_id, a.export, a.segment, a.sent_date, a.customer_id, a."group"
)

select campaign_id, export, segment, cast(sent_date as varchar) as sent_date,
       max(window_days) as window_days, "group",
       count(*) as customers,
       sum(case when orders > 0 then 1 else 0 end) as responders,
       sum(revenue) as revenue,
       sum(revenue * revenue) as revenue_sq
from outcome
group by campaign_id, export, segment, sent_date, "group"
order by campaign_id, "group"
