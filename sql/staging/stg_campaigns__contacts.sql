-- The campaign tool's contacts, one row per contact (its own contact_id, no key of ours), from
-- the response export: the most recent name, email and postcode; opted out once unsubscribed from
-- any campaign; known since the first send. Consent: an unsubscribe denies every channel (as the
-- opt-out always has), stated on the send it answered; the tool says nothing otherwise.
--
-- test: unique(record_id)
-- test: not_null(record_id, is_opted_out)
with source as (
    select * from raw.campaign_responses
),

-- Each contact's most recent response: the row whose predecessor, in one ordering of every
-- response by contact and then newest first, is another contact's. lag() over one ordering
-- streams, where row_number() partitioned by contact keeps state for each of the contacts.
ranked as (
    select
        *,
        lag(contact_id) over (order by contact_id, sent_date desc, campaign_id desc) as previous_contact_id
    from source
),

latest as (
    select * from ranked
    where previous_contact_id is null or previous_contact_id <> contact_id
),

contacts as (
    select
        contact_id,
        bool_or(unsubscribed)                       as is_opted_out,
        max(case when unsubscribed then sent_date end) as unsubscribed_date,
        min(sent_date)                              as created_date
    from source
    group by contact_id
),

renamed as (
    select
        'campaign:' || r.contact_id                 as record_id,
        'campaign'                                  as source_system,
        r.contact_id                                as source_customer_id,
        r.first_name,
        r.last_name,
        cast(null as varchar)                       as street,
        upper(r.postcode)                           as postcode,
        cast(null as varchar)                       as city,
        cast(null as varchar)                       as phone,
        nullif(lower(trim(r.email)), '')            as email_normalised,
        cast(null as date)                          as birth_date,
        c.is_opted_out,
        case when c.is_opted_out then 'denied' end  as email_consent,
        case when c.is_opted_out then 'denied' end  as phone_consent,
        case when c.is_opted_out then 'denied' end  as post_consent,
        case when c.is_opted_out then 'denied' end  as ads_consent,
        c.unsubscribed_date                         as consent_date,
        false                                       as consent_can_grant,
        c.created_date
    from latest r
    join contacts c on c.contact_id = r.contact_id
)

select * from renamed
order by record_id
