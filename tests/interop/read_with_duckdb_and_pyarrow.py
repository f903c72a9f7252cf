"""Checks that the Parquet clientele publishes is read as it is by DuckDB and pyarrow.

Usage: python3 read_with_duckdb_and_pyarrow.py WAREHOUSE_DIR
Reads every published table with both, checks the row counts agree with the latest run manifest,
and that the columns have plain types (no string views, no unsigned integers, UTC timestamps,
decimals for money).
Prints 'interop: N passed, M failed' and exits non-zero on any failure.
"""
import glob
import json
import os
import sys

import duckdb
import pyarrow.parquet as pq

warehouse = sys.argv[1]
manifests = sorted(glob.glob(os.path.join(warehouse, "_runs", "*.json")))
manifest = json.load(open(manifests[-1]))
# Published files carry the run id in their names; the latest commit maps each logical path (as
# manifests and reports name them) to its file.
commits = sorted(glob.glob(os.path.join(warehouse, "_commits", "*.json")))
commit = json.load(open(commits[-1]))
files = commit["files"]
passed, failed = 0, 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print("FAIL", what)


con = duckdb.connect()
for table in manifest["tables"]:
    path = os.path.join(warehouse, files.get(table["path"], table["path"]))
    rows = con.execute("select count(*) from read_parquet(?)", [path]).fetchone()[0]
    check(rows == table["rows"], f"duckdb rows of {table['table']}: {rows} != {table['rows']}")
    arrow_table = pq.read_table(path)
    check(arrow_table.num_rows == table["rows"], f"pyarrow rows of {table['table']}")
    for field in arrow_table.schema:
        plain = not str(field.type).startswith(("string_view", "large_string", "dictionary"))
        check(plain, f"{table['table']}.{field.name} has type {field.type}")
        # Spark (and some BI tools) read unsigned Parquet integers as decimals.
        check(not str(field.type).startswith("uint"), f"{table['table']}.{field.name} is unsigned: {field.type}")
        if str(field.type).startswith("timestamp"):
            check(field.type.tz == "UTC", f"{table['table']}.{field.name} is not UTC: {field.type}")

# Hive partitioning: the as_of column comes from the directory name.
view = os.path.join(warehouse, "marts", "customer_view", "*", "*.parquet")
as_of, customers = con.execute(
    "select cast(as_of as varchar), count(*) from read_parquet(?, hive_partitioning = true) group by all order by 1 desc limit 1",
    [view],
).fetchone()
check(as_of == manifest["as_of"], f"hive partition as_of {as_of} != {manifest['as_of']}")
money = con.execute("select typeof(monetary_value) from read_parquet(?) limit 1", [view.replace("*", "as_of=" + manifest["as_of"], 1)]).fetchone()[0]
check(money.startswith("DECIMAL"), f"monetary_value is {money}")
# The query docs/operating.md gives a plain reader for exactly the committed files.
wh = warehouse.rstrip("/")
committed = con.execute(f"""
select unnest(map_keys(files)) as logical, unnest(map_values(files)) as physical
from read_json('{wh}/_commits/*.json', columns = {{version: 'BIGINT', files: 'MAP(VARCHAR, VARCHAR)'}})
where version = (select max(version) from read_json('{wh}/_commits/*.json', columns = {{version: 'BIGINT'}}))
""").fetchall()
check(dict(committed) == files, f"the documented DuckDB query finds {len(committed)} committed files, the commit lists {len(files)}")
con.execute(f"""
set variable committed_rfm = (select list('{wh}/' || physical) from (
  select unnest(map_keys(files)) as logical, unnest(map_values(files)) as physical
  from read_json('{wh}/_commits/*.json', columns = {{version: 'BIGINT', files: 'MAP(VARCHAR, VARCHAR)'}})
  where version = (select max(version) from read_json('{wh}/_commits/*.json', columns = {{version: 'BIGINT'}})))
  where logical like 'scores/customer_rfm/%')
""")
scores = con.execute("select count(*) from read_parquet(getvariable('committed_rfm'), hive_partitioning = true)").fetchone()[0]
rfm_rows = sum(t["rows"] for t in manifest["tables"] if t["table"] == "customer_rfm")
check(scores >= rfm_rows > 0, f"committed customer_rfm rows {scores} < this run's {rfm_rows}")
print(f"interop: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
