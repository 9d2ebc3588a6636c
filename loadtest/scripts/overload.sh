#!/usr/bin/env bash
# A server that cannot keep up: one media worker pinned to a core it shares with HOGS busy loops
# (the scheduler gives it about 1/(HOGS+1) of the core), the load tester on another core, and
# more viewers than that share can forward. Prints what the viewers got and what the server did
# about it (its load factor and the input it dropped as stale).
#
#   loadtest/scripts/overload.sh [EXTRA LOADTEST FLAGS...]
#
# Environment: SFU_BIN (default target/release/sfu), LOADTEST_BIN (default
# target/release/loadtest), SERVER_CPUS (0), LOADTEST_CPUS (1), HOGS (7), VIEWERS (100),
# PUBLISHERS (2 simulcast cameras), DURATION (20s), OUT (a new directory under /tmp).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=start-sfu.sh
. loadtest/scripts/start-sfu.sh
SFU_BIN=${SFU_BIN:-target/release/sfu}
LOADTEST_BIN=${LOADTEST_BIN:-target/release/loadtest}
SERVER_CPUS=${SERVER_CPUS:-0}
LOADTEST_CPUS=${LOADTEST_CPUS:-1}
HOGS=${HOGS:-7}
VIEWERS=${VIEWERS:-100}
PUBLISHERS=${PUBLISHERS:-2}
DURATION=${DURATION:-20s}
OUT=${OUT:-$(mktemp -d /tmp/loadtest-overload.XXXXXX)}
for bin in "$SFU_BIN" "$LOADTEST_BIN"; do
  [ -x "$bin" ] || { echo "missing $bin (cargo build --release -p sfu -p loadtest)" >&2; exit 2; }
done
mkdir -p "$OUT"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

for _ in $(seq "$HOGS"); do
  taskset -c "$SERVER_CPUS" sh -c 'while :; do :; done' &
  pids+=($!)
done
start_sfu "$SERVER_CPUS" "$OUT/server.log" "$SFU_BIN" --workers 1 --log warn || true
server=$SFU_PID
pids+=("$server")
taskset -c "$LOADTEST_CPUS" "$LOADTEST_BIN" --url "$SFU_URL" --server-pid "$server" \
  --quiet --duration "$DURATION" --warmup 5s --report "$OUT/report.json" \
  --video-publishers "$PUBLISHERS" --subscribers "$VIEWERS" "$@" > "$OUT/loadtest.txt" 2>&1 || true
curl -fs "$SFU_URL/metrics" 2>/dev/null \
  | grep -E '^sfu_(worker_load_factor|worker_input_wait_seconds|datagrams_stale_total)' \
  > "$OUT/metrics.txt" || true

grep -E '^(kind|audio|video) |server pid|forwarded|stream_state' "$OUT/loadtest.txt" || cat "$OUT/loadtest.txt"
echo
echo "server at the end:"
cat "$OUT/metrics.txt"
echo "reports in $OUT"
