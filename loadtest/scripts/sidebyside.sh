#!/usr/bin/env bash
# Two server builds measured side by side under the same load at the same time: each server on
# core SERVER_CPUS with one media worker, each with its own load tester on LOADTEST_CPUS running
# the same scenario. Interference from the rest of the machine (other builds, a noisy neighbour)
# then hits both alike, where runs one after the other can differ by a third.
#
#   loadtest/scripts/sidebyside.sh BIN_A BIN_B [LOADTEST FLAGS...]
#
# Prints the server CPU per forwarded packet of each, RUNS times (default 3). Environment:
# LOADTEST_BIN (default target/release/loadtest), SERVER_CPUS (0), LOADTEST_CPUS (1), DURATION
# (15s), RUNS (3; an even number starts each build first as often), OUT (a new directory under
# /tmp). Needs python3.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=start-sfu.sh
. loadtest/scripts/start-sfu.sh
[ $# -ge 2 ] || { echo "usage: $0 BIN_A BIN_B [LOADTEST FLAGS...]" >&2; exit 2; }
BINS=("$1" "$2")
shift 2
LOADTEST_BIN=${LOADTEST_BIN:-target/release/loadtest}
SERVER_CPUS=${SERVER_CPUS:-0}
LOADTEST_CPUS=${LOADTEST_CPUS:-1}
DURATION=${DURATION:-15s}
RUNS=${RUNS:-3}
OUT=${OUT:-$(mktemp -d /tmp/loadtest-sidebyside.XXXXXX)}
for bin in "${BINS[@]}" "$LOADTEST_BIN"; do
  [ -x "$bin" ] || { echo "missing $bin" >&2; exit 2; }
done
mkdir -p "$OUT"

pids=()
stop_servers() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
trap stop_servers EXIT

for run in $(seq "$RUNS"); do
  testers=()
  urls=()
  spids=()
  # Both servers are up before either load tester starts, so that their windows coincide. The
  # order of the start can still favour one side (docs/benchmarks.md, 9.7): it alternates.
  order=(0 1)
  [ $((run % 2)) -eq 1 ] || order=(1 0)
  for i in "${order[@]}"; do
    start_sfu "$SERVER_CPUS" "$OUT/server-$i-$run.log" "${BINS[$i]}" --workers 1 --log warn || true
    pids+=("$SFU_PID")
    urls[i]=$SFU_URL
    spids[i]=$SFU_PID
  done
  for i in "${order[@]}"; do
    taskset -c "$LOADTEST_CPUS" "$LOADTEST_BIN" --url "${urls[$i]}" \
      --server-pid "${spids[$i]}" --quiet --duration "$DURATION" --warmup 3s \
      --report "$OUT/$i-$run.json" "$@" > "$OUT/$i-$run.txt" 2>&1 &
    testers+=($!)
  done
  for t in "${testers[@]}"; do wait "$t" || true; done
  stop_servers
done

python3 - "$OUT" "$RUNS" "${BINS[@]}" <<'PY'
import json, os, statistics, sys
out, runs, bins = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
print(f"\nreports in {out}\n")
print("| run | started first | " + " | ".join(f"{b} µs/pkt" for b in bins) + " |")
print("|---|---|" + "---:|" * len(bins))
cols = [[] for _ in bins]
for run in range(1, runs + 1):
    row = []
    for i in range(len(bins)):
        try:
            r = json.load(open(os.path.join(out, f"{i}-{run}.json")))
            us = (r.get("server") or {}).get("cpu_us_per_forwarded_packet")
        except (OSError, ValueError):
            us = None
        if us is not None:
            cols[i].append(us)
        row.append("-" if us is None else f"{us:.2f}")
    first = bins[0] if run % 2 == 1 else bins[1]
    print(f"| {run} | {first} | " + " | ".join(row) + " |")
print("| median | | " + " | ".join(f"{statistics.median(c):.2f}" if c else "-" for c in cols) + " |")
PY
