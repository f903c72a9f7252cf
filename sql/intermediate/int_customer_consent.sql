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
-- Every row is made from one customer's records and their statements: under a memory limit a
-- large base runs in ranges of customer ids (docs/performance.md#models-in-parts). At 10 M
-- persons under 4,096 MiB 3 parts of 9.7 M records ran out in their hash joins and
-- aggregations and 6 passed (about 10 s a part), so a part reads 1,400 records per MiB.
-- parts: int_customer_records__matched.customer_id, 1400 rows per MiB
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

-- The source systems in their text order, numbered from 0, so that a statement's place in the
-- rules' order can be a number.
systems as (
    select source_system, cast(row_number() over (order by source_system) as bigint) - 1 as system_no
    from (select distinct source_system from stated where source_system is not null)
),

-- Each statement linked to its customer, with its place in the order of the rules as a number
-- (denial_key when it denies, grant_key when it grants): the newest first (3,000,000 less the days
-- since 1970, so any date of the years 1 to 9999 is below 10,000,000; 10,000,000 for an undated
-- statement, after every dated one), then a denial (0) before a grant (1) of the same date, then
-- the source system's number: ((newest * 2) + denial or grant) * 1,000,000 + system. The least key
-- of a set of statements is the one the rules put first, and it holds what the result shows of it
-- (consent, date, source): one aggregation per customer finds each channel's least keys, where a
-- sort of every statement and a join back to per-channel figures took three times as long, and
-- numbers keep a customer's twelve least keys in 96 bytes, where text kept each in an allocation
-- of its own (docs/performance.md).
linked as (
    select
        r.customer_id,
        s.email_consent,
        s.phone_consent,
        s.post_consent,
        s.ads_consent,
        coalesce(s.consent_can_grant, false) as can_grant,
        s.consent_date,
        (s.newest * 2) * 1000000 + y.system_no     as denial_key,
        (s.newest * 2 + 1) * 1000000 + y.system_no as grant_key
    from (
        select
            *,
            case
                when consent_date is null then cast(10000000 as bigint)
                else 3000000 - cast(consent_date - date '1970-01-01' as bigint)
            end as newest
        from stated
        where coalesce(email_consent, phone_consent, post_consent, ads_consent) is not null
    ) s
    join records r on r.record_id = s.record_id
    left join systems y on y.source_system = s.source_system
),

-- Per customer and channel: how many statements; the first grant, the first grant of a source able
-- to grant and the first denial in the rules' order (grant and denial keys); and the
-- date of the last denial (an undated denial counts as the latest of all).
per_customer as (
    select
        customer_id,
        count(email_consent) as email_statements,
        min(case when email_consent <> 'denied' then grant_key end) as email_grant,
        min(case when email_consent <> 'denied' and can_grant then grant_key end) as email_lifting,
        min(case when email_consent = 'denied' then denial_key end) as email_denial,
        max(case when email_consent = 'denied' then coalesce(consent_date, date '9999-12-31') end) as email_last_denied,
        count(phone_consent) as phone_statements,
        min(case when phone_consent <> 'denied' then grant_key end) as phone_grant,
        min(case when phone_consent <> 'denied' and can_grant then grant_key end) as phone_lifting,
        min(case when phone_consent = 'denied' then denial_key end) as phone_denial,
        max(case when phone_consent = 'denied' then coalesce(consent_date, date '9999-12-31') end) as phone_last_denied,
        count(post_consent) as post_statements,
        min(case when post_consent <> 'denied' then grant_key end) as post_grant,
        min(case when post_consent <> 'denied' and can_grant then grant_key end) as post_lifting,
        min(case when post_consent = 'denied' then denial_key end) as post_denial,
        max(case when post_consent = 'denied' then coalesce(consent_date, date '9999-12-31') end) as post_last_denied,
        count(ads_consent) as ads_statements,
        min(case when ads_consent <> 'denied' then grant_key end) as ads_grant,
        min(case when ads_consent <> 'denied' and can_grant then grant_key end) as ads_lifting,
        min(case when ads_consent = 'denied' then denial_key end) as ads_denial,
        max(case when ads_consent = 'denied' then coalesce(consent_date, date '9999-12-31') end) as ads_last_denied
    from linked
    group by customer_id
),

channels as (
    select * from (values ('email'), ('phone'), ('post'), ('ads')) as c(channel)
),

per_channel as (
    select
        p.customer_id,
        ch.channel,
        case ch.channel
            when 'email' then p.email_statements
            when 'phone' then p.phone_statements
            when 'post' then p.post_statements
            else p.ads_statements
        end as statements,
        case ch.channel when 'email' then p.email_grant when 'phone' then p.phone_grant
             when 'post' then p.post_grant else p.ads_grant end as first_grant,
        case ch.channel when 'email' then p.email_lifting when 'phone' then p.phone_lifting
             when 'post' then p.post_lifting else p.ads_lifting end as first_lifting,
        case ch.channel when 'email' then p.email_denial when 'phone' then p.phone_denial
             when 'post' then p.post_denial else p.ads_denial end as first_denial,
        case ch.channel when 'email' then p.email_last_denied when 'phone' then p.phone_last_denied
             when 'post' then p.post_last_denied else p.ads_last_denied end as last_denied
    from per_customer p
    cross join channels ch
),

-- The decisive statement: without a denial, the first grant; else the first grant of a source able
-- to grant when it is dated after every denial (the first such grant is the newest, so it is the
-- one to compare), which comes before every denial in the rules' order; else the first denial.
decisive as (
    select
        customer_id,
        channel,
        statements,
        case
            when first_denial is null then first_grant
            when first_lifting / 2000000 < 10000000
                 and cast(cast(3000000 - first_lifting / 2000000 as int) as date) > last_denied
                then first_lifting
            else first_denial
        end as decisive_key
    from per_channel
),

customers as (
    select distinct customer_id from records
)

select
    c.customer_id,
    ch.channel,
    case (d.decisive_key / 1000000) % 2
        when 0 then 'denied'
        when 1 then 'granted'
        else 'unknown'
    end                                     as consent,
    case
        when d.decisive_key / 2000000 < 10000000
        then cast(cast(3000000 - d.decisive_key / 2000000 as int) as date)
    end                                     as stated_on,
    y.source_system                         as stated_by,
    coalesce(d.statements, 0)               as statements
from customers c
cross join channels ch
left join decisive d
    on d.customer_id = c.customer_id and d.channel = ch.channel
left join systems y on y.system_no = d.decisive_key % 1000000
order by c.customer_id, ch.channel
