-- Campaign propensity training snapshots: every campaign send on or before {last_send}, as of
-- the day before it, labelled 1 when the customer responded to that campaign.
-- params: last_send (date)
-- reads: fct_touchpoints

with sends as (
    select distinct customer_id, reference, touch_date from fct_touchpoints
    where touchpoint_type = 'campaign_contact' and touch_date <= cast('{last_send}' as date)
),

responses as (
    select distinct customer_id, reference from fct_touchpoints
    where touchpoint_type = 'campaign_response'
)

select c.customer_id, cast(c.touch_date - interval '1 day' as date) as _snapshot_date,
       c.reference as _group,
       case when r.customer_id is null then 0 else 1 end as label
from sends c
left join responses r on r.customer_id = c.customer_id and r.reference = c.reference
