-- Every person record of every source in one shape: the CRM, the web shop, the data vendor's
-- append, the campaign tool's contacts and the service desk's requesters. They share no key;
-- the identity step decides which are the same person.
--
-- test: unique(record_id)
-- test: accepted_values(source_system, 'crm', 'web', 'vendor', 'campaign', 'service')
with crm as (
    select * from stg_crm__customers
),

web as (
    select * from stg_web__customers
),

vendor as (
    select * from stg_vendor__demographics
),

campaign as (
    select * from stg_campaigns__contacts
),

service as (
    select * from stg_service__requesters
),

unioned as (
    select record_id, source_system, source_customer_id, first_name, last_name, street, postcode, city,
           phone, email_normalised, birth_date, is_opted_out, created_date
    from crm
    union all
    select record_id, source_system, source_customer_id, first_name, last_name, street, postcode, city,
           phone, email_normalised, birth_date, is_opted_out, created_date
    from web
    union all
    select record_id, source_system, source_customer_id, first_name, last_name, street, postcode, city,
           phone, email_normalised, birth_date, is_opted_out, created_date
    from vendor
    union all
    select record_id, source_system, source_customer_id, first_name, last_name, street, postcode, city,
           phone, email_normalised, birth_date, is_opted_out, created_date
    from campaign
    union all
    select record_id, source_system, source_customer_id, first_name, last_name, street, postcode, city,
           phone, email_normalised, birth_date, is_opted_out, created_date
    from service
)

select * from unioned
order by record_id
