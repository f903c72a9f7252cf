-- One row per newsletter sent: an opened newsletter counts as a response.
--
-- test: not_null(record_id, contact_id, campaign_id, sent_date, has_responded)
with source as (
    select * from raw.newsletter_sends
),

renamed as (
    select
        'newsletter:' || lower(trim(email))                        as record_id,
        lower(trim(email))                                         as contact_id,
        campaign                                                   as campaign_id,
        campaign                                                   as campaign_name,
        'email'                                                    as channel,
        sent_on                                                    as sent_date,
        opened                                                     as has_responded,
        case when opened then sent_on end                          as response_date,
        coalesce(unsubscribed, false)                              as has_unsubscribed
    from source
    where sent_on <= as_of_date()
)

select * from renamed
order by record_id, campaign_id
