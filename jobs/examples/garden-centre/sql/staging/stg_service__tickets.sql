-- No service desk yet: no tickets (docs/staging-contract.md).
select
    cast(null as varchar)                  as ticket_id,
    cast(null as varchar)                  as record_id,
    cast(null as timestamp with time zone) as opened_at,
    cast(null as timestamp with time zone) as closed_at,
    cast(null as date)                     as opened_date,
    cast(null as date)                     as closed_date,
    cast(null as varchar)                  as category,
    cast(null as varchar)                  as status,
    cast(null as varchar)                  as subject
from (values (1)) as nothing(x)
where false
