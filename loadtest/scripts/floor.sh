#!/usr/bin/env bash
# The server's CPU per forwarded packet next to what the same output costs a bare sender on this
# machine: for the four scenarios of perpacket.sh, each run of the server (one media worker pinned
# to SERVER_CPUS, the load tester to LOADTEST_CPUS) is followed by a run of `sendfloor` sending
# the scenario's datagrams from SERVER_CPUS to receivers on LOADTEST_CPUS: sealed with AES-GCM,
# handed to the kernel with sendmmsg and GSO as the server does, and nothing else (no WebRTC
# stack, no receive path, no feedback). Next to them, the part of the server's figure spent in its
# own send calls (its metrics say the share): measured in the same process, it is the better
# estimate of what the kernel costs the server; sendfloor's small datagrams cost it more (see
# docs/benchmarks.md, section 9.16).
#
#   loadtest/scripts/floor.sh
#
# The patterns, as the server forwards in each scenario (its metrics give the packets and bytes a
# second, a capture on lo how they are grouped; video goes in GSO runs of about four 1,100-byte
# datagrams to a viewer, Opus packets of 120 bytes each alone):
#   cameras-2x40       video to the 40 viewers and the 2 publishers, 90 runs a second each
#                      (15,120/s); audio to 41 destinations, 100 a second each (4,100/s);
#   single-layer-1x80  video to 80 viewers, 45.6 runs a second each (14,592/s); audio, 50 a
#                      second each (4,000/s);
#   meeting-10x10      video to the 10 publishers, 397 runs a second each (15,880/s); audio, 390
#                      a second each (3,900/s);
#   audio-room-10x60   the ten speakers' packets to the 69 other participants, 500 bursts a
#                      second (34,500/s).
#
# Environment: SFU_BIN (default target/release/sfu), LOADTEST_BIN (target/release/loadtest),
# SENDFLOOR_BIN (target/release/sendfloor), SERVER_CPUS (0), LOADTEST_CPUS (1), DURATION (15s),
# RUNS (3; the table shows medians), OUT (a new directory under /tmp). Needs python3.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=start-sfu.sh
. loadtest/scripts/start-sfu.sh
SFU_BIN=${SFU_BIN:-target/release/sfu}
LOADTEST_BIN=${LOADTEST_BIN:-target/release/loadtest}
SENDFLOOR_BIN=${SENDFLOOR_BIN:-target/release/sendfloor}
SERVER_CPUS=${SERVER_CPUS:-0}
LOADTEST_CPUS=${LOADTEST_CPUS:-1}
DURATION=${DURATION:-15s}
RUNS=${RUNS:-3}
OUT=${OUT:-$(mktemp -d /tmp/loadtest-floor.XXXXXX)}
for bin in "$SFU_BIN" "$LOADTEST_BIN" "$SENDFLOOR_BIN"; do
  [ -x "$bin" ] || { echo "missing $bin (cargo build --release -p sfu -p loadtest)" >&2; exit 2; }
done
mkdir -p "$OUT"

SCENARIOS=(
  "cameras-2x40|--video-publishers 2 --subscribers 40|--pattern 42x4x1100@90 --pattern 41x1x120@100"
  "single-layer-1x80|--video-publishers 1 --subscribers 80 --simulcast off --publishers-subscribe false|--pattern 80x4x1100@45.6 --pattern 80x1x120@50"
  "meeting-10x10|--preset meeting-10x10|--pattern 10x4x1100@397 --pattern 10x1x120@390"
  "audio-room-10x60|--preset audio-room-10xN --subscribers 60|--pattern 69x1x120@500"
)

trap stop_sfu EXIT

for run in $(seq "$RUNS"); do
  for entry in "${SCENARIOS[@]}"; do
    IFS='|' read -r name server_flags floor_flags <<< "$entry"
    read -r -a sflags <<< "$server_flags"
    read -r -a fflags <<< "$floor_flags"
    echo "$name run $run: load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
    start_sfu "$SERVER_CPUS" "$OUT/$name-$run.log" "$SFU_BIN" --workers 1 --log warn || true
    taskset -c "$LOADTEST_CPUS" "$LOADTEST_BIN" --url "$SFU_URL" --server-pid "$SFU_PID" \
      --quiet --duration "$DURATION" --warmup 3s --report "$OUT/$name-$run.json" \
      "${sflags[@]}" > "$OUT/$name-$run.txt" 2>&1 || true
    stop_sfu
    "$SENDFLOOR_BIN" --sender-cpu "$SERVER_CPUS" --receiver-cpu "$LOADTEST_CPUS" \
      --duration "$DURATION" --warmup 3s "${fflags[@]}" > "$OUT/$name-$run.floor" 2>&1 || true
  done
done

python3 - "$OUT" "$RUNS" "${SCENARIOS[@]}" <<'PY'
import json, os, statistics, sys
out, runs, scenarios = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
print(f"\nreports in {out}\n")
print("| scenario | server µs/pkt | of which its send calls | floor µs/datagram | server − floor | floor's share | runs |")
print("|---|---:|---:|---:|---:|---:|---:|")
for entry in scenarios:
    name = entry.split("|", 1)[0]
    server, sends, floor = [], [], []
    for run in range(1, runs + 1):
        try:
            r = json.load(open(os.path.join(out, f"{name}-{run}.json")))
            us = (r.get("server") or {}).get("cpu_us_per_forwarded_packet")
            if us is not None:
                server.append(us)
            send = (r.get("server") or {}).get("send_us_per_forwarded_packet")
            if send is not None:
                sends.append(send)
        except (OSError, ValueError):
            pass
        try:
            for line in open(os.path.join(out, f"{name}-{run}.floor")):
                if line.startswith("us_per_datagram "):
                    floor.append(float(line.split()[1]))
        except OSError:
            pass
    if not server or not floor:
        print(f"| {name} | no result (see {name}-*.txt, *.floor) |||||| 0 |")
        continue
    s, f = statistics.median(server), statistics.median(floor)
    send = f"{statistics.median(sends):.2f}" if sends else "n/a"
    print(f"| {name} | {s:.2f} | {send} | {f:.2f} | {s - f:.2f} | {100 * f / s:.0f} % | {min(len(server), len(floor))} |")
PY
