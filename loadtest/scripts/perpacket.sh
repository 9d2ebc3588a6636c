#!/usr/bin/env bash
# Server CPU per forwarded packet in four scenarios, with the server (one media worker) pinned to
# one core and the load tester to another; prints one table.
#
#   loadtest/scripts/perpacket.sh [EXTRA LOADTEST FLAGS...]
#
# Scenarios: two simulcast cameras and 40 viewers; one single-layer camera and 80 viewers;
# the meeting-10x10 preset; the audio-room-10xN preset with 60 listeners. Each is measured for
# DURATION (default 15s) after a 3 s warm-up, on a fresh server. "Of which send calls" is the
# part of the figure the worker spent in its send system calls (its metrics say the share): the
# kernel's work for the datagrams, on loopback also their delivery to the bots.
#
# Environment: SFU_BIN (default target/release/sfu), LOADTEST_BIN (default
# target/release/loadtest), WORKERS (default 1), SERVER_CPUS (0), LOADTEST_CPUS (1), DURATION
# (15s), RUNS (runs per scenario, default 1; the table shows the median by µs per packet), OUT (a
# new directory under /tmp). Needs python3 for the table.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=start-sfu.sh
. loadtest/scripts/start-sfu.sh
SFU_BIN=${SFU_BIN:-target/release/sfu}
LOADTEST_BIN=${LOADTEST_BIN:-target/release/loadtest}
WORKERS=${WORKERS:-1}
SERVER_CPUS=${SERVER_CPUS:-0}
LOADTEST_CPUS=${LOADTEST_CPUS:-1}
DURATION=${DURATION:-15s}
RUNS=${RUNS:-1}
OUT=${OUT:-$(mktemp -d /tmp/loadtest-perpacket.XXXXXX)}
EXTRA=("$@")
for bin in "$SFU_BIN" "$LOADTEST_BIN"; do
  [ -x "$bin" ] || { echo "missing $bin (cargo build --release -p sfu -p loadtest)" >&2; exit 2; }
done
mkdir -p "$OUT"

SCENARIOS=(
  "cameras-2x40|--video-publishers 2 --subscribers 40"
  "single-layer-1x80|--video-publishers 1 --subscribers 80 --simulcast off --publishers-subscribe false"
  "meeting-10x10|--preset meeting-10x10"
  "audio-room-10x60|--preset audio-room-10xN --subscribers 60"
)

trap stop_sfu EXIT

for entry in "${SCENARIOS[@]}"; do
  name=${entry%%|*}
  read -r -a flags <<< "${entry#*|}"
  for run in $(seq "$RUNS"); do
    start_sfu "$SERVER_CPUS" "$OUT/$name-$run.log" "$SFU_BIN" --workers "$WORKERS" --log warn || true
    echo "$name run $run: load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
    taskset -c "$LOADTEST_CPUS" "$LOADTEST_BIN" --url "$SFU_URL" --server-pid "$SFU_PID" \
      --quiet --duration "$DURATION" --warmup 3s --report "$OUT/$name-$run.json" \
      "${flags[@]}" "${EXTRA[@]}" > "$OUT/$name-$run.txt" 2>&1 || true
    stop_sfu
  done
done

python3 - "$OUT" "$RUNS" "${SCENARIOS[@]}" <<'PY'
import json, os, statistics, sys
out, runs, scenarios = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
print(f"\nreports in {out}\n")
print("| scenario | flags | forwarded pkt/s | server µs/pkt | of which send calls | server cores | p95 ms (video; audio if none) | loss % | freezes | runs |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for entry in scenarios:
    name, flags = entry.split("|", 1)
    rows = []
    for run in range(1, runs + 1):
        try:
            r = json.load(open(os.path.join(out, f"{name}-{run}.json")))
        except (OSError, ValueError):
            continue
        s = r.get("server") or {}
        us = s.get("cpu_us_per_forwarded_packet")
        if us is None:
            continue
        video = next((k for k in r.get("by_kind", []) if k.get("kind") == "video"), None)
        rows.append((us, s.get("send_us_per_forwarded_packet"), s.get("forwarded_pps", 0),
                     (s.get("window") or {}).get("cores", 0),
                     video["latency"]["p95_ms"] if video and video.get("tracks")
                     else r["totals"]["latency"]["p95_ms"],
                     r["totals"]["loss_pct"], r["totals"]["video_freezes"]))
    if not rows:
        print(f"| {name} | `{flags}` | no report (see {name}-*.txt) ||||||| 0 |")
        continue
    rows.sort(key=lambda x: x[0])
    us, send, pps, cores, p95, loss, freezes = rows[(len(rows) - 1) // 2]
    p95_text = f"{p95:.1f}"
    send_text = "n/a" if send is None else f"{send:.2f}"
    print(f"| {name} | `{flags}` | {pps:.0f} | {us:.1f} | {send_text} | {cores:.2f} | {p95_text} | "
          f"{loss:.3f} | {freezes} | {len(rows)} |")
PY
