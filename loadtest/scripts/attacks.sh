#!/usr/bin/env bash
# The same small call without an attacker, then next to each attack alone: one line per run with
# loss, freezes, the longest freeze, bots the server removed, video p95 latency, tracks received
# and the attacker's alarms.
#
#   loadtest/scripts/attacks.sh [URL]
#
# With URL every run goes to that server (it must be on 127.0.0.1); without, each run gets a
# fresh server from SFU_BIN on a free port, so that one attack's leftovers do not spill into the
# next run.
#
# Environment: SFU_BIN (default target/release/sfu), LOADTEST_BIN (default
# target/release/loadtest), ATTACKS (default: all seven, space-separated), DURATION (15s),
# PUBLISHERS (2), SUBSCRIBERS (4), WORKERS (1), EXTRA (more loadtest flags, e.g.
# "--stun-flood-rate 100"), OUT (a new directory under /tmp). Needs python3 for the table.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=start-sfu.sh
. loadtest/scripts/start-sfu.sh
SFU_BIN=${SFU_BIN:-target/release/sfu}
LOADTEST_BIN=${LOADTEST_BIN:-target/release/loadtest}
ATTACKS=${ATTACKS:-stun-flood track-flood slowloris ws-flood bad-sdp garbage-udp oversize}
DURATION=${DURATION:-15s}
PUBLISHERS=${PUBLISHERS:-2}
SUBSCRIBERS=${SUBSCRIBERS:-4}
WORKERS=${WORKERS:-1}
EXTRA=${EXTRA:-}
OUT=${OUT:-$(mktemp -d /tmp/loadtest-attacks.XXXXXX)}
URL=${1:-}
[ -x "$LOADTEST_BIN" ] || { echo "missing $LOADTEST_BIN (cargo build --release -p loadtest)" >&2; exit 2; }
if [ -z "$URL" ]; then
  [ -x "$SFU_BIN" ] || { echo "missing $SFU_BIN (cargo build --release -p sfu)" >&2; exit 2; }
fi
mkdir -p "$OUT"
trap stop_sfu EXIT

run() { # name, loadtest flags...
  local name=$1; shift
  local url=$URL server_pid=()
  if [ -z "$URL" ]; then
    start_sfu "" "$OUT/sfu-$name.log" "$SFU_BIN" --workers "$WORKERS" --log warn || true
    url=$SFU_URL
    server_pid=(--server-pid "$SFU_PID")
  fi
  # shellcheck disable=SC2086 # EXTRA is a list of flags
  "$LOADTEST_BIN" --url "$url" --video-publishers "$PUBLISHERS" --subscribers "$SUBSCRIBERS" \
    --duration "$DURATION" --warmup 2s --quiet --max-loss 1 --max-freezes 3 "${server_pid[@]}" \
    --report "$OUT/$name.json" "$@" $EXTRA > "$OUT/$name.txt" 2>&1 || true
  stop_sfu
  echo "$name: $(grep -E '^(PASS|FAIL)' "$OUT/$name.txt" || echo 'no summary')" >&2
}

run baseline
for a in $ATTACKS; do
  run "$a" --attack "$a"
done

python3 - "$OUT" baseline $ATTACKS <<'PY'
import json, sys
out, names = sys.argv[1], sys.argv[2:]
print(f"\nreports in {out}\n")
print("| run | loss % | freezes | longest freeze ms | removed bots | video p95 ms | tracks | attacker alarms |")
print("|---|---:|---:|---:|---|---:|---|---:|")
for n in names:
    try:
        r = json.load(open(f"{out}/{n}.json"))
    except (OSError, ValueError):
        print(f"| {n} | no report | | | | | | |")
        continue
    t = r["totals"]
    video = next((k for k in r["by_kind"] if k["kind"] == "video"), None)
    removed = t.get("bots_removed") or {}
    removed_text = ", ".join(f"{v} {k}" for k, v in removed.items()) or "0"
    alarms = sum(len(a["alarms"]) for a in r.get("attacks", []))
    print(f"| {n} | {t['loss_pct']:.2f} | {t['video_freezes']} | "
          f"{(video or {}).get('longest_freeze_ms', 0):.0f} | {removed_text} | "
          f"{((video or {}).get('latency') or {}).get('p95_ms', 0):.1f} | "
          f"{t['tracks_received']}/{t['tracks_expected']} | {alarms} |")
PY
