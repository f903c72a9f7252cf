-- name: Best customers who stopped buying
-- description: Customers in the top two frequency and monetary quintiles whose recency has fallen to the bottom two: win them back before they are gone.
-- owner: crm-marketing
select
    r.customer_id,
    r.rfm_cell,
    r.recency_days,
    r.frequency,
    r.monetary
from customer_rfm r
where r.f_score >= 4
  and r.m_score >= 4
  and r.r_score <= 2
