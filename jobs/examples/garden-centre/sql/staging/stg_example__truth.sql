-- The person behind each record, as the script that made the example's files knows it: the
-- identity step measures itself against it (the example's own, like the demo's truth).
--
-- test: unique(record_id)
select
    case source
        when 'pos' then 'pos:' || record_id
        when 'shop' then 'shop:' || record_id
        else 'newsletter:' || split_part(record_id, ':', 1)
    end                  as record_id,
    person_id
from raw.example_truth
where source <> 'newsletter' or record_id like '%:spring-2025'
