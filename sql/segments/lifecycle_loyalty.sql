-- name: Lifecycle: loyalty
-- description: A customer for a year or more who bought in at least three of the last four quarters: keep them.
-- owner: crm-marketing
select customer_id, lifecycle_stage, first_purchase_date, last_purchase_date, frequency
from customer_view
where lifecycle_stage = 'loyalty'
