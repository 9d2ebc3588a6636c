#!/usr/bin/env bash
# Runs the network-trouble end-to-end test (network.js) against the server binary in $SFU_BIN.
#
# Three private network namespaces joined by veth pairs; nothing else is reached:
#
#   srv (two servers on loopback, the load balancer in front of them, the node driver)
#     v-p1  10.97.1.1/24  <-->  p1  eth0 10.97.1.2/24   P1: the Chromium whose network suffers
#           10.97.3.1/24                 (10.97.3.2/24 later: its new network)
#     v-p2  10.97.2.1/24  <-->  p2  eth0 10.97.2.2/24   P2: the Chromium that watches it
#
# Installs Chromium and nftables (Debian) and playwright-core (npm, from package-lock.json) when
# they are missing. Needs root.
#
#   SFU_BIN=target/release/sfu bash sfu/tests/browser/run-network.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [[ -z "${SFU_BIN:-}" ]]; then
  echo "run-network.sh: set SFU_BIN to the sfu server binary" >&2
  exit 2
fi
SFU_BIN="$(realpath "$SFU_BIN")"
export SFU_BIN

if [[ "$(id -u)" != 0 ]]; then
  echo "run-network.sh: needs root (it creates network namespaces and firewall rules)" >&2
  exit 2
fi
for tool in ip ss; do
  if ! command -v "$tool" >/dev/null; then
    echo "run-network.sh: '$tool' (iproute2) is needed" >&2
    exit 2
  fi
done

apt_install() {
  local package="$1"
  if ! command -v apt-get >/dev/null; then
    echo "run-network.sh: '$package' (Debian package) is needed" >&2
    exit 2
  fi
  echo "run-network.sh: installing $package" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "$package" >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q "$package" >/dev/null; }
}
command -v nft >/dev/null || apt_install nftables

export CHROMIUM_PATH="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [[ ! -x "$CHROMIUM_PATH" ]]; then
  if command -v apt-get >/dev/null; then
    apt_install chromium
  else
    echo "run-network.sh: no browser at $CHROMIUM_PATH; install Debian's chromium or set CHROMIUM_PATH" >&2
    exit 2
  fi
fi

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "run-network.sh: node (>= 20) and npm are needed" >&2
  exit 2
fi

cd "$here"
if [[ ! -d node_modules/playwright-core ]]; then
  echo "run-network.sh: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi

# Names unique to this run, so that runs side by side do not collide.
tag="sfunet$$"
export NET_NS_SRV="$tag-srv" NET_NS_P1="$tag-p1" NET_NS_P2="$tag-p2"
export NET_SRV_IP1=10.97.1.1 NET_P1_IP=10.97.1.2 NET_SRV_IP1_NEW=10.97.3.1 NET_P1_IP_NEW=10.97.3.2
export NET_SRV_IP2=10.97.2.1 NET_P2_IP=10.97.2.2
workdir="$(mktemp -d "${TMPDIR:-/tmp}/$tag.XXXXXX")"
node_pid=""

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n "$node_pid" ]] && kill -0 "$node_pid" 2>/dev/null; then
    kill -TERM "$node_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$node_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$node_pid" 2>/dev/null || true
  fi
  # Whatever still runs inside the test namespaces was started by this run.
  for ns in "$NET_NS_P2" "$NET_NS_P1" "$NET_NS_SRV"; do
    [[ -e "/run/netns/$ns" ]] || continue
    local pids
    pids="$(ip netns pids "$ns" 2>/dev/null || true)"
    if [[ -n "$pids" ]]; then
      kill -TERM $pids 2>/dev/null || true
      sleep 0.5
      pids="$(ip netns pids "$ns" 2>/dev/null || true)"
      [[ -z "$pids" ]] || kill -KILL $pids 2>/dev/null || true
    fi
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$workdir"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for ns in "$NET_NS_SRV" "$NET_NS_P1" "$NET_NS_P2"; do
  ip netns add "$ns"
  ip -n "$ns" link set lo up
done
# The servers' fixed ports lie in Linux's default range for outgoing connections: there,
# outgoing connections take ports from 50000 up, so none holds a number a server binds later.
ip netns exec "$NET_NS_SRV" sysctl -qw net.ipv4.ip_local_port_range="50000 60999"
link() { # link <srv device> <srv ip> <namespace> <its ip>
  ip -n "$NET_NS_SRV" link add "$1" type veth peer name eth0 netns "$3"
  ip -n "$NET_NS_SRV" addr add "$2/24" dev "$1"
  ip -n "$3" addr add "$4/24" dev eth0
  ip -n "$NET_NS_SRV" link set "$1" up
  ip -n "$3" link set eth0 up
}
link v-p1 "$NET_SRV_IP1" "$NET_NS_P1" "$NET_P1_IP"
link v-p2 "$NET_SRV_IP2" "$NET_NS_P2" "$NET_P2_IP"
# The network P1 moves to: another subnet on the same link.
ip -n "$NET_NS_SRV" addr add "$NET_SRV_IP1_NEW/24" dev v-p1
export NET_SRV_DEV1=v-p1

# Chromium for each participant starts inside that participant's namespace; Playwright's pipes
# pass through `ip netns exec`, which execs the browser.
for who in P1 P2; do
  ns_var="NET_NS_$who"
  wrapper="$workdir/chromium-$who"
  printf '#!/bin/sh\nexec ip netns exec %q %q "$@"\n' "${!ns_var}" "$CHROMIUM_PATH" >"$wrapper"
  chmod +x "$wrapper"
  export "NET_CHROMIUM_$who=$wrapper"
done

# The driver runs in the server's namespace (it starts the servers there and changes the other
# namespaces' links, addresses and firewalls). It runs in the background so that a TERM sent to
# this script reaches the trap at once.
ip netns exec "$NET_NS_SRV" node network.js &
node_pid=$!
set +e
wait "$node_pid"
rc=$?
set -e
node_pid=""
exit "$rc"
