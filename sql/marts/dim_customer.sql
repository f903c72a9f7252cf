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
-- Every row is made from one customer's records: under a memory limit a large base runs in ranges
-- of customer ids (docs/performance.md#models-in-parts). Its text picks per customer are held
-- outside the memory pool (5.5 GiB resident in 2 parts of 14.5 M records at 10 M persons), so a
-- part reads fewer records than the default.
-- parts: int_customer_records__matched.customer_id, 1400 rows per MiB
with records as (
    select
        *,
        source_trust_rank(source_system) as source_trust_rank
    from int_customer_records__matched
),

-- Each rule's order written as text that sorts the same way: fixed-width digits, then the record
-- id (unique). The least of a customer's keys is then the record the rule picks, found by one
-- aggregation instead of a window sorting the records once per rule (four times as slow at a
-- million customers). trust_key: the source's trust rank; newest_key: the most recent
-- created_date first, no date last.
keyed as (
    select
        customer_id,
        record_id,
        street,
        email_normalised,
        phone,
        lpad(cast(source_trust_rank as varchar), 6, '0') as trust_key,
        case
            when created_date is null then '10000000'
            else '0' || lpad(cast(3000000 - cast(created_date - date '1970-01-01' as bigint) as varchar), 7, '0')
        end as newest_key
    from records
),

-- The record each rule picks: names by trust, then the most recent; address, email and phone the
-- most recent that has one (or the most recent, when none has), then by trust. The record id
-- starts after the 14 or 15 characters of the key before it.
picks as (
    select
        customer_id,
        substr(min(trust_key || newest_key || record_id), 15) as name_record,
        substr(min(case when street is null then '1' else '0' end
                   || newest_key || trust_key || record_id), 16) as address_record,
        substr(min(case when email_normalised is null then '1' else '0' end
                   || newest_key || trust_key || record_id), 16) as email_record,
        substr(min(case when phone is null then '1' else '0' end
                   || newest_key || trust_key || record_id), 16) as phone_record
    from keyed
    group by customer_id
),

chosen as (
    select
        r.customer_id,
        max(case when r.record_id = p.name_record then r.first_name end)        as first_name,
        max(case when r.record_id = p.name_record then r.last_name end)         as last_name,
        max(case when r.record_id = p.address_record then r.street end)         as street,
        max(case when r.record_id = p.address_record then r.postcode end)       as postcode,
        max(case when r.record_id = p.address_record then r.city end)           as city,
        max(case when r.record_id = p.email_record then r.email_normalised end) as email,
        max(case when r.record_id = p.phone_record then r.phone end)            as phone
    from records r
    join picks p on p.customer_id = r.customer_id
    where r.record_id in (p.name_record, p.address_record, p.email_record, p.phone_record)
    group by r.customer_id
),

-- The most frequent birth date, then the most trusted, then the earliest: the least key of
-- (a billion minus the count, trust rank, the date as YYYY-MM-DD).
birth_date_counts as (
    select
        customer_id,
        lpad(cast(1000000000 - count(*) as varchar), 10, '0')
            || lpad(cast(min(source_trust_rank) as varchar), 6, '0')
            || cast(birth_date as varchar) as birth_date_key
    from records
    where birth_date is not null
    group by customer_id, birth_date
),

birth_dates as (
    select customer_id, cast(substr(min(birth_date_key), 17) as date) as birth_date
    from birth_date_counts
    group by customer_id
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
        c.first_name,
        c.last_name,
        c.email,
        c.phone,
        c.street,
        c.postcode,
        c.city,
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
    join chosen c on c.customer_id = l.customer_id
    left join birth_dates b on b.customer_id = l.customer_id
    where l.has_own_record
)

select
    *,
    coalesce(regexp_like(email, '^[^@\s]+@[^@\s]+\.[^@\s]+$'), false)                as has_valid_email,
    coalesce(length(regexp_replace(phone, '[^0-9]', '', 'g')) between 8 and 15, false) as has_valid_phone,
    street is not null and postcode is not null                                      as has_postal_address
from survived
order by customer_id
