-- The garden centre buys no demographic data: the vendor role of the staging contract is empty
-- (docs/staging-contract.md), so the shipped models find it and see nobody.
select
    cast(null as varchar)   as record_id,
    cast(null as varchar)   as source_system,
    cast(null as varchar)   as source_customer_id,
    cast(null as varchar)   as first_name,
    cast(null as varchar)   as last_name,
    cast(null as varchar)   as street,
    cast(null as varchar)   as postcode,
    cast(null as varchar)   as city,
    cast(null as varchar)   as phone,
    cast(null as varchar)   as email_normalised,
    cast(null as date)      as birth_date,
    cast(null as boolean)   as is_opted_out,
    cast(null as varchar)   as email_consent,
    cast(null as varchar)   as phone_consent,
    cast(null as varchar)   as post_consent,
    cast(null as varchar)   as ads_consent,
    cast(null as date)      as consent_date,
    cast(null as boolean)   as consent_can_grant,
    cast(null as date)      as created_date,
    cast(null as varchar)   as age_band,
    cast(null as varchar)   as income_band,
    cast(null as bigint)    as household_size,
    cast(null as varchar)   as home_ownership,
    cast(null as varchar)   as lifestyle_segment,
    cast(null as boolean)   as is_business,
    cast(null as varchar)   as industry,
    cast(null as varchar)   as employee_band
from (values (1)) as nothing(x)
where false
