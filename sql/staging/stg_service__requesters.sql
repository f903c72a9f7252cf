-- The people behind service tickets, one row per requester of the service desk (its own id, no
-- key of ours): the full name split at its last space into first and last name, the most recent
-- email and phone given, known since the first ticket. The service desk says nothing of
-- consent: every channel's consent is unknown (null).
--
-- test: unique(record_id)
-- test: not_null(record_id, is_opted_out)
with source as (
    select * from raw.service_tickets
),

ranked as (
    select
        *,
        trim(requester_name)                        as full_name,
        row_number() over (partition by requester_id order by opened_at desc, ticket_id desc) as recency_rank
    from source
),

firsts as (
    select requester_id, min(cast(opened_at as date)) as created_date
    from source
    group by requester_id
),

emails as (
    select requester_id, requester_email as email,
           row_number() over (partition by requester_id order by opened_at desc, ticket_id desc) as n
    from source
    where nullif(trim(requester_email), '') is not null
),

phones as (
    select requester_id, requester_phone as phone,
           row_number() over (partition by requester_id order by opened_at desc, ticket_id desc) as n
    from source
    where nullif(trim(requester_phone), '') is not null
),

renamed as (
    select
        'service:' || r.requester_id                as record_id,
        'service'                                   as source_system,
        r.requester_id                              as source_customer_id,
        case when strpos(r.full_name, ' ') > 0
             then regexp_replace(r.full_name, '\s+\S+$', '')
        end                                         as first_name,
        regexp_replace(r.full_name, '^.*\s', '')  as last_name,
        cast(null as varchar)                       as street,
        cast(null as varchar)                       as postcode,
        cast(null as varchar)                       as city,
        p.phone,
        nullif(lower(trim(e.email)), '')            as email_normalised,
        cast(null as date)                          as birth_date,
        false                                       as is_opted_out,
        cast(null as varchar)                       as email_consent,
        cast(null as varchar)                       as phone_consent,
        cast(null as varchar)                       as post_consent,
        cast(null as varchar)                       as ads_consent,
        cast(null as date)                          as consent_date,
        false                                       as consent_can_grant,
        f.created_date
    from ranked r
    join firsts f on f.requester_id = r.requester_id
    left join emails e on e.requester_id = r.requester_id and e.n = 1
    left join phones p on p.requester_id = r.requester_id and p.n = 1
    where r.recency_rank = 1
)

select * from renamed
order by record_id
