-- Legacy CRM customers, one row per CRM customer number: names and addresses in title case,
-- email trimmed and lower-cased (empty means none), the Y/N opt-out flag as a boolean, and the
-- account status (C for closed) as is_account_closed. Consent: the CRM keeps the customer's
-- marketing preference for every channel (Y denies them all, N grants them all), stated when the
-- account was opened (the extract carries no later date); it cannot lift a denial another system
-- recorded (consent_can_grant false; docs/privacy.md).
--
-- test: unique(record_id)
-- test: not_null(record_id, source_customer_id, is_opted_out)
with source as (
    select * from raw.crm_customers
),

renamed as (
    select
        'crm:' || customer_no                 as record_id,
        'crm'                                 as source_system,
        customer_no                           as source_customer_id,
        initcap(first_name)                   as first_name,
        initcap(last_name)                    as last_name,
        initcap(street)                       as street,
        upper(postcode)                       as postcode,
        initcap(city)                         as city,
        phone,
        nullif(lower(trim(email)), '')        as email_normalised,
        birth_date,
        opt_out                               as is_opted_out,
        case when opt_out then 'denied' else 'granted' end as email_consent,
        case when opt_out then 'denied' else 'granted' end as phone_consent,
        case when opt_out then 'denied' else 'granted' end as post_consent,
        case when opt_out then 'denied' else 'granted' end as ads_consent,
        created_date                          as consent_date,
        false                                 as consent_can_grant,
        created_date,
        coalesce(upper(trim(account_status)) = 'C', false) as is_account_closed
    from source
)

select * from renamed
order by record_id
