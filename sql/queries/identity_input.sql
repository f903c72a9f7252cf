-- The records identity resolution reads: each record's id and source system, and the columns the
-- `[identity]` comparisons compare, from the identity step's input, in record-id order.
-- params: columns (`, first_name, last_name, ...`: the compared columns), input (the table),
--   filter (empty, or `where as_of = ...` when `explain-match` reads a published partition)
-- reads: the identity step's input (default int_customer_records__unioned)

select record_id, source_system{columns}
from {input} {filter}
order by record_id
