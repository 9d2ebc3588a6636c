#!/usr/bin/env bash
# Runs the TURN / ICE-TCP end-to-end test (firewall.js) against the server binary in $SFU_BIN.
#
# Five private network namespaces, joined by veth pairs, hold everything; nothing else is reached:
#
#   srv (server, node driver; forwards between P2 and turn only)
#     v-p1   10.98.1.1/24  <-->  p1   eth0 10.98.1.2/24   P1: plain Chromium
#     v-p2   10.98.2.1/24  <-->  p2   eth0 10.98.2.2/24   P2: Chromium with iceTransportPolicy 'relay'
#                                                              (route to 10.98.4.0/24 via 10.98.2.1)
#     v-p3   10.98.3.1/24  <-->  p3   eth0 10.98.3.2/24   P3: Chromium; nftables drops all UDP in p3
#     v-turn 10.98.4.1/24  <-->  turn eth0 10.98.4.2/24   coturn (default route via 10.98.4.1)
#
# coturn must be able to route to every address the server advertises: one failed send (such as
# "Network is unreachable") makes coturn 4.6 stop relaying for that whole allocation.
# The server hands out stun:/turn: URLs of the coturn with credentials from a secret made for this
# run (coturn's use-auth-secret scheme). Installs Chromium, coturn and nftables (Debian) and
# playwright-core (npm, from package-lock.json) when they are missing. Needs root.
#
#   SFU_BIN=target/release/sfu bash sfu/tests/browser/run-firewall.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
me=run-firewall.sh
# shellcheck source=netns.sh
. "$here/netns.sh"

need_sfu_bin
need_root "it creates network namespaces and firewall rules"
need_tools ip ss
need_command nft nftables
need_command turnserver coturn
need_chromium_and_node

# Names unique to this run, so that runs side by side do not collide.
tag="sfufw$$"
export FW_NS_SRV="$tag-srv" FW_NS_P1="$tag-p1" FW_NS_P2="$tag-p2" FW_NS_P3="$tag-p3" FW_NS_TURN="$tag-turn"
export FW_SRV_IP1=10.98.1.1 FW_P1_IP=10.98.1.2
export FW_SRV_IP2=10.98.2.1 FW_P2_IP=10.98.2.2
export FW_SRV_IP3=10.98.3.1 FW_P3_IP=10.98.3.2
export FW_SRV_IP4=10.98.4.1 FW_TURN_IP=10.98.4.2
export FW_TURN_PORT=3478
export FW_NFT_TABLE=sfu_fw_no_udp
workdir="$(mktemp -d "${TMPDIR:-/tmp}/$tag.XXXXXX")"
export FW_TURN_LOG="$workdir/turnserver.log" FW_TURN_OUT="$workdir/turnserver.out"
turn_pid=""

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pid "$node_pid"
  stop_pid "$turn_pid"
  remove_namespaces
  rm -rf "$workdir"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

make_namespaces "$FW_NS_SRV" "$FW_NS_P1" "$FW_NS_P2" "$FW_NS_P3" "$FW_NS_TURN"
link "$FW_NS_SRV" v-p1 "$FW_SRV_IP1" "$FW_NS_P1" "$FW_P1_IP"
link "$FW_NS_SRV" v-p2 "$FW_SRV_IP2" "$FW_NS_P2" "$FW_P2_IP"
link "$FW_NS_SRV" v-p3 "$FW_SRV_IP3" "$FW_NS_P3" "$FW_P3_IP"
link "$FW_NS_SRV" v-turn "$FW_SRV_IP4" "$FW_NS_TURN" "$FW_TURN_IP"
# P2 reaches the TURN server through the server's namespace, which forwards nothing else. coturn
# reaches all of the server's addresses (and P2) through the server's namespace.
ip -n "$FW_NS_P2" route add 10.98.4.0/24 via "$FW_SRV_IP2"
ip -n "$FW_NS_TURN" route add default via "$FW_SRV_IP4"
ip netns exec "$FW_NS_SRV" sysctl -q -w net.ipv4.ip_forward=1
ip netns exec "$FW_NS_SRV" nft -f - <<EOF
table inet sfu_fw_forward {
  chain forward {
    type filter hook forward priority 0; policy drop;
    iifname "v-p2" oifname "v-turn" accept
    iifname "v-turn" oifname "v-p2" accept
  }
}
EOF

# P3's firewall: every UDP packet in or out of its namespace is dropped (counted, for the report).
ip netns exec "$FW_NS_P3" nft -f - <<EOF
table inet $FW_NFT_TABLE {
  chain in {
    type filter hook input priority 0; policy accept;
    meta l4proto udp counter drop
  }
  chain out {
    type filter hook output priority 0; policy accept;
    meta l4proto udp counter drop
  }
}
EOF

# Time-limited TURN credentials: the server and coturn share this secret.
FW_TURN_SECRET="$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')"
export FW_TURN_SECRET
cat >"$workdir/turnserver.conf" <<EOF
listening-ip=$FW_TURN_IP
relay-ip=$FW_TURN_IP
listening-port=$FW_TURN_PORT
min-port=49152
max-port=49407
use-auth-secret
static-auth-secret=$FW_TURN_SECRET
realm=sfu-firewall-test
fingerprint
no-tls
no-dtls
no-cli
no-tcp-relay
no-multicast-peers
userdb=$workdir/turndb
pidfile=$workdir/turnserver.pid
log-file=$FW_TURN_LOG
simple-log
verbose
EOF
ip netns exec "$FW_NS_TURN" turnserver -c "$workdir/turnserver.conf" >"$FW_TURN_OUT" 2>&1 &
turn_pid=$!
turn_ready=""
for _ in $(seq 1 100); do
  if ! kill -0 "$turn_pid" 2>/dev/null; then break; fi
  if [[ -n "$(ip netns exec "$FW_NS_TURN" ss -Hlun "sport = :$FW_TURN_PORT" 2>/dev/null)" ]]; then
    turn_ready=1
    break
  fi
  sleep 0.1
done
if [[ -z "$turn_ready" ]]; then
  echo "run-firewall.sh: coturn did not start listening on $FW_TURN_IP:$FW_TURN_PORT/udp within 10 s" >&2
  tail -n 40 "$FW_TURN_OUT" 2>/dev/null >&2 || true
  echo "firewall-e2e: 0 passed, 1 failed"
  exit 1
fi

# Chromium for each participant starts inside that participant's namespace.
for who in P1 P2 P3; do
  ns_var="FW_NS_$who"
  chromium_in "${!ns_var}" "$workdir/chromium-$who"
  export "FW_CHROMIUM_$who=$workdir/chromium-$who"
done

# The driver runs in the server's namespace (it starts the server there).
run_driver "$FW_NS_SRV" firewall.js
