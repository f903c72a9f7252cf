-- An export's candidates: every member of {segment} with the contact fields and columns the
-- export sends, and why a member may not be sent (null when nothing in the customer view stops
-- it; the export then checks contact keys and the suppression lists).
-- params: segment (the segment id, quotes doubled), columns (the export's `, v."x" as "__x"`
--   select items, built from its format and columns), consent (the consent rules: for an export
--   with a channel, `when v.email_consent = 'denied' then 'opted_out'`, the general opt-out
--   unless the channel is granted, and `when v.email_consent is distinct from 'granted' then
--   'consent_unknown'` unless unknown consent is allowed; without a channel, `when v.is_opted_out
--   is null then 'consent_unknown' when v.is_opted_out then 'opted_out'`), closed (`when coalesce(v.is_account_closed,
--   false) then 'account_closed'`, or empty for a customer view without closed accounts), contact
--   (`when v.has_opted_out_contact then 'contact_opted_out'`, or empty for a customer view of a
--   run before contact-level suppression)
-- reads: segment_membership, customer_view

select m.customer_id{columns},
       case when v.customer_id is null then 'not_in_customer_view'
            {consent}
            {contact}
            {closed}
       end as __suppressed_because
from segment_membership m
left join customer_view v on v.customer_id = m.customer_id
where m.segment = '{segment}'
order by m.customer_id
