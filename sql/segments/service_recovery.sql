-- name: Service recovery
-- description: High-value customers (monetary score 4 or 5) with a complaint still open: call them before they leave.
-- owner: customer-service
select s.customer_id, v.open_complaint_count, s.rfm_cell, s.clv
from customer_scores s
join customer_view v on v.customer_id = s.customer_id
where v.open_complaint_count > 0
  and s.m_score >= 4
