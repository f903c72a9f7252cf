-- One row per household: the customers who share a home, as the identity step grouped them (an
-- address, a landline or an email in common; docs/identity.md#households). For direct mail, one
-- piece per household: the address is the one most members have (on a tie the member who spent
-- most), and the household is mailable when a member who has not opted out lives there.
--
--   column                     meaning
--   customers                  members who are customers
--   opted_out_customers        members who opted out
--   last_name                  the most common surname among the members
--   street, postcode, city     the household's postal address
--   monetary_value             the members' spend together; frequency, their purchase days
--   is_mailable                a member has not opted out and the household has a postal address
--
-- test: unique(household_id)
-- test: not_null(household_id, customers, monetary_value)
-- test: expression(customers >= 1 and opted_out_customers <= customers)
with members as (
    select * from customer_view
),

addresses as (
    select
        household_id,
        street,
        postcode,
        city,
        row_number() over (
            partition by household_id
            order by count(*) desc, sum(monetary_value) desc, min(customer_id)
        ) as address_rank
    from members
    where street is not null and postcode is not null
    group by household_id, street, postcode, city
),

surnames as (
    select
        household_id,
        last_name,
        row_number() over (
            partition by household_id
            order by count(*) desc, last_name
        ) as surname_rank
    from members
    where last_name is not null
    group by household_id, last_name
),

totals as (
    select
        household_id,
        count(*)                                                     as customers,
        sum(case when is_opted_out then 1 else 0 end)                as opted_out_customers,
        sum(monetary_value)                                          as monetary_value,
        sum(frequency)                                               as frequency,
        max(last_purchase_date)                                      as last_purchase_date,
        bool_or(not is_opted_out)                                    as has_contactable_member
    from members
    group by household_id
)

select
    t.household_id,
    t.customers,
    t.opted_out_customers,
    s.last_name,
    a.street,
    a.postcode,
    a.city,
    t.monetary_value,
    t.frequency,
    t.last_purchase_date,
    t.has_contactable_member and a.street is not null                as is_mailable
from totals t
left join addresses a on a.household_id = t.household_id and a.address_rank = 1
left join surnames s on s.household_id = t.household_id and s.surname_rank = 1
order by t.household_id
