-- Every person record of every source in one shape: the CRM, the web shop, the data vendor's
-- append, the campaign tool's contacts and the service desk's requesters. They share no key;
-- the identity step decides which are the same person.
--
-- source_system is the business's own name for the system a record came from (the staging model
-- says it; the job's [identity] trust ranks them); source_role is which of the five record-level
-- staging models of the staging contract it came through (docs/staging-contract.md), so the marts
-- need no source names: a business whose systems are a POS, an e-shop and a loyalty app keeps
-- its names.
--
-- test: unique(record_id)
-- test: not_null(source_system)
-- test: accepted_values(source_role, 'crm', 'web', 'vendor', 'campaign', 'service')
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
    select record_id, source_system, 'crm' as source_role, source_customer_id, first_name, last_name,
           street, postcode, city, phone, email_normalised, birth_date, is_opted_out, created_date
    from crm
    union all
    select record_id, source_system, 'web' as source_role, source_customer_id, first_name, last_name,
           street, postcode, city, phone, email_normalised, birth_date, is_opted_out, created_date
    from web
    union all
    select record_id, source_system, 'vendor' as source_role, source_customer_id, first_name, last_name,
           street, postcode, city, phone, email_normalised, birth_date, is_opted_out, created_date
    from vendor
    union all
    select record_id, source_system, 'campaign' as source_role, source_customer_id, first_name, last_name,
           street, postcode, city, phone, email_normalised, birth_date, is_opted_out, created_date
    from campaign
    union all
    select record_id, source_system, 'service' as source_role, source_customer_id, first_name, last_name,
           street, postcode, city, phone, email_normalised, birth_date, is_opted_out, created_date
    from service
)

select * from unioned
order by record_id
