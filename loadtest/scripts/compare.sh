#!/usr/bin/env bash
# The same scenario against this server (through its WebSocket protocol, then through WHIP and
# WHEP) and against Janus's VideoRoom, one after the other, each server pinned to core 0 and the
# load tester to core 1; prints one table.
#
#   loadtest/scripts/compare.sh [LOADTEST FLAGS...]
#   (default: --video-publishers 1 --subscribers 20 --publishers-subscribe false --duration 20s)
#
# Janus runs through loadtest/scripts/janus.sh (root, network namespace; installed when missing).
# Environment: SFU_BIN (default target/release/sfu), LOADTEST_BIN (default
# target/release/loadtest), WORKERS (this server's media workers, default 1), SERVER_CPUS (0),
# LOADTEST_CPUS (1), OUT (a new directory under /tmp). Needs python3 for the table.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=start-sfu.sh
. loadtest/scripts/start-sfu.sh
SFU_BIN=${SFU_BIN:-target/release/sfu}
LOADTEST_BIN=${LOADTEST_BIN:-target/release/loadtest}
WORKERS=${WORKERS:-1}
SERVER_CPUS=${SERVER_CPUS:-0}
LOADTEST_CPUS=${LOADTEST_CPUS:-1}
OUT=${OUT:-$(mktemp -d /tmp/loadtest-compare.XXXXXX)}
FLAGS=("$@")
[ ${#FLAGS[@]} -gt 0 ] || FLAGS=(--video-publishers 1 --subscribers 20 --publishers-subscribe false --duration 20s)
for bin in "$SFU_BIN" "$LOADTEST_BIN"; do
  [ -x "$bin" ] || { echo "missing $bin (cargo build --release -p sfu -p loadtest)" >&2; exit 2; }
done
mkdir -p "$OUT"

trap stop_sfu EXIT

start_sfu "$SERVER_CPUS" "$OUT/sfu.log" "$SFU_BIN" --workers "$WORKERS" --log warn \
  --http-limits-max-whip-sessions-per-ip 1000 || true
echo "this server: $(cut -d' ' -f1-3 /proc/loadavg) load average before the run" >&2
taskset -c "$LOADTEST_CPUS" "$LOADTEST_BIN" --url "$SFU_URL" --server-pid "$SFU_PID" \
  --quiet --report "$OUT/sfu.json" "${FLAGS[@]}" > "$OUT/sfu.txt" 2>&1 || true
grep -E '^(PASS|FAIL)' "$OUT/sfu.txt" >&2 || tail -5 "$OUT/sfu.txt" >&2
echo "this server over WHIP/WHEP: $(cut -d' ' -f1-3 /proc/loadavg) load average before the run" >&2
taskset -c "$LOADTEST_CPUS" "$LOADTEST_BIN" --target whip-whep --url "$SFU_URL" \
  --server-pid "$SFU_PID" --quiet --report "$OUT/whip.json" "${FLAGS[@]}" > "$OUT/whip.txt" 2>&1 || true
stop_sfu
grep -E '^(PASS|FAIL)' "$OUT/whip.txt" >&2 || tail -5 "$OUT/whip.txt" >&2

echo "janus: $(cut -d' ' -f1-3 /proc/loadavg) load average before the run" >&2
JANUS_CPUS=$SERVER_CPUS LOADTEST_CPUS=$LOADTEST_CPUS LOADTEST_BIN=$LOADTEST_BIN \
  loadtest/scripts/janus.sh --quiet --report "$OUT/janus.json" "${FLAGS[@]}" \
  > "$OUT/janus.txt" 2>&1 || true
grep -E '^(PASS|FAIL)' "$OUT/janus.txt" >&2 || tail -5 "$OUT/janus.txt" >&2

python3 - "$OUT" "${FLAGS[*]}" <<'PY'
import json, os, sys
out, flags = sys.argv[1], sys.argv[2]
print(f"\nloadtest {flags}\nreports in {out}\n")
print("| server | forwarded pkt/s | server cores | server µs/pkt | p50 ms | p95 ms | loss % | freezes | tracks | server RSS MiB | gates |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|")
for name, label in (("sfu", "this server"), ("whip", "this server, WHIP/WHEP"),
                    ("janus", "Janus VideoRoom")):
    path = os.path.join(out, f"{name}.json")
    try:
        r = json.load(open(path))
    except (OSError, ValueError):
        print(f"| {label} | no report (see {name}.txt) |||||||||")
        continue
    t, s = r["totals"], r.get("server") or {}
    w = s.get("window") or {}
    us = s.get("cpu_us_per_forwarded_packet")
    print(f"| {label} | {s.get('forwarded_pps', 0):.0f} | {w.get('cores', 0):.2f} | "
          f"{us:.1f} | " if us is not None else f"| {label} | - | - | - | ", end="")
    print(f"{t['latency']['p50_ms']:.2f} | {t['latency']['p95_ms']:.2f} | {t['loss_pct']:.3f} | "
          f"{t['video_freezes']} | {t['tracks_received']}/{t['tracks_expected']} | "
          f"{w.get('rss_end_mib', 0):.0f} | {'pass' if r['passed'] else 'FAIL'} |")
PY
