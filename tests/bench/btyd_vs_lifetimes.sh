#!/usr/bin/env bash
# Benchmark (not a test): BG/NBD and Gamma-Gamma fits on the same 1,000,000-customer summary,
# clientele (`clientele fit btyd|spend --summary`) against Python lifetimes 0.11.3, on the same 2
# cores. Reports fit time, parameters and peak memory.
#
#     bash tests/bench/btyd_vs_lifetimes.sh [CUSTOMERS]      # default 1,000,000
#
# The summary is simulated from the BG/NBD and Gamma-Gamma processes with the CDNOW parameters
# (r 0.2426, alpha 4.4137, a 0.7930, b 2.4262; p 6.25, q 3.74, gamma 15.44), ages uniform over 39
# weeks, times rounded to 2 decimals as in the published CDNOW summary. Needs a release build of
# clientele (built here if missing); installs lifetimes into its own virtual environment.
set -euo pipefail
customers="${1:-1000000}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
work="${BENCH_DIR:-$target/bench-btyd}"
threads="${BENCH_THREADS:-2}"
cores="0-$((threads - 1))"
bin="$target/release/clientele"
mkdir -p "$work"
if [ ! -x "$bin" ]; then
  (cd "$root" && cargo build --release -p clientele)
fi
venv="$work/venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import lifetimes" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q lifetimes==0.11.3
fi

summary="$work/summary-$customers.csv"
if [ ! -s "$summary" ]; then
  echo "simulating $customers customers" >&2
  "$venv/bin/python" - "$summary" "$customers" <<'PY'
import sys
import numpy as np
path, n = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(42)
r, alpha, a, b = 0.2426, 4.4137, 0.7930, 2.4262
p, q, gamma = 6.25, 3.74, 15.44
T = np.round(rng.uniform(1.0, 39.0, n), 2)
lam = rng.gamma(r, 1.0 / alpha, n)
drop = rng.beta(a, b, n)
nu = rng.gamma(q, 1.0 / gamma, n)
x = np.zeros(n, dtype=np.int64)
tx = np.zeros(n)
spend = np.zeros(n)
t = np.zeros(n)
alive = np.ones(n, dtype=bool)
while alive.any():
    idx = np.nonzero(alive)[0]
    t[idx] += rng.exponential(1.0, idx.size) / np.maximum(lam[idx], 1e-12)
    bought = t[idx] <= T[idx]
    got = idx[bought]
    x[got] += 1
    tx[got] = t[got]
    spend[got] += rng.gamma(p, 1.0 / nu[got])
    # After each purchase the customer drops out with probability `drop`.
    dead = got[rng.uniform(size=got.size) < drop[got]]
    alive[idx[~bought]] = False
    alive[dead] = False
tx = np.round(tx, 2)
monetary = np.where(x > 0, spend / np.maximum(x, 1), 0.0)
with open(path, "w") as f:
    f.write("customer_id,frequency,recency,T,monetary_value\n")
    for i in range(n):
        f.write(f"C{i:07d},{x[i]},{tx[i]:.2f},{T[i]:.2f},{monetary[i]:.2f}\n")
PY
fi

measure() { # label, command...
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$work/$label.time" taskset -c "$cores" "$@" >"$work/$label.out" 2>"$work/$label.err" \
    || { cat "$work/$label.err" >&2; exit 1; }
  read -r secs kb <"$work/$label.time"
  echo "$label: process $secs s, peak $((kb / 1024)) MiB"
}

echo "summary: $summary ($customers customers), $threads cores"
measure clientele-bgnbd "$bin" fit btyd --summary "$summary" --model bgnbd --json
measure clientele-spend "$bin" fit spend --summary "$summary" --json
python3 - "$work" <<'PY'
import json, sys
w = sys.argv[1]
b = json.load(open(f"{w}/clientele-bgnbd.out"))["models"][0]
g = json.load(open(f"{w}/clientele-spend.out"))
print(f"clientele bgnbd fit {b['fit_seconds']:.3f} s", {k: round(v, 4) for k, v in b["parameters"].items()}, "ll", round(b["log_likelihood"], 2))
print(f"clientele gamma-gamma fit {g['fit_seconds']:.3f} s", {k: round(v, 4) for k, v in g["parameters"].items()})
PY
measure lifetimes "$venv/bin/python" - "$summary" <<'PY'
import sys, time
import pandas as pd
from lifetimes import BetaGeoFitter, GammaGammaFitter
d = pd.read_csv(sys.argv[1])
t0 = time.time()
bg = BetaGeoFitter(penalizer_coef=0.0).fit(d["frequency"], d["recency"], d["T"])
t1 = time.time()
rep = d[d["frequency"] > 0]
gg = GammaGammaFitter(penalizer_coef=0.0).fit(rep["frequency"], rep["monetary_value"])
t2 = time.time()
print(f"lifetimes bgnbd fit {t1 - t0:.3f} s", {k: round(v, 4) for k, v in bg.params_.items()}, "ll", round(-bg._negative_log_likelihood_ * len(d), 2) if hasattr(bg, "_negative_log_likelihood_") else "")
print(f"lifetimes gamma-gamma fit {t2 - t1:.3f} s", {k: round(v, 4) for k, v in gg.params_.items()})
PY
cat "$work/lifetimes.out"
python3 - "$work" <<'PY'
import json, re, sys
w = sys.argv[1]
b = json.load(open(f"{w}/clientele-bgnbd.out"))["models"][0]["fit_seconds"]
g = json.load(open(f"{w}/clientele-spend.out"))["fit_seconds"]
text = open(f"{w}/lifetimes.out").read()
lb = float(re.search(r"lifetimes bgnbd fit ([0-9.]+) s", text).group(1))
lg = float(re.search(r"lifetimes gamma-gamma fit ([0-9.]+) s", text).group(1))
print(f"speed-up: BG/NBD {lb / b:.0f}x, Gamma-Gamma {lg / g:.0f}x (target 50x)")
PY
