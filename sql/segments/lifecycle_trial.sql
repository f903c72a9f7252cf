-- name: Lifecycle: trial
-- description: One purchase so far: the second purchase is the one that matters.
-- owner: crm-marketing
select customer_id, lifecycle_stage, first_purchase_date, last_purchase_date, frequency
from customer_view
where lifecycle_stage = 'trial'
