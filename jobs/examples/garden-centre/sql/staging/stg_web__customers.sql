-- The online shop's accounts. The shop's marketing box covers email and ads; unticked, it is a
-- denial of every channel (the shop's terms say so).
--
-- test: unique(record_id)
-- test: not_null(record_id, source_system, is_opted_out)
with source as (
    select * from raw.shop_accounts
),

renamed as (
    select
        'shop:' || shop_id                                         as record_id,
        'shop'                                                     as source_system,
        shop_id                                                    as source_customer_id,
        first_name,
        last_name,
        street,
        lpad(postcode, 4, '0')                                     as postcode,
        city,
        phone,
        nullif(lower(trim(email)), '')                             as email_normalised,
        cast(null as date)                                         as birth_date,
        not coalesce(accepts_marketing, false)                     as is_opted_out,
        case when accepts_marketing then 'granted' else 'denied' end as email_consent,
        case when accepts_marketing then null else 'denied' end    as phone_consent,
        case when accepts_marketing then null else 'denied' end    as post_consent,
        case when accepts_marketing then 'granted' else 'denied' end as ads_consent,
        cast(created_at as date)                                   as consent_date,
        false                                                      as consent_can_grant,
        cast(created_at as date)                                   as created_date
    from source
)

select * from renamed
order by record_id
