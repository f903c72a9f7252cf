-- Web-shop accounts, one row per account: email trimmed and lower-cased; a customer without
-- recorded marketing consent counts as opted out. Consent: the shop's marketing box covers email
-- and ads (ticked: granted; not ticked or not recorded: denied, and then post and phone too, as
-- the opt-out has always stopped every channel); it says nothing of post and phone when ticked.
--
-- test: unique(record_id)
-- test: not_null(record_id, is_opted_out)
with source as (
    select * from raw.web_customers
),

renamed as (
    select
        'web:' || web_customer_id                   as record_id,
        'web'                                       as source_system,
        web_customer_id                             as source_customer_id,
        first_name,
        last_name,
        street,
        upper(postcode)                             as postcode,
        city,
        phone,
        nullif(lower(trim(email)), '')              as email_normalised,
        birth_date,
        not coalesce(marketing_consent, false)      as is_opted_out,
        case when marketing_consent then 'granted' else 'denied' end as email_consent,
        case when marketing_consent then null else 'denied' end as phone_consent,
        case when marketing_consent then null else 'denied' end as post_consent,
        case when marketing_consent then 'granted' else 'denied' end as ads_consent,
        cast(created_at as date)                    as consent_date,
        false                                       as consent_can_grant,
        cast(created_at as date)                    as created_date
    from source
)

select * from renamed
order by record_id
