-- Service desk tickets, one row per ticket. A ticket is open until it has a closing time;
-- record_id is the requester's record in int_customer_records__unioned.
--
-- test: unique(ticket_id)
-- test: not_null(ticket_id, record_id, opened_at, category)
-- test: accepted_values(status, 'open', 'resolved')
-- test: accepted_values(category, 'complaint', 'question', 'return', 'delivery')
-- test: expression(closed_at is null or closed_at >= opened_at)
-- test: expression((status = 'open') = (closed_at is null))
with source as (
    select * from raw.service_tickets
),

renamed as (
    select
        ticket_id,
        'service:' || requester_id                  as record_id,
        opened_at,
        closed_at,
        cast(opened_at as date)                     as opened_date,
        cast(closed_at as date)                     as closed_date,
        lower(trim(category))                       as category,
        lower(trim(status))                         as status,
        subject
    from source
)

select * from renamed
order by ticket_id
