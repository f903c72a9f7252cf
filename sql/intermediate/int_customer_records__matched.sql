-- Assigns each record its customer_id. Records that share a normalised email are one customer;
-- a record without email is a customer of its own. The customer_id is derived from the first record
-- (by record_id) of the customer, so it stays the same from run to run while that record exists.
with records as (
    select * from int_customer_records__unioned
),

keyed as (
    select
        *,
        case
            when email_normalised is not null then 'email:' || email_normalised
            else 'record:' || record_id
        end as match_key
    from records
),

anchored as (
    select
        *,
        min(record_id) over (partition by match_key) as anchor_record_id
    from keyed
)

select
    'C' || left(md5(anchor_record_id), 16) as customer_id,
    record_id,
    source_system,
    source_customer_id,
    first_name,
    last_name,
    street,
    postcode,
    city,
    phone,
    email_normalised,
    birth_date,
    is_opted_out,
    created_date,
    match_key
from anchored
order by customer_id, record_id
