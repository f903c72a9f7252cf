-- name: RFM cannot lose them
-- description: Bought often and spent the most, but not lately (recency 1 or 2, frequency and monetary 4 or 5): personal win-back.
-- owner: crm-marketing
select customer_id, rfm_cell, recency_days, frequency, monetary_value, clv
from customer_scores
where rfm_segment = 'cannot_lose'
