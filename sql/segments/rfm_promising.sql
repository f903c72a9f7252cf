-- name: RFM promising
-- description: Recent buyers with a second purchase (recency 4 or 5, frequency 2): build the habit.
-- owner: crm-marketing
select customer_id, rfm_cell, recency_days, frequency, monetary_value, clv
from customer_scores
where rfm_segment = 'promising'
