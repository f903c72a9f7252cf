-- name: RFM new customers
-- description: First purchase recently (recency 4 or 5, frequency 1): onboard them.
-- owner: crm-marketing
select customer_id, rfm_cell, recency_days, frequency, monetary_value, clv
from customer_scores
where rfm_segment = 'new'
