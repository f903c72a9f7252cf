-- The newsletter tool's contacts, one per email address, as of its latest send.
--
-- test: unique(record_id)
-- test: not_null(record_id, source_system, is_opted_out)
with source as (
    select * from raw.newsletter_sends
),

contacts as (
    select
        lower(trim(email))                                         as email,
        bool_or(coalesce(unsubscribed, false))                     as is_opted_out,
        max(case when unsubscribed then sent_on end)               as unsubscribed_on,
        min(sent_on)                                               as first_sent,
        max(first_name)                                            as first_name,
        max(last_name)                                             as last_name,
        max(postcode)                                              as postcode
    from source
    group by lower(trim(email))
),

renamed as (
    select
        'newsletter:' || email                                     as record_id,
        'newsletter'                                               as source_system,
        email                                                      as source_customer_id,
        first_name,
        last_name,
        cast(null as varchar)                                      as street,
        postcode,
        cast(null as varchar)                                      as city,
        cast(null as varchar)                                      as phone,
        email                                                      as email_normalised,
        cast(null as date)                                         as birth_date,
        is_opted_out,
        case when is_opted_out then 'denied' end                   as email_consent,
        case when is_opted_out then 'denied' end                   as phone_consent,
        case when is_opted_out then 'denied' end                   as post_consent,
        case when is_opted_out then 'denied' end                   as ads_consent,
        unsubscribed_on                                            as consent_date,
        false                                                      as consent_can_grant,
        first_sent                                                 as created_date
    from contacts
)

select * from renamed
order by record_id
