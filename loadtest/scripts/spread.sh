#!/usr/bin/env bash
# One large room on a server with two media workers: CPU per forwarded packet on each worker,
# with the room kept on one worker and with the room spread over both.
#
#   loadtest/scripts/spread.sh [EXTRA LOADTEST FLAGS...]
#
# One camera (one layer) and VIEWERS viewers (default 200) in one room, measured for WINDOW
# seconds (default 10) after SETTLE seconds (default 12) of joining. Run twice on a fresh server:
# `--limits-room-participants-per-worker 0` (the room stays on one worker) and SPREAD (default
# 100: the viewers beyond each worker's 100 go to the least loaded worker). The server and the
# load tester share the machine's cores (nothing is pinned): the figures to compare are each
# worker's CPU per packet it forwarded, and how the packets split between the workers.
#
# Environment: SFU_BIN (default target/release/sfu), LOADTEST_BIN (default
# target/release/loadtest), VIEWERS, SPREAD, SETTLE, WINDOW, OUT (a new directory under /tmp).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=start-sfu.sh
. loadtest/scripts/start-sfu.sh
SFU_BIN=${SFU_BIN:-target/release/sfu}
LOADTEST_BIN=${LOADTEST_BIN:-target/release/loadtest}
VIEWERS=${VIEWERS:-200}
SPREAD=${SPREAD:-100}
SETTLE=${SETTLE:-12}
WINDOW=${WINDOW:-10}
OUT=${OUT:-$(mktemp -d /tmp/loadtest-spread.XXXXXX)}
EXTRA=("$@")
for bin in "$SFU_BIN" "$LOADTEST_BIN"; do
  [ -x "$bin" ] || { echo "missing $bin (cargo build --release -p sfu -p loadtest)" >&2; exit 2; }
done
mkdir -p "$OUT"

pid=""
lt=""
stop() {
  for p in $lt $pid; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  pid=""
  lt=""
}
trap stop EXIT

# CPU ticks of each media worker thread and the packets each forwarded and handed over:
# "worker ticks out relayed_out relayed_in" lines.
sample() {
  local url=$1 metrics
  metrics=$(curl -fs "$url/metrics")
  for task in /proc/"$pid"/task/*; do
    comm=$(cat "$task/comm" 2>/dev/null || true)
    case "$comm" in
      sfu-worker-*)
        w=${comm#sfu-worker-}
        ticks=$(awk '{print $14 + $15}' "$task/stat")
        out=$(grep -E "^sfu_rtp_packets_out_total\{[^}]*worker=\"$w\"" <<< "$metrics" \
          | awk '{s += $NF} END {print s + 0}')
        rout=$(grep -E "^sfu_relayed_packets_total\{[^}]*direction=\"out\"[^}]*worker=\"$w\"|^sfu_relayed_packets_total\{[^}]*worker=\"$w\"[^}]*direction=\"out\"" <<< "$metrics" \
          | awk '{s += $NF} END {print s + 0}')
        rin=$(grep -E "^sfu_relayed_packets_total\{[^}]*direction=\"in\"[^}]*worker=\"$w\"|^sfu_relayed_packets_total\{[^}]*worker=\"$w\"[^}]*direction=\"in\"" <<< "$metrics" \
          | awk '{s += $NF} END {print s + 0}')
        echo "$w $ticks $out $rout $rin"
        ;;
    esac
  done | sort -n
}

run() {
  local name=$1 spread=$2
  start_sfu "" "$OUT/$name.log" "$SFU_BIN" --workers 2 \
    --limits-room-participants-per-worker "$spread" --log warn || true
  pid=$SFU_PID
  "$LOADTEST_BIN" --url "$SFU_URL" --quiet \
    --duration "$(( SETTLE + WINDOW + 3 ))s" --warmup "${SETTLE}s" --report "$OUT/$name.json" \
    --video-publishers 1 --subscribers "$VIEWERS" --publishers-subscribe false --simulcast off \
    "${EXTRA[@]}" > "$OUT/$name.txt" 2>&1 &
  lt=$!
  sleep "$SETTLE"
  sample "$SFU_URL" > "$OUT/$name.before"
  sleep "$WINDOW"
  sample "$SFU_URL" > "$OUT/$name.after"
  wait "$lt" || true
  lt=""
  stop
}

run one-worker 0
run spread "$SPREAD"

python3 - "$OUT" "$WINDOW" "$(getconf CLK_TCK)" <<'PY'
import json, sys
out, window, hz = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
print(f"\nreports in {out}\n")
print("| room | worker | CPU (cores) | packets forwarded/s | µs per forwarded packet | handed over/s (out / in) |")
print("|---|---|---:|---:|---:|---:|")
for name in ["one-worker", "spread"]:
    rows = {}
    for part in ["before", "after"]:
        for line in open(f"{out}/{name}.{part}"):
            w, ticks, fwd, rout, rin = line.split()
            rows.setdefault(w, {})[part] = (float(ticks), float(fwd), float(rout), float(rin))
    for w, r in sorted(rows.items()):
        if "before" not in r or "after" not in r:
            continue
        (t0, f0, o0, i0), (t1, f1, o1, i1) = r["before"], r["after"]
        cpu = (t1 - t0) / hz
        fwd = f1 - f0
        us = f"{cpu * 1e6 / fwd:.1f}" if fwd > 0 else "-"
        print(f"| {name} | {w} | {cpu / window:.2f} | {fwd / window:,.0f} | {us} | "
              f"{(o1 - o0) / window:,.0f} / {(i1 - i0) / window:,.0f} |")
    try:
        r = json.load(open(f"{out}/{name}.json"))
        video = next((k for k in r.get("by_kind", []) if k.get("kind") == "video"), None)
        p95 = video["latency"]["p95_ms"] if video else r["totals"]["latency"]["p95_ms"]
        t = r["totals"]
        print(f"| {name} | bots | video p95 {p95:.1f} ms | loss {t['loss_pct']:.3f} % | "
              f"freezes {t['video_freezes']} | |")
    except (OSError, ValueError, KeyError, TypeError):
        print(f"| {name} | bots | no report (see {name}.txt) | | | |")
PY
