-- What an export sent last time: the treatment rows of its latest audience before {as_of}, with
-- each customer's fingerprint and row (adds and diffs compare against them).
-- params: export (the export's name, quotes doubled), as_of (date)
-- reads: history.export_audience

with earlier as (
    select * from history.export_audience
    where export = '{export}' and as_of < cast('{as_of}' as date)
)

select cast(as_of as varchar) as as_of, customer_id, fingerprint, "row"
from earlier
where "group" = 'treatment'
  and as_of = (select max(as_of) from earlier)
order by customer_id
