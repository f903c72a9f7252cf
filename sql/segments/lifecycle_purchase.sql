-- name: Lifecycle: purchase
-- description: Two purchases: make buying a habit.
-- owner: crm-marketing
select customer_id, lifecycle_stage, first_purchase_date, last_purchase_date, frequency
from customer_view
where lifecycle_stage = 'purchase'
