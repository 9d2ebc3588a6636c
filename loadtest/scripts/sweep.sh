#!/usr/bin/env bash
# Server cost against the number of subscribers: for each N, a fresh server, then RUNS load-test
# runs of one room with 2 camera publishers and N viewers; prints the median of the runs.
#
#   loadtest/scripts/sweep.sh [N ...]            (default: 2 10 20 40 80)
#
# Environment: SFU_BIN (default target/release/sfu), LOADTEST_BIN (default
# target/release/loadtest), RUNS (3), DURATION (10s), WORKERS (2), SIMULCAST (off),
# OUT (a new directory under /tmp). Needs python3 for the table. Traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=start-sfu.sh
. loadtest/scripts/start-sfu.sh
SFU_BIN=${SFU_BIN:-target/release/sfu}
LOADTEST_BIN=${LOADTEST_BIN:-target/release/loadtest}
RUNS=${RUNS:-3}
DURATION=${DURATION:-10s}
WORKERS=${WORKERS:-2}
SIMULCAST=${SIMULCAST:-off}
OUT=${OUT:-$(mktemp -d /tmp/loadtest-sweep.XXXXXX)}
COUNTS=("$@")
[ ${#COUNTS[@]} -gt 0 ] || COUNTS=(2 10 20 40 80)
for bin in "$SFU_BIN" "$LOADTEST_BIN"; do
  [ -x "$bin" ] || { echo "missing $bin (cargo build --release -p sfu -p loadtest)" >&2; exit 2; }
done
mkdir -p "$OUT"
for n in "${COUNTS[@]}"; do
  start_sfu "" "$OUT/sfu-$n.log" "$SFU_BIN" --workers "$WORKERS" --log warn || true
  pid=$SFU_PID
  echo "N=$n: $(cut -d' ' -f1-3 /proc/loadavg) load average before the runs"
  for r in $(seq "$RUNS"); do
    "$LOADTEST_BIN" --url "$SFU_URL" --video-publishers 2 --subscribers "$n" \
      --duration "$DURATION" --warmup 3s --simulcast "$SIMULCAST" --server-pid "$pid" --quiet \
      --report "$OUT/n$n-r$r.json" > "$OUT/n$n-r$r.txt" 2>&1 || true
    echo "N=$n run $r: $(grep -E '^(PASS|FAIL)' "$OUT/n$n-r$r.txt" || echo 'no summary')"
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
python3 - "$OUT" "${COUNTS[@]}" <<'PY'
import json, statistics, sys
out, counts = sys.argv[1], sys.argv[2:]
print(f"\nreports in {out}\n")
print("| viewers | forwarded pkt/s | server µs/pkt | server cores | load-tester cores | loss % | p95 ms | tracks | runs |")
print("|---:|---:|---:|---:|---:|---:|---:|---|---:|")
import glob
for n in counts:
    rows = []
    for f in sorted(glob.glob(f"{out}/n{n}-r*.json")):
        r = json.load(open(f))
        s = r.get("server") or {}
        t = r["totals"]
        rows.append((s.get("forwarded_pps", 0), s.get("cpu_us_per_forwarded_packet") or 0,
                     (s.get("window") or {}).get("cores", 0), (r.get("loadtest_cpu") or {}).get("cores", 0),
                     t["loss_pct"], t["latency"]["p95_ms"], f'{t["tracks_received"]}/{t["tracks_expected"]}'))
    if not rows:
        print(f"| {n} | - | - | - | - | - | - | - | 0 |"); continue
    med = lambda i: statistics.median(x[i] for x in rows)
    print(f"| {n} | {med(0):.0f} | {med(1):.2f} | {med(2):.2f} | {med(3):.2f} | {med(4):.3f} | {med(5):.1f} | {rows[len(rows)//2][6]} | {len(rows)} |")
PY
