#!/usr/bin/env bash
# Benchmark (not a test): identity resolution of the demo's customer records, clientele's identity
# step against Splink 4 with its DuckDB backend, on the same records, the same blocking rules and
# threshold, and the same cores. Reports wall time, candidate pairs / links, peak memory and
# pairwise and cluster precision, recall and F1 against the generator's truth.
#
#     bash tests/bench/identity_vs_splink.sh [PERSONS]     # default 345,000 persons (~1,000,000 records)
#
# Needs a release build of clientele (built here if missing); installs Splink into its own virtual
# environment under the target directory.
set -euo pipefail
persons="${1:-345000}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
work="${BENCH_DIR:-$target/bench-identity-$persons}"
threads="${BENCH_THREADS:-2}"
bin="$target/release/clientele"
if [ ! -x "$bin" ]; then
  (cd "$root" && cargo build --release -p clientele)
fi
venv="$target/splink-venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import splink" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q splink==4.0.7 duckdb==1.1.3 pandas==2.2.3 sqlglot==25.24.5 pyarrow
fi
cores="0-$((threads - 1))"

rm -rf "$work"
/usr/bin/time -f "%e %M" -o "$work.time" taskset -c "$cores" \
  "$bin" -q demo --dir "$work" --persons "$persons" >"$work.log" 2>&1 || { cat "$work.log" >&2; exit 1; }
read -r secs kb <"$work.time"
python3 - "$work" "$secs" "$kb" <<'PY'
import glob, json, sys
work, secs, kb = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
m = json.load(open(sorted(glob.glob(f"{work}/warehouse/_runs/*.json"))[-1]))
step = next(s for s in m["steps"] if s["kind"] == "identity")
s, a = m["identity"]["summary"], m["identity"]["accuracy"]
print(f"clientele {step['duration_ms'] / 1000:8.1f} s  records {s['records']:,}  candidate pairs {s['candidate_pairs']:,}  "
      f"links {s['links_above_threshold']:,}  pairwise P {a['pairwise']['precision']:.4f} R {a['pairwise']['recall']:.4f} "
      f"F1 {a['pairwise']['f1']:.4f}  clusters P {a['cluster']['precision']:.4f} R {a['cluster']['recall']:.4f} F1 {a['cluster']['f1']:.4f}")
peak = step.get("peak_memory_mib")
print(f"          identity step peak {peak if peak is not None else '?'} MiB; "
      f"whole demo run {secs:.1f} s, peak {kb / 1024:.0f} MiB (ingest, SQL and identity together)")
PY
records=$(ls "$work"/warehouse/intermediate/int_customer_records__unioned/as_of=*/part-0*.parquet)
truth=$(ls "$work"/warehouse/staging/stg_demo__truth/as_of=*/part-0*.parquet)
/usr/bin/time -f "%e %M" -o "$work.splink.time" taskset -c "$cores" \
  "$venv/bin/python" "$root/tests/bench/splink_peer.py" "$records" "$truth" "$threads" 2>"$work.splink.log" \
  || { tail -30 "$work.splink.log" >&2; exit 1; }
read -r secs kb <"$work.splink.time"
echo "          splink process $secs s, peak $((kb / 1024)) MiB"
