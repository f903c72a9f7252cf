-- The transactions the buy-till-you-die models fit on: every order with a customer up to
-- {as_of}, in customer and date order. A saved CLV model keeps this text as its scoring query.
-- params: as_of (date; `{as_of}` stays in the artifact's template)
-- reads: fct_orders

select cast(customer_id as varchar) as customer_id, cast(order_date as date) as order_date,
                cast(order_amount as double) as amount
         from fct_orders where customer_id is not null and order_date <= cast('{as_of}' as date)
         order by customer_id, order_date
