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
-- birth_years is what identity resolution knows of the year of birth: the year of birth_date
-- (`1965`), or for the data vendor, who gives an age band on the as-of date, the years it spans
-- (`1961-1970`): a vendor record of a parent is then told from one of a child of the same initial.
-- A year more than 110 years back or in the future is a placeholder (19000101), not a year.
--
-- test: unique(record_id)
-- test: expression(birth_years is null or length(birth_years) in (4, 9))
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

-- age_band is the vendor's; the other sources have none.
unioned as (
    select record_id, source_system, 'crm' as source_role, source_customer_id, first_name, last_name,
           street, postcode, city, phone, email_normalised, birth_date, is_opted_out, created_date,
           cast(null as varchar) as age_band
    from crm
    union all
    select record_id, source_system, 'web' as source_role, source_customer_id, first_name, last_name,
           street, postcode, city, phone, email_normalised, birth_date, is_opted_out, created_date,
           cast(null as varchar) as age_band
    from web
    union all
    select record_id, source_system, 'vendor' as source_role, source_customer_id, first_name, last_name,
           street, postcode, city, phone, email_normalised, birth_date, is_opted_out, created_date,
           age_band
    from vendor
    union all
    select record_id, source_system, 'campaign' as source_role, source_customer_id, first_name, last_name,
           street, postcode, city, phone, email_normalised, birth_date, is_opted_out, created_date,
           cast(null as varchar) as age_band
    from campaign
    union all
    select record_id, source_system, 'service' as source_role, source_customer_id, first_name, last_name,
           street, postcode, city, phone, email_normalised, birth_date, is_opted_out, created_date,
           cast(null as varchar) as age_band
    from service
),

dated as (
    select *, cast(date_part('year', as_of_date()) as bigint) as year_now
    from unioned
)

select record_id, source_system, source_role, source_customer_id, first_name, last_name,
       street, postcode, city, phone, email_normalised, birth_date, is_opted_out, created_date,
       coalesce(
           case
               when date_part('year', birth_date) between year_now - 110 and year_now
               then cast(cast(date_part('year', birth_date) as bigint) as varchar)
           end,
           case
               when age_band = '65+' then cast(year_now - 110 as varchar) || '-' || cast(year_now - 65 as varchar)
               when age_band like '%-%' then
                   cast(year_now - cast(split_part(age_band, '-', 2) as bigint) - 1 as varchar) || '-'
                   || cast(year_now - cast(split_part(age_band, '-', 1) as bigint) as varchar)
           end
       ) as birth_years
from dated
order by record_id
