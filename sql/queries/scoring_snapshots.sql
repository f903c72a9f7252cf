-- Scoring snapshots of both classifiers at once: each customer of {churn} (the churn model's
-- scoring snapshots) or of {propensity} (the propensity model's) once, with `_churn` and
-- `_propensity` saying which model scores the row. The nightly reads the features around it
-- (`features`) once instead of twice: every feature is a function of the customer and the
-- snapshot date alone, so each model gets the rows, and the values, its own scoring query gives.
-- params: churn (a query: churn_scoring_snapshots), propensity (a query: propensity_scoring_snapshots)
-- reads: what the two queries read

select coalesce(c.customer_id, p.customer_id) as customer_id,
       coalesce(c._snapshot_date, p._snapshot_date) as _snapshot_date,
       'scoring' as _group,
       c.customer_id is not null as _churn,
       p.customer_id is not null as _propensity
from ({churn}) c
full join ({propensity}) p on p.customer_id = c.customer_id and p._snapshot_date = c._snapshot_date
