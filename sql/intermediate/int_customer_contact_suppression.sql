-- Contact-level suppression, independent of identity resolution: for every customer, each contact
-- point they hold that an opted-out customer also holds, whichever customer identity resolution
-- gave it. Contact points are those of int_customer_contacts (written by the identity step): each
-- standardised email, each phone in E.164, and the postal key (street, postcode and first-name
-- initial). A customer opted out when any record linked to them did, and then every contact point
-- of every one of their records is suppressed: a second account identity did not link (a
-- misspelt name) but which holds one of those emails, phones or addresses is stopped too.
--
-- is_shared: the contact point is held by records of people with different first names (a
-- family's landline or email, a home where two people share an initial). A customer holding an
-- opted-out contact point that is not shared is the same person in all likelihood and is never
-- exported (customer_view.has_opted_out_contact); a shared one stops only exports that would send
-- to that very email or phone, so a partner who consented is still reached on their own. See
-- docs/privacy.md.
--
-- test: unique(customer_id, contact_kind, contact_key)
-- test: not_null(customer_id, contact_kind, contact_key, is_shared, opted_out_customers)
-- test: accepted_values(contact_kind, 'email', 'phone', 'postal')
with contacts as (
    select * from int_customer_contacts
),

opted_out_customers as (
    select distinct customer_id
    from int_customer_records__matched
    where is_opted_out
),

-- Shared when any of its holders says so.
opted_out_contacts as (
    select
        c.contact_kind,
        c.contact_key,
        count(distinct c.customer_id)   as opted_out_customers
    from contacts c
    join opted_out_customers o on o.customer_id = c.customer_id
    group by c.contact_kind, c.contact_key
),

sharing as (
    select c.contact_kind, c.contact_key, bool_or(c.is_shared) as is_shared
    from contacts c
    join opted_out_contacts o
        on o.contact_kind = c.contact_kind and o.contact_key = c.contact_key
    group by c.contact_kind, c.contact_key
),

suppressed as (
    select distinct
        c.customer_id,
        c.contact_kind,
        c.contact_key,
        s.is_shared,
        o.opted_out_customers
    from contacts c
    join opted_out_contacts o
        on o.contact_kind = c.contact_kind and o.contact_key = c.contact_key
    join sharing s
        on s.contact_kind = c.contact_kind and s.contact_key = c.contact_key
)

select * from suppressed
order by customer_id, contact_kind, contact_key
