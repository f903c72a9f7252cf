-- The campaign tool's response export: one row per contact per campaign sent, with whether and
-- when the contact responded. record_id is the contact's record in int_customer_records__unioned.
--
-- test: unique(record_id, campaign_id)
-- test: not_null(record_id, campaign_id, sent_date, has_responded)
-- test: accepted_values(channel, 'email', 'direct_mail')
-- test: expression(response_date is null or response_date >= sent_date)
-- test: expression(has_responded = (response_date is not null))
with source as (
    select * from raw.campaign_responses
),

renamed as (
    select
        'campaign:' || contact_id                   as record_id,
        contact_id,
        campaign_id,
        campaign_name,
        lower(trim(channel))                        as channel,
        sent_date,
        responded                                   as has_responded,
        response_date,
        unsubscribed                                as has_unsubscribed
    from source
)

select * from renamed
order by record_id, campaign_id
