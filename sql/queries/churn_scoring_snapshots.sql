-- Churn scoring snapshots: every customer who bought on or before {as_of}. A saved churn model
-- keeps this text (inside `features`) as its scoring query, so it stays as earlier artifacts have it.
-- params: as_of (date; `{as_of}` stays in the artifact's template)
-- reads: fct_orders

select b.customer_id, cast('{as_of}' as date) as _snapshot_date, 'all' as _group from (select distinct customer_id from fct_orders
         where customer_id is not null and order_date <= cast('{as_of}' as date)) b
