#!/usr/bin/env bash
# Benchmark (not a test): identity resolution of the demo's customer records, clientele's identity
# step against Splink 4 with its DuckDB backend, on the same records, the same blocking rules and
# threshold, and the same cores. Reports wall time, candidate pairs / links, peak memory and
# pairwise and cluster precision, recall and F1 against the generator's truth.
#
#     bash tests/bench/identity_vs_splink.sh [PERSONS] [COUNTRY]
#
# PERSONS defaults to 345,000 (~1,000,000 records); COUNTRY is the realistic demo's postal system
# (gb, the default: postcodes of a few households; au or us: postal areas of ~2,500 persons).
# Needs a build of clientele (release, or BENCH_PROFILE=dev for the test build, whose identity
# crate is optimised; built here if missing); installs Splink into its own virtual environment
# under the target directory. clientele runs its job up to the identity step (ingest, transform,
# resolve); the identity step's own time and peak are compared.
set -euo pipefail
persons="${1:-345000}"
country="${2:-gb}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
work="${BENCH_DIR:-$target/bench-identity-$persons-$country}"
threads="${BENCH_THREADS:-2}"
case "${BENCH_PROFILE:-release}" in
  release) bin="$target/release/clientele"; build=(cargo build --release -p clientele) ;;
  dev) bin="$target/debug/clientele"; build=(cargo build -p clientele) ;;
  *) echo "identity_vs_splink.sh: BENCH_PROFILE must be release or dev" >&2; exit 2 ;;
esac
if [ ! -x "$bin" ]; then
  (cd "$root" && "${build[@]}")
fi
venv="$target/splink-venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import splink" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q splink==4.0.7 duckdb==1.1.3 pandas==2.2.3 sqlglot==25.24.5 pyarrow
fi
cores="0-$((threads - 1))"

rm -rf "$work"
"$bin" -q demo --no-run --dir "$work" --persons "$persons" --country "$country" --seed 42 >"$work.log" 2>&1 \
  || { cat "$work.log" >&2; exit 1; }
/usr/bin/time -f "%e %M" -o "$work.time" taskset -c "$cores" \
  "$bin" -q run "$work/jobs/demo.toml" --as-of 2025-12-31 --only ingest,transform,resolve >>"$work.log" 2>&1 \
  || { cat "$work.log" >&2; exit 1; }
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
      f"the run to it {secs:.1f} s, peak {kb / 1024:.0f} MiB (ingest, staging SQL and identity together)")
PY
records=$(ls "$work"/warehouse/intermediate/int_customer_records__unioned/as_of=*/part-0*.parquet)
truth=$(ls "$work"/warehouse/staging/stg_demo__truth/as_of=*/part-0*.parquet)
/usr/bin/time -f "%e %M" -o "$work.splink.time" taskset -c "$cores" \
  "$venv/bin/python" "$root/tests/bench/splink_peer.py" "$records" "$truth" "$threads" 2>"$work.splink.log" \
  || { tail -30 "$work.splink.log" >&2; exit 1; }
read -r secs kb <"$work.splink.time"
echo "          splink process $secs s, peak $((kb / 1024)) MiB"
