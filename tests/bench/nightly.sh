#!/usr/bin/env bash
# Benchmark (not a test): the whole nightly run on the realistic demo (households, second accounts
# within one system, placeholder values, large postal areas for au and us), per step: wall time,
# CPU time (all threads), peak resident memory and rows; and the whole run under /usr/bin/time -v.
#
#     bash tests/bench/nightly.sh [PERSONS] [COUNTRY]     # default 1,000,000 persons, au
#
# The sources are generated first (`clientele demo --no-run`, timed apart: not part of the nightly),
# then `clientele run` is timed on them, pinned to BENCH_THREADS cores (default 2).
#
# Environment:
#   BENCH_PROFILE  cargo profile of the binary: release (default) or dev (the test build)
#   BENCH_DIR      where the demo is written (default: <target>/bench-nightly-<persons>-<country>)
#   BENCH_THREADS  cores to pin the run to (default 2)
#   BENCH_BUDGET   a budget file (tests/bench/nightly_budget.toml): fail when a step's CPU time
#                  exceeds its budget by more than 50% (the regression guard of .ci/run)
#   BENCH_RECORD   write the measured CPU times as a budget file to this path
#
# Prints a Markdown table (also written to <BENCH_DIR>.md) for docs/performance.md.
set -euo pipefail
persons="${1:-1000000}"
country="${2:-au}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
profile="${BENCH_PROFILE:-release}"
threads="${BENCH_THREADS:-2}"
work="${BENCH_DIR:-$target/bench-nightly-$persons-$country}"
case "$profile" in
  release) bin="$target/release/clientele"; build=(cargo build --release -p clientele) ;;
  dev) bin="$target/debug/clientele"; build=(cargo build -p clientele) ;;
  *) echo "nightly.sh: BENCH_PROFILE must be release or dev, not '$profile'" >&2; exit 2 ;;
esac
if [ ! -x "$bin" ]; then
  (cd "$root" && "${build[@]}")
fi
cores="0-$((threads - 1))"
as_of=2025-12-31

rm -rf "$work"
started=$(date +%s.%N)
"$bin" -q demo --no-run --dir "$work" --persons "$persons" --country "$country" --as-of "$as_of" \
  >"$work.generate.log" 2>&1 || { cat "$work.generate.log" >&2; exit 1; }
generated=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$started" "$(date +%s.%N)")

# The machine's speed, measured before and after the run (tests/bench/calibrate.py): the guard
# scales the budget by it, so a slower machine is not taken for a slower clientele.
calibration_before=$(python3 "$root/tests/bench/calibrate.py")

status=0
/usr/bin/time -v -o "$work.time" taskset -c "$cores" \
  "$bin" --quiet run "$work/jobs/demo.toml" --as-of "$as_of" >"$work.report" 2>"$work.log" || status=$?
if [ "$status" -ne 0 ]; then
  echo "nightly.sh: the run failed (exit $status); its log:" >&2
  tail -40 "$work.log" >&2
  exit 1
fi

calibration_after=$(python3 "$root/tests/bench/calibrate.py")

python3 - "$work" "$persons" "$country" "$profile" "$threads" "$generated" "${BENCH_BUDGET:-}" "${BENCH_RECORD:-}" \
  "$calibration_before" "$calibration_after" <<'PY'
import glob, json, os, platform, re, sys, tomllib
from datetime import date

work, persons, country, profile, threads, generated, budget_path, record_path = sys.argv[1:9]
persons = int(persons)
calibration = (float(sys.argv[9]) + float(sys.argv[10])) / 2
manifest = json.load(open(sorted(glob.glob(f"{work}/warehouse/_runs/*.json"))[-1]))
timing = open(f"{work}.time").read()

def time_field(name):
    m = re.search(rf"^\s*{re.escape(name)}: (.+)$", timing, re.M)
    return m.group(1).strip() if m else "?"

def wall_seconds(text):
    parts = [float(p) for p in text.split(":")]
    secs = 0.0
    for p in parts:
        secs = secs * 60 + p
    return secs

wall = wall_seconds(time_field("Elapsed (wall clock) time (h:mm:ss or m:ss)"))
cpu = float(time_field("User time (seconds)")) + float(time_field("System time (seconds)"))
max_rss_mib = int(time_field("Maximum resident set size (kbytes)")) / 1024
try:
    cpu_model = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
except (OSError, StopIteration):
    cpu_model = platform.processor() or "unknown cpu"

def fmt_rows(n):
    return f"{n:,}"

lines = [
    f"nightly benchmark, {date.today().isoformat()}: {persons:,} persons ({country}, realistic demo), "
    f"{profile} build, {threads} cores of {os.cpu_count()} ({cpu_model})",
    f"sources generated in {generated} s (not part of the nightly); machine calibration "
    f"{calibration:.2f} s CPU (tests/bench/calibrate.py, before and after the run: {sys.argv[9]} s, {sys.argv[10]} s)",
    "",
    "| step | wall | CPU | peak (step) | rows in → out |",
    "|---|---:|---:|---:|---|",
]
steps = {}
for s in manifest["steps"]:
    wall_s = s["duration_ms"] / 1000
    cpu_s = s.get("cpu_ms", 0) / 1000 if s.get("cpu_ms") is not None else None
    peak = s.get("peak_memory_mib")
    steps[s["name"]] = cpu_s
    lines.append(
        f"| {s['name']} | {wall_s:.1f} s | {'?' if cpu_s is None else f'{cpu_s:.1f} s'} | "
        f"{'?' if peak is None else f'{peak:,} MiB'} | {fmt_rows(s['rows_in'])} → {fmt_rows(s['rows_out'])} |"
    )
# The run resets the kernel's peak (`VmHWM`, through /proc/self/clear_refs) before each step, and
# the rusage maximum that /usr/bin/time reports is taken from that peak: it covers the last step
# only. The whole run's peak is therefore the highest step peak.
peaks = [s.get("peak_memory_mib") for s in manifest["steps"] if s.get("peak_memory_mib") is not None]
whole_peak = f"{max(peaks):,} MiB" if peaks else f"{max_rss_mib:,.0f} MiB (last step)"
lines.append(f"| **whole run** (wall and CPU: /usr/bin/time -v; peak: the highest step's) | **{wall:.1f} s** | **{cpu:.1f} s** | **{whole_peak}** | |")
ident = manifest.get("identity") or {}
acc = ident.get("accuracy")
if acc:
    s = ident["summary"]
    lines.append("")
    lines.append(
        f"identity: {s['records']:,} records, {s['candidate_pairs']:,} candidate pairs; pairwise precision "
        f"{acc['pairwise']['precision']:.4f} recall {acc['pairwise']['recall']:.4f}; clusters precision "
        f"{acc['cluster']['precision']:.4f} recall {acc['cluster']['recall']:.4f}"
    )
text = "\n".join(lines)
print(text)
open(f"{work}.md", "w").write(text + "\n")

if record_path:
    with open(record_path, "w") as f:
        f.write("# CPU seconds per step of the nightly benchmark, the regression guard's budget: .ci/run fails\n")
        f.write("# when a step takes more than 1.5 times its budget, scaled by the machine's speed (the\n")
        f.write("# calibration's CPU seconds now over calibration_cpu_seconds, never below 1). Re-record after\n")
        f.write("# a change that is meant to cost more\n")
        f.write("# (BENCH_PROFILE=dev BENCH_RECORD=tests/bench/nightly_budget.toml bash tests/bench/nightly.sh 50000 au).\n")
        f.write(f"persons = {persons}\ncountry = \"{country}\"\nprofile = \"{profile}\"\n")
        f.write(f"recorded = \"{date.today().isoformat()}\"\ncalibration_cpu_seconds = {calibration:.3f}\n\n[cpu_seconds]\n")
        for name, c in steps.items():
            if c is not None:
                f.write(f"{name} = {c:.1f}\n")
    print(f"\nbudget recorded in {record_path}")

if budget_path:
    budget = tomllib.load(open(budget_path, "rb"))
    for key, have in (("persons", persons), ("country", country), ("profile", profile)):
        if budget.get(key) != have:
            sys.exit(f"nightly.sh: the budget was recorded with {key} = {budget.get(key)!r}, this run has {have!r}")
    over = []
    recorded_calibration = budget.get("calibration_cpu_seconds")
    if recorded_calibration:
        # A slower machine than the recorder's gets a budget scaled to it; a faster one keeps the
        # recorded budget (the guard is there for regressions, not to flake on a quick host).
        speed = max(1.0, calibration / float(recorded_calibration))
        speed_note = f"machine {calibration:.2f} s against {float(recorded_calibration):.2f} s recorded: budget x {speed:.2f}"
    else:
        speed = 1.0
        speed_note = "the budget has no calibration_cpu_seconds: not scaled"
    print(f"\nregression guard (budget {budget_path}, recorded {budget.get('recorded', '?')}; {speed_note}): "
          "a step may take 1.5x its CPU budget")
    for name, limit in budget["cpu_seconds"].items():
        limit = limit * speed
        have = steps.get(name)
        if have is None:
            over.append(f"step '{name}' has a budget but did not report a CPU time")
            continue
        # Half a second of slack: a step of a few tenths of a second is mostly noise.
        allowed = limit * 1.5 + 0.5
        mark = "ok " if have <= allowed else "OVER"
        print(f"  {mark} {name:<12} {have:7.1f} s CPU   budget {limit:7.1f} s   allowed {allowed:7.1f} s")
        if have > allowed:
            over.append(f"step '{name}' used {have:.1f} s of CPU, over 1.5x its budget of {limit:.1f} s")
    if over:
        sys.exit("nightly.sh: slower than the recorded budget:\n  " + "\n  ".join(over))
PY
