-- name: RFM hibernating
-- description: One or two purchases a while ago (recency 2 or 3, frequency 1 or 2): low-cost reactivation.
-- owner: crm-marketing
select customer_id, rfm_cell, recency_days, frequency, monetary_value, clv
from customer_scores
where rfm_segment = 'hibernating'
