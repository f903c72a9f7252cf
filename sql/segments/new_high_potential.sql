-- name: New customers with high potential
-- description: First purchase in the last 90 days and predicted CLV in the top fifth of all valued customers: welcome them well.
-- owner: crm-marketing
-- needs: clv
with ranked as (
    select customer_id, clv, ntile(5) over (order by clv, customer_id) as clv_quintile
    from customer_scores
    where clv is not null
)

select r.customer_id, v.first_purchase_date, r.clv
from ranked r
join customer_view v on v.customer_id = r.customer_id
where r.clv_quintile = 5
  and v.first_purchase_date > as_of_date() - interval '90 days'
