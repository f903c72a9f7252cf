-- One row per customer: contact data and consent; demographic (age band, income band, household
-- size, home ownership), psychographic (lifestyle segment) and firmographic (business, industry,
-- employee band) attributes from the data vendor's append where identity resolution matched it;
-- purchase history up to the as-of date; channel mix; campaign and service touch points; complaints;
-- and the lifecycle stage. is_account_closed: a linked CRM account is closed (such a customer is
-- never exported). has_opted_out_contact: an email, phone or postal address only this person
-- holds is also held by a customer who opted out, linked to them or not
-- (int_customer_contact_suppression; never exported). email_consent, phone_consent, post_consent
-- and ads_consent: 'granted', 'denied' or 'unknown' per channel, with the date (_date) and source
-- system (_source) of the statement that decides it (int_customer_consent; an export sends only
-- to customers whose consent on its channel is granted). frequency counts distinct purchase days (as the buy-till-you-die models
-- do); monetary_value is the total spend; recency_days is the number of days from the last purchase
-- to the as-of date. Column meanings: docs/identity.md#the-customer-view.
--
-- test: unique(customer_id)
-- test: relationships(customer_id, dim_customer.customer_id)
-- test: expression(frequency <= order_count and monetary_value >= 0)
-- test: accepted_values(lifecycle_stage, 'aware', 'trial', 'purchase', 'multiple_purchase', 'loyalty')
-- test: accepted_values(channel_mix, 'web', 'store', 'both')
-- test: accepted_values(email_consent, 'granted', 'denied', 'unknown')
-- test: not_null(email_consent, phone_consent, post_consent, ads_consent)
-- test: expression(open_complaint_count + resolved_complaint_count <= ticket_count)
-- test: expression(campaign_response_count <= campaign_contact_count)
-- Every row is made from one customer's rows: under a memory limit a large base runs in ranges of
-- customer ids (docs/performance.md#models-in-parts).
-- parts: dim_customer.customer_id
with customers as (
    select * from dim_customer
),

orders as (
    select * from fct_orders where customer_id is not null
),

-- Orders by customer and day first: frequency counts purchase days, and counting rows of this is
-- cheaper than a distinct count per customer.
purchase_days as (
    select
        customer_id,
        order_date,
        count(*)                                            as orders,
        sum(order_amount)                                   as amount,
        sum(case when channel = 'web' then 1 else 0 end)    as web_orders,
        sum(case when channel = 'store' then 1 else 0 end)  as store_orders,
        -- The quarter (a 91-day period ending at the as-of date) of the last year it falls in.
        case
            when cast(as_of_date() - order_date as bigint) between 0 and 363
            then cast(as_of_date() - order_date as bigint) / 91
        end                                                 as quarter_last_year
    from orders
    group by customer_id, order_date
),

order_stats as (
    select
        customer_id,
        min(order_date)                                     as first_purchase_date,
        max(order_date)                                     as last_purchase_date,
        count(*)                                            as frequency,
        sum(orders)                                         as order_count,
        cast(sum(amount) as decimal(22, 2))                 as monetary_value,
        sum(web_orders)                                     as web_order_count,
        sum(store_orders)                                   as store_order_count,
        -- Quarters of the last year with a purchase.
        max(case when quarter_last_year = 0 then 1 else 0 end)
            + max(case when quarter_last_year = 1 then 1 else 0 end)
            + max(case when quarter_last_year = 2 then 1 else 0 end)
            + max(case when quarter_last_year = 3 then 1 else 0 end)
                                                            as active_quarters_last_year
    from purchase_days
    group by customer_id
),

-- The vendor's append of the customer's first vendor record (by record id). "First" is the row
-- whose predecessor in one ordering by customer and record belongs to another customer: lag()
-- over one ordering streams, where row_number() partitioned by customer keeps state per customer.
vendor as (
    select *
    from (
        select
            m.customer_id,
            v.age_band,
            v.income_band,
            v.household_size,
            v.home_ownership,
            v.lifestyle_segment,
            v.is_business,
            v.industry,
            v.employee_band,
            lag(m.customer_id) over (order by m.customer_id, m.record_id) as previous_customer_id
        from int_customer_records__matched m
        join stg_vendor__demographics v on v.record_id = m.record_id
    )
    where previous_customer_id is null or previous_customer_id <> customer_id
),

touches as (
    select
        customer_id,
        sum(case when touchpoint_type = 'campaign_contact' then 1 else 0 end)      as campaign_contact_count,
        sum(case when touchpoint_type = 'campaign_response' then 1 else 0 end)     as campaign_response_count,
        max(case when touchpoint_type = 'campaign_contact' then touch_date end)    as last_campaign_contact_date,
        max(case when touchpoint_type = 'campaign_response' then touch_date end)   as last_campaign_response_date,
        count(*)                                                                   as touchpoint_count,
        max(touch_date)                                                            as last_touch_date
    from fct_touchpoints
    where touch_date <= as_of_date()
    group by customer_id
),

tickets as (
    select
        r.customer_id,
        count(*)                                                                        as ticket_count,
        sum(case when t.status = 'open' then 1 else 0 end)                              as open_ticket_count,
        sum(case when t.category = 'complaint' and t.status = 'open' then 1 else 0 end) as open_complaint_count,
        sum(case when t.category = 'complaint' and t.status = 'resolved' then 1 else 0 end) as resolved_complaint_count,
        max(t.opened_date)                                                              as last_ticket_date
    from stg_service__tickets t
    join int_customer_records__matched r on r.record_id = t.record_id
    where t.opened_date <= as_of_date()
    group by r.customer_id
),

closed_accounts as (
    select m.customer_id, bool_or(a.is_account_closed) as is_account_closed
    from int_customer_records__matched m
    join stg_crm__customers a on a.record_id = m.record_id
    where m.customer_id is not null
    group by m.customer_id
),

consent as (
    select
        customer_id,
        max(case when channel = 'email' then consent end)       as email_consent,
        max(case when channel = 'email' then stated_on end)     as email_consent_date,
        max(case when channel = 'email' then stated_by end)     as email_consent_source,
        max(case when channel = 'phone' then consent end)       as phone_consent,
        max(case when channel = 'phone' then stated_on end)     as phone_consent_date,
        max(case when channel = 'phone' then stated_by end)     as phone_consent_source,
        max(case when channel = 'post' then consent end)        as post_consent,
        max(case when channel = 'post' then stated_on end)      as post_consent_date,
        max(case when channel = 'post' then stated_by end)      as post_consent_source,
        max(case when channel = 'ads' then consent end)         as ads_consent,
        max(case when channel = 'ads' then stated_on end)       as ads_consent_date,
        max(case when channel = 'ads' then stated_by end)       as ads_consent_source
    from int_customer_consent
    group by customer_id
),

contact_suppression as (
    select distinct customer_id
    from int_customer_contact_suppression
    where not is_shared
),

-- Every fact per customer first, then the customer's own columns: each join copies the rows it
-- passes on, and these are narrow (the same joins on dim_customer's wide rows took 1.5 times the
-- operator time at 1,000,000 persons). The widest facts (consent, touch points) join first, while
-- the rows they join to hold only the customer id.
facts as (
    select
        c.customer_id,
        coalesce(x.is_account_closed, false)                            as is_account_closed,
        cs.customer_id is not null                                      as has_opted_out_contact,
        coalesce(cn.email_consent, 'unknown')                           as email_consent,
        cn.email_consent_date,
        cn.email_consent_source,
        coalesce(cn.phone_consent, 'unknown')                           as phone_consent,
        cn.phone_consent_date,
        cn.phone_consent_source,
        coalesce(cn.post_consent, 'unknown')                            as post_consent,
        cn.post_consent_date,
        cn.post_consent_source,
        coalesce(cn.ads_consent, 'unknown')                             as ads_consent,
        cn.ads_consent_date,
        cn.ads_consent_source,
        s.first_purchase_date,
        s.last_purchase_date,
        coalesce(s.frequency, 0)                                        as frequency,
        coalesce(s.order_count, 0)                                      as order_count,
        coalesce(s.monetary_value, cast(0 as decimal(22, 2)))           as monetary_value,
        s.web_order_count,
        s.store_order_count,
        coalesce(s.active_quarters_last_year, 0)                        as active_quarters_last_year,
        v.age_band,
        v.income_band,
        v.household_size,
        v.home_ownership,
        v.lifestyle_segment,
        v.is_business,
        v.industry,
        v.employee_band,
        coalesce(t.campaign_contact_count, 0)                           as campaign_contact_count,
        coalesce(t.campaign_response_count, 0)                          as campaign_response_count,
        t.last_campaign_contact_date,
        t.last_campaign_response_date,
        coalesce(t.touchpoint_count, 0)                                 as touchpoint_count,
        t.last_touch_date,
        coalesce(k.ticket_count, 0)                                     as ticket_count,
        coalesce(k.open_ticket_count, 0)                                as open_ticket_count,
        coalesce(k.open_complaint_count, 0)                             as open_complaint_count,
        coalesce(k.resolved_complaint_count, 0)                         as resolved_complaint_count,
        k.last_ticket_date
    from (select customer_id from customers) c
    left join consent cn on cn.customer_id = c.customer_id
    left join touches t on t.customer_id = c.customer_id
    left join order_stats s on s.customer_id = c.customer_id
    left join vendor v on v.customer_id = c.customer_id
    left join tickets k on k.customer_id = c.customer_id
    left join closed_accounts x on x.customer_id = c.customer_id
    left join contact_suppression cs on cs.customer_id = c.customer_id
),

staged as (
    select c.*, f.* exclude (customer_id)
    from customers c
    join facts f on f.customer_id = c.customer_id
)

select
    customer_id,
    household_id,
    first_name,
    last_name,
    email,
    phone,
    street,
    postcode,
    city,
    birth_date,
    is_opted_out,
    has_opted_out_contact,
    email_consent,
    email_consent_date,
    email_consent_source,
    phone_consent,
    phone_consent_date,
    phone_consent_source,
    post_consent,
    post_consent_date,
    post_consent_source,
    ads_consent,
    ads_consent_date,
    ads_consent_source,
    is_account_closed,
    email is not null                                               as has_email,
    has_valid_email,
    has_valid_phone,
    has_postal_address,
    source_record_count,
    has_crm_record,
    has_web_record,
    has_vendor_record,
    has_campaign_record,
    has_service_record,
    age_band,
    income_band,
    household_size,
    home_ownership,
    lifestyle_segment,
    is_business,
    industry,
    employee_band,
    first_purchase_date,
    last_purchase_date,
    frequency,
    order_count,
    monetary_value,
    web_order_count,
    store_order_count,
    case
        when coalesce(web_order_count, 0) + coalesce(store_order_count, 0) = 0 then null
        when web_order_count = 0 then 'store'
        when store_order_count = 0 then 'web'
        else 'both'
    end                                                             as channel_mix,
    campaign_contact_count,
    campaign_response_count,
    last_campaign_contact_date,
    last_campaign_response_date,
    touchpoint_count,
    last_touch_date,
    ticket_count,
    open_ticket_count,
    open_complaint_count,
    resolved_complaint_count,
    last_ticket_date,
    cast(as_of_date() - last_purchase_date as bigint)               as recency_days,
    cast(as_of_date() - coalesce(first_seen_date, first_purchase_date) as bigint) as tenure_days,
    active_quarters_last_year,
    -- The lifecycle stage (docs/identity.md#lifecycle-stages).
    case
        when frequency = 0 then 'aware'
        when frequency = 1 then 'trial'
        when frequency = 2 then 'purchase'
        when cast(as_of_date() - first_purchase_date as bigint) >= 365
             and active_quarters_last_year >= 3 then 'loyalty'
        else 'multiple_purchase'
    end                                                             as lifecycle_stage
from staged
order by customer_id
