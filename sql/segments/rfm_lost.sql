-- name: RFM lost
-- description: One or two purchases long ago (recency 1, frequency 1 or 2): leave out of paid campaigns.
-- owner: crm-marketing
select customer_id, rfm_cell, recency_days, frequency, monetary_value, clv
from customer_scores
where rfm_segment = 'lost'
