-- The finance team's exchange rates: units of the reporting currency (the job's
-- reporting_currency) per unit of `currency`, valid from `valid_from` until the currency's next
-- rate; a rate without valid_from applies to any date no dated rate covers. fct_orders converts
-- every order paid in another currency with them (docs/staging-contract.md#currencies).
--
-- test: not_null(currency, rate)
-- test: expression(rate > 0)
-- test: unique(currency, valid_from)
with source as (
    select * from raw.exchange_rates
),

renamed as (
    select
        upper(trim(currency))                  as currency,
        valid_from,
        cast(rate as decimal(18, 8))           as rate
    from source
    where valid_from is null or valid_from <= as_of_date()
)

select * from renamed
order by currency, valid_from nulls first
