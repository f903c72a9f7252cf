//! The SQL that builds classifier rows from the warehouse's marts, as of any date.
//!
//! Every row is a *snapshot*: a customer on a date (`_snapshot_date`), with a `_group` (the
//! campaign, for campaign sends) and, for training, a `label`. Features are computed from what was
//! known on the snapshot date only: orders and touch points on or before it, complaints still open
//! on it. Demographics come from `customer_view` as they are now (a data vendor's bands change
//! slowly; docs/models.md says so).
//!
//! - Churn: the customers who bought on or before the cutoff; label 1 when they do not buy again
//!   in the following `horizon_days`.
//! - Campaign propensity: one row per campaign send, as of the day before it; label 1 when the
//!   customer responded to that campaign. Scoring rows are the contactable customers today.
//!
//! The tables read: `fct_orders`, `fct_touchpoints`, `stg_service__tickets`, `customer_view`.

use chrono::NaiveDate;

/// A date literal.
fn date(d: NaiveDate) -> String {
    lit(&d.format("%Y-%m-%d").to_string())
}

/// A date literal from its text (`2025-12-31`, or `{as_of}` to be filled in later).
fn lit(text: &str) -> String {
    format!("cast('{text}' as date)")
}

fn buyers(cutoff: &str) -> String {
    format!(
        "select distinct customer_id from fct_orders
         where customer_id is not null and order_date <= {cutoff}"
    )
}

/// Churn training snapshots: buyers as of `cutoff`, labelled 1 when they do not buy again in the
/// `horizon_days` after it.
pub fn churn_snapshots(cutoff: NaiveDate, horizon_days: u32) -> String {
    let end = cutoff + chrono::Days::new(u64::from(horizon_days));
    format!(
        "select b.customer_id, {c} as _snapshot_date, 'all' as _group,
                case when l.customer_id is null then 1 else 0 end as label
         from ({buyers}) b
         left join (select distinct customer_id from fct_orders
                    where order_date > {c} and order_date <= {e}) l
           on l.customer_id = b.customer_id",
        buyers = buyers(&date(cutoff)),
        c = date(cutoff),
        e = date(end)
    )
}

/// Churn scoring snapshots: buyers as of the date `as_of` (text such as `2025-12-31`).
pub fn churn_scoring_snapshots(as_of: &str) -> String {
    format!(
        "select b.customer_id, {d} as _snapshot_date, 'all' as _group from ({buyers}) b",
        d = lit(as_of),
        buyers = buyers(&lit(as_of))
    )
}

/// Campaign-send snapshots for training: every send on or before `last_send`, as of the day
/// before it, labelled by a response to the same campaign.
pub fn propensity_training_snapshots(last_send: NaiveDate) -> String {
    format!(
        "select c.customer_id, cast(c.touch_date - interval '1 day' as date) as _snapshot_date,
                c.reference as _group,
                case when r.customer_id is null then 0 else 1 end as label
         from (select distinct customer_id, reference, touch_date from fct_touchpoints
               where touchpoint_type = 'campaign_contact' and touch_date <= {}) c
         left join (select distinct customer_id, reference from fct_touchpoints
                    where touchpoint_type = 'campaign_response') r
           on r.customer_id = c.customer_id and r.reference = c.reference",
        date(last_send)
    )
}

/// Scoring snapshots for the next campaign: every customer who has not opted out and can be
/// reached (a valid email or phone, or a postal address), as of the date `as_of` (text).
pub fn propensity_scoring_snapshots(as_of: &str) -> String {
    format!(
        "select customer_id, {} as _snapshot_date, 'next' as _group from customer_view
         where not coalesce(is_opted_out, false)
           and (coalesce(has_valid_email, false) or coalesce(has_valid_phone, false)
                or coalesce(has_postal_address, false))",
        lit(as_of)
    )
}

/// The feature query around `snapshots` (a query returning `customer_id`, `_snapshot_date`,
/// `_group` and optionally `label`). Rows come out in customer, date and group order.
pub fn features(snapshots: &str) -> String {
    format!(
        r#"with snapshots as (
{snapshots}
),

keys as (
    select distinct customer_id, _snapshot_date from snapshots
),

orders as (
    select k.customer_id, k._snapshot_date,
           cast(k._snapshot_date - o.order_date as bigint) as days_ago,
           cast(o.order_amount as double) as amount,
           o.channel
    from keys k
    join fct_orders o on o.customer_id = k.customer_id and o.order_date <= k._snapshot_date
),

order_features as (
    select customer_id, _snapshot_date,
           count(*)                                                as orders,
           count(distinct days_ago)                                as purchase_days,
           sum(amount)                                             as total_spend,
           avg(amount)                                             as mean_order_value,
           min(days_ago)                                           as days_since_last_order,
           max(days_ago)                                           as days_since_first_order,
           sum(case when days_ago < 90 then 1 else 0 end)          as orders_last_90_days,
           sum(case when days_ago < 365 then 1 else 0 end)         as orders_last_365_days,
           sum(case when days_ago < 365 then amount else 0 end)    as spend_last_365_days,
           avg(case when channel = 'web' then 1.0 else 0.0 end)    as web_order_share
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
order by s.customer_id, s._snapshot_date, s._group"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn churn_labels_look_one_horizon_ahead() {
        let Some(d) = NaiveDate::from_ymd_opt(2025, 7, 4) else {
            unreachable!()
        };
        let sql = churn_snapshots(d, 90);
        assert!(sql.contains("order_date > cast('2025-07-04' as date)"));
        assert!(sql.contains("order_date <= cast('2025-10-02' as date)"));
        assert!(!churn_scoring_snapshots("2025-07-04").contains("label"));
        assert!(features(&sql).starts_with("with snapshots as (\nselect b.customer_id"));
    }
}
