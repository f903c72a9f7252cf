-- The demo generator's truth: the person and household behind each customer record, with record
-- ids in the form of int_customer_records__unioned. Only the demo job has it; the identity step scores itself on it.
--
-- test: unique(record_id)
-- test: not_null(record_id, person_id, household_id)
with source as (
    select * from raw.demo_truth
),

renamed as (
    select
        case source
            when 'crm_customers' then 'crm:' || record_id
            when 'web_customers' then 'web:' || record_id
            when 'vendor_demographics' then 'vendor:' || record_id
            when 'campaign_responses' then 'campaign:' || record_id
            when 'service_tickets' then 'service:' || record_id
            else source || ':' || record_id
        end                                   as record_id,
        person_id,
        household_id
    from source
)

select * from renamed
order by record_id
