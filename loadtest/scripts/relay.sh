#!/usr/bin/env bash
# One room over one, two and three nodes of a cluster on this machine (a private redis-server
# holds its state): what crosses between the nodes, what each node spends, and the latency one
# relay hop adds.
#
#   loadtest/scripts/relay.sh [EXTRA LOADTEST FLAGS...]
#
# Runs, each SETTLE seconds (default 8) of joining then WINDOW seconds (default 10) measured:
#   hop-local   one node, one simulcast camera and 2 viewers on it
#   hop-relay   three nodes taking one participant of a room each: the camera on the first, one
#               viewer on each other node, so that every viewer is one relay hop away
#   nN-vV       N nodes (1, 2, 3), the camera and V viewers (VIEWERS, default "12 24"), each node
#               taking ceil((V + 1) / N) participants of the room
#   pubs-one    one node, six cameras (who receive each other too) and six viewers
#   pubs-relay  the same room on two nodes taking six participants of it each: the two nodes'
#               CPU beyond pubs-one's, per packet relayed, is what relaying costs both sides
# For each node: CPU (cores), RTP packets it sent to clients per second, packets it relayed out
# and in per second, and CPU per packet sent or relayed out. The nodes and the load tester share
# the machine's cores (nothing is pinned).
#
# RELAY_LOSS=P (a percentage; needs root and nft) runs everything in a private network namespace
# where P % of the datagrams between the nodes (UDP between two ephemeral ports: the relays'
# sockets; clients talk to the nodes' fixed media ports) are dropped on arrival.
#
# Environment: SFU_BIN (default target/release/sfu), LOADTEST_BIN (default
# target/release/loadtest), VIEWERS, SETTLE, WINDOW, OUT (a new directory under /tmp), RUNS
# (default "hop-local hop-relay pubs-one pubs-relay nodes": which runs, "nodes" being the nN-vV
# ones), RELAY_LOSS.
set -euo pipefail
cd "$(dirname "$0")/../.."
SFU_BIN=${SFU_BIN:-target/release/sfu}
LOADTEST_BIN=${LOADTEST_BIN:-target/release/loadtest}
VIEWERS=${VIEWERS:-12 24}
SETTLE=${SETTLE:-8}
WINDOW=${WINDOW:-10}
OUT=${OUT:-$(mktemp -d /tmp/loadtest-relay.XXXXXX)}
RUNS=${RUNS:-hop-local hop-relay pubs-one pubs-relay nodes}
EXTRA=("$@")
if [ -n "${RELAY_LOSS:-}" ] && [ -z "${RELAY_NETNS:-}" ]; then
  command -v nft > /dev/null || { echo "RELAY_LOSS needs nft (apt-get install nftables)" >&2; exit 2; }
  export OUT RUNS RELAY_NETNS=1
  exec unshare --net "$0" "$@"
fi
if [ -n "${RELAY_NETNS:-}" ]; then
  ip link set lo up
  nft add table inet relayloss
  nft add chain inet relayloss pre '{ type filter hook prerouting priority -300; }'
  nft add rule inet relayloss pre udp sport '>=' 32768 udp dport '>=' 32768 \
    numgen random mod 100 '<' "$RELAY_LOSS" counter drop
fi
for bin in "$SFU_BIN" "$LOADTEST_BIN"; do
  [ -x "$bin" ] || { echo "missing $bin (cargo build --release -p sfu -p loadtest)" >&2; exit 2; }
done
command -v redis-server > /dev/null || { echo "needs redis-server (apt-get install redis-server)" >&2; exit 2; }
mkdir -p "$OUT"
export SFU_API_KEY=APIrelaybench SFU_API_SECRET=a-secret-for-the-relay-benchmark-of-40-chars
SECRET=a-cluster-secret-for-the-relay-benchmark

pids=()
lt=""
redis=""
stop() {
  for p in $lt "${pids[@]}" $redis; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  pids=()
  lt=""
  redis=""
}
trap stop EXIT

# "node ticks sent relay_out relay_in asked_again resent" for each node.
sample() {
  local i=0
  for port in "$@"; do
    local pid=${pids[$i]} metrics ticks
    metrics=$(curl -fs "http://127.0.0.1:$port/metrics" || true)
    ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    sum() { grep -E "^$1(\{| )" <<< "$metrics" | grep -E "$2" | awk '{s += $NF} END {print s + 0}'; }
    echo "$((i + 1)) $ticks $(sum sfu_rtp_packets_out_total .) \
      $(sum sfu_relay_packets_total 'direction="out"') $(sum sfu_relay_packets_total 'direction="in"') \
      $(sum sfu_relay_nacks_total 'direction="out"') $(sum sfu_relay_resent_total .)"
    i=$((i + 1))
  done
}

run() {
  local name=$1 nodes=$2 per_node=$3 viewers=$4 cameras=${5:-1} ports=() urls="" base
  # Below the ephemeral range (see RELAY_LOSS).
  base=$(( 20000 + RANDOM % 10000 ))
  local rport=$((base + 99))
  redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no > "$OUT/$name.redis.log" 2>&1 &
  redis=$!
  sleep 0.3
  for i in $(seq "$nodes"); do
    local port=$((base + i))
    local relay=()
    if [ "$nodes" -gt 1 ]; then
      relay=(--cluster-secret "$SECRET" --cluster-room-participants-per-node "$per_node")
    fi
    "$SFU_BIN" --http "127.0.0.1:$port" --udp-ip 127.0.0.1 --udp-port $((port + 50)) --advertise-ip 127.0.0.1 \
      --workers 1 --redis "redis://127.0.0.1:$rport/0" --node-id "n$i" "${relay[@]}" --log warn \
      > "$OUT/$name.n$i.log" 2>&1 &
    pids+=($!)
    ports+=("$port")
    urls="$urls${urls:+,}http://127.0.0.1:$port"
  done
  for port in "${ports[@]}"; do
    for _ in $(seq 50); do
      curl -fs "http://127.0.0.1:$port/readyz" > /dev/null 2>&1 && break
      sleep 0.2
    done
  done
  sleep 2.2
  "$LOADTEST_BIN" --urls "$urls" --quiet \
    --duration "$(( SETTLE + WINDOW + 2 ))s" --warmup "${SETTLE}s" --report "$OUT/$name.json" \
    --video-publishers "$cameras" --subscribers "$viewers" --publishers-subscribe false \
    "${EXTRA[@]}" > "$OUT/$name.txt" 2>&1 &
  lt=$!
  sleep "$SETTLE"
  sample "${ports[@]}" > "$OUT/$name.before"
  sleep "$WINDOW"
  sample "${ports[@]}" > "$OUT/$name.after"
  wait "$lt" || true
  lt=""
  stop
}

names=()
wanted() { [[ " $RUNS " == *" $1 "* ]]; }
wanted hop-local && run hop-local 1 0 2 && names+=(hop-local)
wanted hop-relay && run hop-relay 3 1 2 && names+=(hop-relay)
wanted pubs-one && run pubs-one 1 0 6 6 && names+=(pubs-one)
wanted pubs-relay && run pubs-relay 2 6 6 6 && names+=(pubs-relay)
if wanted nodes; then
  for v in $VIEWERS; do
    for n in 1 2 3; do
      run "n$n-v$v" "$n" $(( (v + 1 + n - 1) / n )) "$v"
      names+=("n$n-v$v")
    done
  done
fi
if [ -n "${RELAY_NETNS:-}" ]; then
  echo "datagrams between nodes dropped: $(nft list chain inet relayloss pre | grep -o 'packets [0-9]*')"
fi

python3 - "$OUT" "$WINDOW" "$(getconf CLK_TCK)" "${names[@]}" <<'PY'
import json, sys
out, window, hz, names = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
print(f"\nreports in {out}\n")
print("| run | node | CPU (cores) | sent to clients/s | relayed out/s | relayed in/s | µs per packet sent or relayed out |")
print("|---|---|---:|---:|---:|---:|---:|")
for name in names:
    rows = {}
    for part in ["before", "after"]:
        for line in open(f"{out}/{name}.{part}"):
            n, *values = line.split()
            rows.setdefault(n, {})[part] = tuple(float(v) for v in values)
    for n, r in sorted(rows.items()):
        if "before" not in r or "after" not in r:
            continue
        (t0, s0, o0, i0, a0, r0), (t1, s1, o1, i1, a1, r1) = r["before"], r["after"]
        cpu = (t1 - t0) / hz
        work = (s1 - s0) + (o1 - o0)
        us = f"{cpu * 1e6 / work:.1f}" if work > 0 else "-"
        repair = f" (frames asked again {(a1 - a0) / window:.1f}/s, sent again {(r1 - r0) / window:.1f}/s)" if a1 + r1 > a0 + r0 else ""
        print(f"| {name} | n{n} | {cpu / window:.3f} | {(s1 - s0) / window:,.0f} | "
              f"{(o1 - o0) / window:,.0f} | {(i1 - i0) / window:,.0f}{repair} | {us} |")
    try:
        r = json.load(open(f"{out}/{name}.json"))
        video = next((k for k in r.get("by_kind", []) if k.get("kind") == "video"), None)
        lat = video["latency"] if video else r["totals"]["latency"]
        t = r["totals"]
        print(f"| {name} | bots | video p50 {lat['p50_ms']:.2f} ms, p95 {lat['p95_ms']:.2f} ms | "
              f"loss {t['loss_pct']:.3f} % | freezes {t['video_freezes']} | "
              f"tracks {t['tracks_received']}/{t['tracks_expected']} | |")
    except (OSError, ValueError, KeyError, TypeError):
        print(f"| {name} | bots | no report (see {name}.txt) | | | | |")
PY
