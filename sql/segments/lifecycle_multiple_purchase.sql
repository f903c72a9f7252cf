-- name: Lifecycle: multiple purchase
-- description: Three or more purchases, not yet loyal: deepen the relationship.
-- owner: crm-marketing
select customer_id, lifecycle_stage, first_purchase_date, last_purchase_date, frequency
from customer_view
where lifecycle_stage = 'multiple_purchase'
