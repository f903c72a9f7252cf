-- Every customer record with its customer_id. The ids come from identity resolution (the identity
-- step writes int_customer_identity: standardised names, addresses, phones, emails and dates of
-- birth compared with Fellegi-Sunter weights, see docs/identity.md); records it put together share
-- one customer_id, which stays the same from run to run.
--
-- test: unique(record_id)
-- test: not_null(customer_id, record_id)
-- Every row is one record and its one customer: under a memory limit a large base runs in ranges
-- of customer ids, each part joining the records to its range's identities
-- (docs/performance.md#models-in-parts). At 10 M persons under 4,096 MiB 3 parts ran out of the
-- pool and 6 held 2.7 GiB resident, so a part reads fewer than the default.
-- parts: int_customer_identity.customer_id, 1200 rows per MiB
with records as (
    select * from int_customer_records__unioned
),

identities as (
    select * from int_customer_identity
),

matched as (
    select
        i.customer_id,
        r.record_id,
        r.source_system,
        r.source_role,
        r.source_customer_id,
        r.first_name,
        r.last_name,
        r.street,
        r.postcode,
        r.city,
        r.phone,
        r.email_normalised,
        r.birth_date,
        r.is_opted_out,
        r.created_date,
        i.cluster_size,
        i.household_id
    from records r
    join identities i on i.record_id = r.record_id
)

select * from matched
order by customer_id, record_id
