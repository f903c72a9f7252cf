-- name: RFM at risk
-- description: Bought often but not lately (recency 1 or 2, frequency 3 to 5): win them back before they are gone.
-- owner: crm-marketing
select customer_id, rfm_cell, recency_days, frequency, monetary_value, clv
from customer_scores
where rfm_segment = 'at_risk'
