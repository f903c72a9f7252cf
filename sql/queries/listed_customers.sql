-- The customers a global suppression list reaches: every customer holding, on any of their records,
-- an email or phone that the job's suppression lists hold (not only the customer view's surviving
-- email and phone: a person listed under their other email is found through it).
-- params: none
-- reads: int_customer_contacts, suppression_list

select distinct c.customer_id
from int_customer_contacts c
join suppression_list s on s.kind = c.contact_kind and s.value = c.contact_key
order by c.customer_id
