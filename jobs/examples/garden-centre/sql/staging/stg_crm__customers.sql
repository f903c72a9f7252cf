-- The loyalty scheme's members (the point of sale): the customer master of the garden centre.
-- The name comes in one field (`Aroha Ngata`, `Mere Te Huia`): the first word is the first name,
-- the rest the surname. A member who ticked no to marketing is opted out of every channel.
--
-- test: unique(record_id)
-- test: not_null(record_id, source_system, is_opted_out)
with source as (
    select * from raw.pos_members
),

renamed as (
    select
        'pos:' || card_no                                          as record_id,
        'pos'                                                      as source_system,
        card_no                                                    as source_customer_id,
        split_part(trim(full_name), ' ', 1)                        as first_name,
        nullif(trim(substr(trim(full_name), strpos(trim(full_name), ' ') + 1)), trim(full_name)) as last_name,
        address_1                                                  as street,
        postcode,
        city,
        phone,
        nullif(lower(trim(email)), '')                             as email_normalised,
        dob                                                        as birth_date,
        not marketing                                              as is_opted_out,
        case when marketing then 'granted' else 'denied' end       as email_consent,
        case when marketing then null else 'denied' end            as phone_consent,
        case when marketing then null else 'denied' end            as post_consent,
        case when marketing then null else 'denied' end            as ads_consent,
        joined                                                     as consent_date,
        false                                                      as consent_can_grant,
        joined                                                     as created_date,
        false                                                      as is_account_closed
    from source
)

select * from renamed
order by record_id
