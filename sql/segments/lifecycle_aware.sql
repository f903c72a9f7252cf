-- name: Lifecycle: aware
-- description: Known to us (a campaign contact, a service request, a data-vendor match) but never bought: convert them.
-- owner: crm-marketing
select customer_id, lifecycle_stage, first_purchase_date, last_purchase_date, frequency
from customer_view
where lifecycle_stage = 'aware'
