-- One row per customer (customer_id from identity resolution), each attribute chosen from the
-- customer's linked records by its survivorship rule:
--
--   column                      rule
--   first_name, last_name       most trusted source (the job's [identity] trust, read through
--                               source_trust_rank(); the demo's: CRM, web shop, service desk,
--                               campaign tool, data vendor: the CRM is keyed by staff), then the
--                               most recent
--   street, postcode, city      most recent record with a street (the address moves as one unit)
--   email                       most recent record with an email
--   phone                       most recent record with a phone
--   birth_date                  most frequent value among the records; on a tie the most trusted
--
-- "Most recent" is by created_date, then the most trusted source, then record_id, so the choice is
-- the same every run. Only people with a record of the business's own (anything but the data
-- vendor's append, source_role 'vendor') are customers: a vendor record that matched nobody is not. Contactability: a valid email (local@domain.tld), a phone of 8 to 15 digits,
-- a postal address (street and postcode). Consent: a customer is opted out if any linked record
-- opted out. household_id: the customers who share a home (an address, a landline or an email),
-- grouped by the identity step (docs/identity.md#households).
--
-- test: unique(customer_id)
-- test: not_null(customer_id, household_id, is_opted_out, source_record_count)
-- test: expression(source_record_count >= 1)
with records as (
    select
        *,
        source_trust_rank(source_system) as source_trust_rank
    from int_customer_records__matched
),

ranked as (
    select
        *,
        row_number() over (
            partition by customer_id
            order by source_trust_rank, created_date desc nulls last, record_id
        ) as trust_rank,
        row_number() over (
            partition by customer_id
            order by case when street is null then 1 else 0 end, created_date desc nulls last,
                     source_trust_rank, record_id
        ) as address_rank,
        row_number() over (
            partition by customer_id
            order by case when email_normalised is null then 1 else 0 end, created_date desc nulls last,
                     source_trust_rank, record_id
        ) as email_rank,
        row_number() over (
            partition by customer_id
            order by case when phone is null then 1 else 0 end, created_date desc nulls last,
                     source_trust_rank, record_id
        ) as phone_rank
    from records
),

birth_dates as (
    select
        customer_id,
        birth_date,
        row_number() over (
            partition by customer_id
            order by count(*) desc, min(source_trust_rank), birth_date
        ) as birth_date_rank
    from records
    where birth_date is not null
    group by customer_id, birth_date
),

names as (
    select customer_id, first_name, last_name from ranked where trust_rank = 1
),

addresses as (
    select customer_id, street, postcode, city from ranked where address_rank = 1
),

emails as (
    select customer_id, email_normalised as email from ranked where email_rank = 1
),

phones as (
    select customer_id, phone from ranked where phone_rank = 1
),

linked as (
    select
        customer_id,
        bool_or(is_opted_out)                                           as is_opted_out,
        count(*)                                                        as source_record_count,
        bool_or(source_role = 'crm')                                    as has_crm_record,
        bool_or(source_role = 'web')                                    as has_web_record,
        bool_or(source_role = 'vendor')                                 as has_vendor_record,
        bool_or(source_role = 'campaign')                               as has_campaign_record,
        bool_or(source_role = 'service')                                as has_service_record,
        bool_or(source_role <> 'vendor')                                as has_own_record,
        min(created_date)                                               as first_seen_date,
        -- Every record of a customer is in the customer's household.
        min(household_id)                                               as household_id
    from records
    group by customer_id
),

survived as (
    select
        l.customer_id,
        l.household_id,
        n.first_name,
        n.last_name,
        e.email,
        p.phone,
        a.street,
        a.postcode,
        a.city,
        b.birth_date,
        l.is_opted_out,
        l.source_record_count,
        l.has_crm_record,
        l.has_web_record,
        l.has_vendor_record,
        l.has_campaign_record,
        l.has_service_record,
        l.first_seen_date
    from linked l
    join names n on n.customer_id = l.customer_id
    join addresses a on a.customer_id = l.customer_id
    join emails e on e.customer_id = l.customer_id
    join phones p on p.customer_id = l.customer_id
    left join birth_dates b on b.customer_id = l.customer_id and b.birth_date_rank = 1
    where l.has_own_record
)

select
    *,
    coalesce(regexp_like(email, '^[^@\s]+@[^@\s]+\.[^@\s]+$'), false)                as has_valid_email,
    coalesce(length(regexp_replace(phone, '[^0-9]', '', 'g')) between 8 and 15, false) as has_valid_phone,
    street is not null and postcode is not null                                      as has_postal_address
from survived
order by customer_id
