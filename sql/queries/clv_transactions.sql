-- The transactions the buy-till-you-die models fit on: every order with a customer up to
-- {as_of}, in customer, date and amount order (a total order: a customer's orders of one day come
-- in the same order whatever partition read them, so their sums are the same to the bit on every
-- run). A saved CLV model keeps this text as its scoring query.
-- params: as_of (date; `{as_of}` stays in the artifact's template)
-- reads: fct_orders

select cast(customer_id as varchar) as customer_id, cast(order_date as date) as order_date,
                cast(order_amount as double) as amount
         from fct_orders where customer_id is not null and order_date <= cast('{as_of}' as date)
         order by customer_id, order_date, amount
