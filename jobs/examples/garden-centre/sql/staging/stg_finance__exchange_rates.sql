-- The finance team's rates: New Zealand dollars per unit, monthly, with an undated rate per
-- currency for older orders.
--
-- test: not_null(currency, rate)
-- test: unique(currency, valid_from)
with source as (
    select * from raw.fx_rates
)

select
    upper(currency)                                                as currency,
    date                                                           as valid_from,
    cast(nzd_per_unit as decimal(18, 8))                           as rate
from source
where date is null or date <= as_of_date()
order by currency, valid_from nulls first
