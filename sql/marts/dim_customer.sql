-- One row per customer: the surviving attributes (the CRM record first, then the most recently
-- created), the first email and phone found in any linked record, and consent: a customer is opted
-- out if any linked record opted out.
with records as (
    select * from int_customer_records__matched
),

ranked as (
    select
        *,
        row_number() over (
            partition by customer_id
            order by case source_system when 'crm' then 0 else 1 end, created_date desc nulls last, record_id
        ) as survivorship_rank
    from records
),

survivors as (
    select customer_id, first_name, last_name, street, postcode, city, phone, email_normalised, birth_date
    from ranked
    where survivorship_rank = 1
),

linked as (
    select
        customer_id,
        bool_or(is_opted_out)                                           as is_opted_out,
        count(*)                                                        as source_record_count,
        bool_or(source_system = 'crm')                                  as has_crm_record,
        bool_or(source_system = 'web')                                  as has_web_record,
        min(created_date)                                               as first_seen_date,
        min(email_normalised)                                           as any_email,
        min(phone)                                                      as any_phone
    from records
    group by customer_id
)

select
    s.customer_id,
    s.first_name,
    s.last_name,
    coalesce(s.email_normalised, l.any_email)       as email,
    coalesce(s.phone, l.any_phone)                  as phone,
    s.street,
    s.postcode,
    s.city,
    s.birth_date,
    l.is_opted_out,
    l.source_record_count,
    l.has_crm_record,
    l.has_web_record,
    l.first_seen_date
from survivors s
join linked l on l.customer_id = s.customer_id
order by s.customer_id
