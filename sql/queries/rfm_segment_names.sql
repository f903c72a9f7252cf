-- The named segment of each of the 125 RFM cells (recency, frequency and monetary scores 1 to 5),
-- after the Drilling Down grid in docs/models.md. The score step names every customer's cell from
-- this table; it refuses a grid that leaves a cell unnamed or names one twice. "Cannot lose" is
-- the lapsed frequent buyer who also spent the most (monetary 4 or 5).
-- reads: (none)

with scores as (select column1 as score from (values (1), (2), (3), (4), (5)))
select
    cast(r.score as int) as r_score,
    cast(f.score as int) as f_score,
    cast(m.score as int) as m_score,
    case
        when r.score >= 4 and f.score >= 4 then 'champions'
        when (r.score >= 4 and f.score = 3) or (r.score = 3 and f.score >= 3) then 'loyal'
        when r.score >= 4 and f.score = 2 then 'promising'
        when r.score >= 4 then 'new'
        when r.score between 2 and 3 and f.score <= 2 then 'hibernating'
        when f.score >= 4 and m.score >= 4 then 'cannot_lose'
        when f.score >= 3 then 'at_risk'
        else 'lost'
    end as rfm_segment
from scores as r
cross join scores as f
cross join scores as m
order by r_score, f_score, m_score
