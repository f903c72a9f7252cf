-- Campaign propensity scoring snapshots for the next campaign: every customer who has not opted
-- out and can be reached (a valid email or phone, or a postal address) as of {as_of}. A saved
-- propensity model keeps this text (inside `features`) as its scoring query.
-- params: as_of (date; `{as_of}` stays in the artifact's template)
-- reads: customer_view

select customer_id, cast('{as_of}' as date) as _snapshot_date, 'next' as _group from customer_view
         where not coalesce(is_opted_out, false)
           and (coalesce(has_valid_email, false) or coalesce(has_valid_phone, false)
                or coalesce(has_postal_address, false))
