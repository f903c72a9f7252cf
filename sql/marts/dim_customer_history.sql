-- Type-2 history of dim_customer: one row per customer and period in which the customer's
-- attributes stayed the same, built from the published daily snapshots of dim_customer
-- (history.dim_customer) and this run's. valid_from is the as-of date of the first snapshot with
-- these attributes; valid_to is the as-of date of the first snapshot without them (a change, or the
-- customer gone, e.g. merged into another), null while current. To see a customer as of a past
-- date d: valid_from <= d and (valid_to is null or valid_to > d).
--
-- The snapshot dates come from history.dim_customer__snapshots (one row per published as-of
-- date), not from the snapshots' rows: a date counts even when none of the customers at hand
-- was in it, so each customer's versions are made from that customer's rows alone.
--
-- test: unique(customer_id, valid_from)
-- test: not_null(customer_id, valid_from, is_current)
-- test: expression(valid_to is null or valid_to > valid_from)
-- Every row is one customer's: under a memory limit a large base runs in ranges of customer ids
-- (docs/performance.md#models-in-parts), each part reading its customers' snapshots: 5.8 GiB
-- resident in one piece at 10 M persons, 2.3 GiB in 4 parts.
-- parts: dim_customer.customer_id, 1400 rows per MiB
with previous as (
    select customer_id, first_name, last_name, email, phone, street, postcode, city, birth_date,
           is_opted_out, as_of
    from history.dim_customer
    where as_of < as_of_date()
),

current_snapshot as (
    select customer_id, first_name, last_name, email, phone, street, postcode, city, birth_date,
           is_opted_out, as_of_date() as as_of
    from dim_customer
),

snapshots as (
    select * from previous
    union all
    select * from current_snapshot
),

snapshot_dates as (
    select as_of, cast(row_number() over (order by as_of) as bigint) as snapshot_no
    from (
        select as_of from history.dim_customer__snapshots where as_of < as_of_date()
        union
        select as_of_date() as as_of
    )
),

hashed as (
    select
        s.*,
        d.snapshot_no,
        md5(concat_ws('|',
            coalesce(s.first_name, '~'), coalesce(s.last_name, '~'), coalesce(s.email, '~'),
            coalesce(s.phone, '~'), coalesce(s.street, '~'), coalesce(s.postcode, '~'),
            coalesce(s.city, '~'), coalesce(cast(s.birth_date as varchar), '~'),
            cast(s.is_opted_out as varchar))) as attributes_hash
    from snapshots s
    join snapshot_dates d on d.as_of = s.as_of
),

-- A version starts where a customer's attributes differ from the snapshot before, or where the
-- customer was absent from the snapshot before. Windows over one ordering of every snapshot row
-- by customer and date, comparing each row with the row before it (which is another customer's
-- at a customer's first row), stream; partitioned by customer they keep state per customer.
flagged as (
    select
        *,
        case
            when lag(customer_id) over snapshots_in_order is null then 1
            when lag(customer_id) over snapshots_in_order <> customer_id then 1
            when lag(attributes_hash) over snapshots_in_order <> attributes_hash then 1
            when lag(snapshot_no) over snapshots_in_order <> snapshot_no - 1 then 1
            else 0
        end as is_version_start
    from hashed
    window snapshots_in_order as (order by customer_id, as_of)
),

-- Versions numbered by a running count of version starts over the same ordering: the number is
-- unique across customers, and each customer's versions are grouped by it.
numbered as (
    select
        *,
        sum(is_version_start) over (
            order by customer_id, as_of rows between unbounded preceding and current row
        ) as version_no
    from flagged
),

versions as (
    select
        customer_id,
        version_no,
        max(first_name)      as first_name,
        max(last_name)       as last_name,
        max(email)           as email,
        max(phone)           as phone,
        max(street)          as street,
        max(postcode)        as postcode,
        max(city)            as city,
        max(birth_date)      as birth_date,
        bool_or(is_opted_out) as is_opted_out,
        min(as_of)           as valid_from,
        max(snapshot_no)     as last_snapshot_no
    from numbered
    group by customer_id, version_no
)

select
    v.customer_id,
    v.first_name,
    v.last_name,
    v.email,
    v.phone,
    v.street,
    v.postcode,
    v.city,
    v.birth_date,
    v.is_opted_out,
    v.valid_from,
    d.as_of                   as valid_to,
    d.as_of is null           as is_current
from versions v
left join snapshot_dates d on d.snapshot_no = v.last_snapshot_no + 1
order by v.customer_id, v.valid_from
