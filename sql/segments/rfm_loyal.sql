-- name: RFM loyal customers
-- description: Buy regularly (frequency 3 to 5, recency 3 to 5): upsell and enrol in the loyalty programme.
-- owner: crm-marketing
select customer_id, rfm_cell, recency_days, frequency, monetary_value, clv
from customer_scores
where rfm_segment = 'loyal'
