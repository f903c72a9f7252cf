-- The data vendor's demographic append, one row per vendor record. It carries no key of ours: the
-- identity step links it to customers by name and address. Attribute codes are spelled out:
-- tenure OWNER/RENTER becomes owner/renter. The vendor says nothing of consent: every channel's
-- consent is unknown (null), and is_opted_out false only means it records no opt-out.
--
-- test: unique(record_id)
-- test: not_null(record_id, is_opted_out)
-- test: accepted_values(age_band, '18-24', '25-34', '35-44', '45-54', '55-64', '65+')
-- test: accepted_values(income_band, '<20k', '20-40k', '40-60k', '60-100k', '100k+')
-- test: accepted_values(home_ownership, 'owner', 'renter')
-- test: expression(household_size is null or household_size between 1 and 20)
with source as (
    select * from raw.vendor_demographics
),

renamed as (
    select
        'vendor:' || vendor_ref                     as record_id,
        'vendor'                                    as source_system,
        vendor_ref                                  as source_customer_id,
        first_name,
        last_name,
        street,
        upper(postcode)                             as postcode,
        city,
        cast(null as varchar)                       as phone,
        cast(null as varchar)                       as email_normalised,
        cast(null as date)                          as birth_date,
        false                                       as is_opted_out,
        cast(null as varchar)                       as email_consent,
        cast(null as varchar)                       as phone_consent,
        cast(null as varchar)                       as post_consent,
        cast(null as varchar)                       as ads_consent,
        cast(null as date)                          as consent_date,
        false                                       as consent_can_grant,
        cast(null as date)                          as created_date,
        nullif(trim(age_band), '')                  as age_band,
        nullif(trim(income_band), '')               as income_band,
        household_size,
        case upper(trim(tenure))
            when 'OWNER' then 'owner'
            when 'RENTER' then 'renter'
        end                                         as home_ownership,
        nullif(trim(lifestyle), '')                 as lifestyle_segment,
        coalesce(is_business, false)                as is_business,
        nullif(trim(industry), '')                  as industry,
        nullif(trim(employee_band), '')             as employee_band
    from source
)

select * from renamed
order by record_id
