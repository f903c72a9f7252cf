-- name: Best customers who stopped buying
-- description: High-value customers (frequency and monetary quintiles 4 or 5) whose P(alive) has fallen below one half, or whose time since the last purchase is more than twice their own usual interval between purchases: win them back before they are gone.
-- owner: crm-marketing
with usual as (
    select customer_id,
           cast(cast(last_purchase_date - first_purchase_date as bigint) as double) / (frequency - 1) as usual_interval_days
    from customer_view
    where frequency > 1
)

select
    s.customer_id,
    s.rfm_cell,
    s.recency_days,
    s.frequency,
    s.monetary_value,
    s.p_alive,
    round(u.usual_interval_days, 1) as usual_interval_days,
    s.clv
from customer_scores s
left join usual u on u.customer_id = s.customer_id
where s.f_score >= 4
  and s.m_score >= 4
  and (s.p_alive < 0.5 or s.recency_days > 2 * u.usual_interval_days)
