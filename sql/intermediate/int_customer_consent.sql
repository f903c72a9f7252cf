-- Consent per customer and channel (email, phone, post, ads), from every record linked to the
-- customer: 'granted', 'denied' or 'unknown', with the date and source system of the statement
-- that decides it. Each record-level staging model states its source's consent per channel
-- (email_consent, phone_consent, post_consent, ads_consent: 'granted', 'denied' or null when the
-- source says nothing), the date of the statement (consent_date) and whether the source may lift
-- a denial (consent_can_grant). The rules:
--   - a denial wins over any grant;
--   - except a grant from a source declared able to grant (consent_can_grant) dated after every
--     denial (an undated denial cannot be lifted): the customer asked again (a preference
--     centre with double opt-in);
--   - a channel no linked record speaks of is 'unknown'.
-- Among the statements that count, the latest decides (a denial first on the same date). See
-- docs/privacy.md.
--
-- test: unique(customer_id, channel)
-- test: not_null(customer_id, channel, consent, statements)
-- test: accepted_values(channel, 'email', 'phone', 'post', 'ads')
-- test: accepted_values(consent, 'granted', 'denied', 'unknown')
with records as (
    select record_id, customer_id from int_customer_records__matched
),

stated as (
    select record_id, source_system, email_consent, phone_consent, post_consent, ads_consent,
           consent_date, consent_can_grant from stg_crm__customers
    union all
    select record_id, source_system, email_consent, phone_consent, post_consent, ads_consent,
           consent_date, consent_can_grant from stg_web__customers
    union all
    select record_id, source_system, email_consent, phone_consent, post_consent, ads_consent,
           consent_date, consent_can_grant from stg_vendor__demographics
    union all
    select record_id, source_system, email_consent, phone_consent, post_consent, ads_consent,
           consent_date, consent_can_grant from stg_campaigns__contacts
    union all
    select record_id, source_system, email_consent, phone_consent, post_consent, ads_consent,
           consent_date, consent_can_grant from stg_service__requesters
),

statements as (
    select record_id, source_system, 'email' as channel, email_consent as consent,
           consent_date, consent_can_grant from stated where email_consent is not null
    union all
    select record_id, source_system, 'phone', phone_consent, consent_date, consent_can_grant
    from stated where phone_consent is not null
    union all
    select record_id, source_system, 'post', post_consent, consent_date, consent_can_grant
    from stated where post_consent is not null
    union all
    select record_id, source_system, 'ads', ads_consent, consent_date, consent_can_grant
    from stated where ads_consent is not null
),

linked as (
    select r.customer_id, s.*
    from statements s
    join records r on r.record_id = s.record_id
),

-- Per customer and channel: how many statements, and the date of the last denial (null when none;
-- an undated denial counts as the latest of all). Every customer and channel with a statement
-- keeps at least one below (its denials, or every statement when it has none), so the decisive
-- statement carries the count to the result.
per_channel as (
    select customer_id, channel,
           count(*) as statements,
           max(case when consent = 'denied' then coalesce(consent_date, date '9999-12-31') end)
               as last_denied
    from linked
    group by customer_id, channel
),

counted as (
    select l.*, d.statements
    from linked l
    join per_channel d on d.customer_id = l.customer_id and d.channel = l.channel
    where l.consent = 'denied'
       or d.last_denied is null
       or (coalesce(l.consent_can_grant, false) and l.consent_date > d.last_denied)
),

-- The decisive statement of each customer and channel is the first in one ordering of every
-- statement by customer, channel and the rules above: the row whose predecessor belongs to another
-- customer or channel. lag() over one ordering streams, where row_number() partitioned by customer
-- and channel keeps state for each of millions of partitions (eight times slower in DataFusion 55).
ordered as (
    select
        *,
        lag(customer_id) over statements_in_order as previous_customer_id,
        lag(channel) over statements_in_order     as previous_channel
    from counted
    window statements_in_order as (
        order by customer_id, channel, consent_date desc nulls last,
                 case when consent = 'denied' then 0 else 1 end, source_system, record_id
    )
),

decisive as (
    select * from ordered
    where previous_customer_id is null
       or previous_customer_id <> customer_id
       or previous_channel <> channel
),

channels as (
    select * from (values ('email'), ('phone'), ('post'), ('ads')) as c(channel)
),

customers as (
    select distinct customer_id from records
)

select
    c.customer_id,
    ch.channel,
    coalesce(r.consent, 'unknown')          as consent,
    r.consent_date                          as stated_on,
    r.source_system                         as stated_by,
    coalesce(r.statements, 0)               as statements
from customers c
cross join channels ch
left join decisive r
    on r.customer_id = c.customer_id and r.channel = ch.channel
order by c.customer_id, ch.channel
