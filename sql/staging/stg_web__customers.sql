-- Web-shop accounts, one row per account: email trimmed and lower-cased; a customer without
-- recorded marketing consent counts as opted out.
--
-- test: unique(record_id)
-- test: not_null(record_id, is_opted_out)
with source as (
    select * from raw.web_customers
),

renamed as (
    select
        'web:' || web_customer_id                   as record_id,
        'web'                                       as source_system,
        web_customer_id                             as source_customer_id,
        first_name,
        last_name,
        street,
        upper(postcode)                             as postcode,
        city,
        phone,
        nullif(lower(trim(email)), '')              as email_normalised,
        birth_date,
        not coalesce(marketing_consent, false)      as is_opted_out,
        cast(created_at as date)                    as created_date
    from source
)

select * from renamed
order by record_id
