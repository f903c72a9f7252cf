"""The Splink side of tests/bench/identity_vs_splink.sh: links the same unioned customer records that
clientele's identity step resolved, with Splink 4 on DuckDB, the same blocking rules, comparable
comparisons and the same threshold, then scores the clusters against the demo's truth.

    python splink_peer.py RECORDS.parquet TRUTH.parquet THREADS
"""

import sys
import time

import duckdb
import splink.comparison_library as cl
from splink import DuckDBAPI, Linker, SettingsCreator, block_on

records_path, truth_path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
con = duckdb.connect()
con.execute(f"set threads to {threads}")
# Splink compares raw values; give it the light cleaning its tutorials apply (case, spaces,
# digits-only phones), not clientele's standardisation.
con.execute(
    f"""
    create table records as
    select record_id as unique_id,
           nullif(lower(trim(first_name)), '') as first_name,
           nullif(lower(trim(last_name)), '') as last_name,
           birth_date,
           nullif(lower(trim(street)), '') as street,
           nullif(upper(replace(postcode, ' ', '')), '') as postcode,
           nullif(lower(trim(city)), '') as city,
           nullif(right(regexp_replace(phone, '[^0-9]', '', 'g'), 10), '') as phone,
           email_normalised as email
    from read_parquet('{records_path}')
    """
)
n = con.execute("select count(*) from records").fetchone()[0]
started = time.perf_counter()
settings = SettingsCreator(
    link_type="dedupe_only",
    blocking_rules_to_generate_predictions=[
        "l.postcode = r.postcode and substr(l.last_name, 1, 1) = substr(r.last_name, 1, 1)",
        block_on("phone"),
        block_on("email"),
        block_on("first_name", "last_name", "birth_date"),
        "l.last_name = r.last_name and substr(l.street, 1, 6) = substr(r.street, 1, 6)",
    ],
    comparisons=[
        cl.NameComparison("first_name").configure(term_frequency_adjustments=True),
        cl.NameComparison("last_name").configure(term_frequency_adjustments=True),
        cl.DateOfBirthComparison("birth_date", input_is_string=False),
        cl.LevenshteinAtThresholds("street", [2]),
        cl.PostcodeComparison("postcode"),
        cl.ExactMatch("city").configure(term_frequency_adjustments=True),
        cl.ExactMatch("phone"),
        cl.EmailComparison("email"),
    ],
    retain_intermediate_calculation_columns=False,
)
linker = Linker("records", settings, db_api=DuckDBAPI(con))
linker.training.estimate_probability_two_random_records_match(
    [block_on("email"), block_on("phone")], recall=0.7
)
linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=42)
linker.training.estimate_parameters_using_expectation_maximisation(block_on("phone"))
linker.training.estimate_parameters_using_expectation_maximisation(
    block_on("first_name", "last_name", "birth_date")
)
linker.training.estimate_parameters_using_expectation_maximisation(block_on("email"))
pairs = linker.inference.predict(threshold_match_probability=0.9)
clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
    pairs, threshold_match_probability=0.9
)
clusters_df = clusters.as_duckdbpyrelation()
con.register("clusters", clusters_df)
con.execute("create table clustered as select unique_id, cluster_id from clusters")
elapsed = time.perf_counter() - started
predicted = con.execute(f"select count(*) from {pairs.physical_name}").fetchone()[0]

con.execute(
    f"create table truth as select record_id, person_id from read_parquet('{truth_path}')"
)
scores = con.execute(
    """
    with j as (
        select c.cluster_id, t.person_id from clustered c join truth t on t.record_id = c.unique_id
    ),
    both_ as (select cluster_id, person_id, count(*) n from j group by 1, 2),
    by_c as (select cluster_id, count(*) n from j group by 1),
    by_p as (select person_id, count(*) n from j group by 1),
    exact as (
        select count(*) e from both_ b
        join by_c c on c.cluster_id = b.cluster_id and c.n = b.n
        join by_p p on p.person_id = b.person_id and p.n = b.n
    )
    select
        (select sum(n * (n - 1) / 2) from both_) as tp,
        (select sum(n * (n - 1) / 2) from by_c) as predicted_pairs,
        (select sum(n * (n - 1) / 2) from by_p) as true_pairs,
        (select e from exact) as exact,
        (select count(*) from by_c) as clusters,
        (select count(*) from by_p) as persons
    """
).fetchone()
tp, pp, truep, exact, nclusters, persons = scores
p, r = tp / pp, tp / truep
cp, cr = exact / nclusters, exact / persons
f1 = lambda a, b: 2 * a * b / (a + b) if a + b else 0.0
print(
    f"splink    {elapsed:8.1f} s  records {n:,}  links {predicted:,}  "
    f"pairwise P {p:.4f} R {r:.4f} F1 {f1(p, r):.4f}  clusters P {cp:.4f} R {cr:.4f} F1 {f1(cp, cr):.4f}"
)
