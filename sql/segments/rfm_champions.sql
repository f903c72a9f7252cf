-- name: RFM champions
-- description: Bought recently and often (recency and frequency scores 4 or 5): reward them, ask for reviews, offer early access.
-- owner: crm-marketing
select customer_id, rfm_cell, recency_days, frequency, monetary_value, clv
from customer_scores
where rfm_segment = 'champions'
