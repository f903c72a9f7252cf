-- Every customer record of every source in one shape.
--
-- test: unique(record_id)
-- test: accepted_values(source_system, 'crm', 'web')
with crm as (
    select * from stg_crm__customers
),

web as (
    select * from stg_web__customers
),

unioned as (
    select record_id, source_system, source_customer_id, first_name, last_name, street, postcode, city,
           phone, email_normalised, birth_date, is_opted_out, created_date
    from crm
    union all
    select record_id, source_system, source_customer_id, first_name, last_name, street, postcode, city,
           phone, email_normalised, birth_date, is_opted_out, created_date
    from web
)

select * from unioned
order by record_id
