-- The records identity resolution reads: each record's id and source system, and the columns the
-- `[identity]` comparisons compare, from the identity step's input. Read as the rows come, not
-- sorted here: the records are put in record-id order once read (`Records::sort_by_id`), which
-- holds a number per record where a sort here held the whole input (at ten million persons, 3 GB).
-- params: columns (`, first_name, last_name, ...`: the compared columns), input (the table),
--   filter (empty, or `where as_of = ...` when `explain-match` reads a published partition)
-- reads: the identity step's input (default int_customer_records__unioned)

select record_id, source_system{columns}
from {input} {filter}
