#!/usr/bin/env bash
# Benchmark (not a test): CSV to Parquet on a generated order file, clientele against DuckDB's
# read_csv -> COPY TO parquet, on the same file and the same cores. Reports rows/s, MB/s and peak
# memory (max RSS) for both.
#
#     bash tests/bench/csv_to_parquet.sh [ROWS]        # default 10,000,000 rows
#
# Needs a release build of clientele (built here if missing) and installs DuckDB's Python package
# into its own virtual environment under the target directory.
set -euo pipefail
rows="${1:-10000000}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
work="${BENCH_DIR:-$target/bench-csv}"
threads="${BENCH_THREADS:-2}"
mkdir -p "$work"
bin="$target/release/clientele"
if [ ! -x "$bin" ]; then
  (cd "$root" && cargo build --release -p clientele)
fi
venv="$target/bench-venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q duckdb==2.0.0
fi

csv="$work/orders.csv"
if [ ! -s "$csv" ] || [ "$(wc -l <"$csv")" -ne $((rows + 1)) ]; then
  echo "generating $rows rows" >&2
  "$venv/bin/python" - "$csv" "$rows" <<'PY'
import sys, random
path, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(42)
with open(path, "w", buffering=1 << 22) as f:
    f.write("order_id,customer_id,order_date,channel,quantity,amount\n")
    chans = ["web", "store", "phone", "catalog"]
    for i in range(n):
        f.write(f"O{i:010d},C{rnd.randrange(2_000_000):08d},2025-{rnd.randrange(1,13):02d}-{rnd.randrange(1,29):02d},"
                f"{chans[i % 4]},{rnd.randrange(1, 9)},{rnd.randrange(100, 100000) / 100:.2f}\n")
PY
fi
mb=$(du -m "$csv" | cut -f1)

cat >"$work/bench.toml" <<TOML
[job]
name = "bench_csv"
warehouse = "warehouse"
memory_limit_mb = 1024

[[sources]]
name = "orders"
format = "csv"
location = "orders.csv"
fields = [
  { name = "order_id", type = "string" },
  { name = "customer_id", type = "string" },
  { name = "order_date", type = "date" },
  { name = "channel", type = "string" },
  { name = "quantity", type = "int64" },
  { name = "amount", type = "decimal(12,2)" },
]

[[steps]]
name = "ingest"
kind = "ingest"
sources = ["orders"]
TOML

measure() { # label, command...
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$work/time.txt" "$@" >/dev/null 2>"$work/$label.log" || { cat "$work/$label.log" >&2; exit 1; }
  read -r secs kb <"$work/time.txt"
  python3 -c "
rows, mb, s, kb = $rows, $mb, $secs, $kb
print(f'{\"$label\":<10} {s:8.2f} s  {rows/s/1e6:6.2f} M rows/s  {mb/s:7.1f} MB/s  peak {kb/1024:7.0f} MiB')"
}

echo "CSV: $csv ($rows rows, $mb MB), $threads threads"
rm -rf "$work/warehouse"
measure clientele taskset -c 0-$((threads - 1)) "$bin" -q run "$work/bench.toml" --as-of 2025-12-31 --full-refresh
rm -f "$work/duck.parquet"
measure duckdb taskset -c 0-$((threads - 1)) "$venv/bin/python" -c "
import duckdb
con = duckdb.connect()
con.execute('SET threads = $threads')
con.execute(\"\"\"COPY (SELECT * FROM read_csv('$csv', header = true, columns = {
  'order_id': 'VARCHAR', 'customer_id': 'VARCHAR', 'order_date': 'DATE', 'channel': 'VARCHAR',
  'quantity': 'BIGINT', 'amount': 'DECIMAL(12,2)'})) TO '$work/duck.parquet' (FORMAT parquet)\"\"\")
"
