#!/usr/bin/env bash
# Runs the simulcast end-to-end test (simulcast.js) against the server binary in $SFU_BIN.
#
# Three private network namespaces, joined by veth pairs, hold everything; nothing else is reached:
#
#   srv (server, publisher P, the node driver)   s1 (subscriber S1)     s2 (subscriber S2)
#     v-s1 10.99.1.1/24  <--------------------->  eth0 10.99.1.2/24
#     v-s2 10.99.2.1/24  <------------------------------------------->  eth0 10.99.2.2/24
#
# The driver shapes the srv <-> s2 link while it runs (tc tbf for the cap, nftables for random
# loss; both directions). Installs Chromium and nftables (Debian) and playwright-core (npm, from
# package-lock.json) when they are missing. Needs root.
#
#   SFU_BIN=target/debug/sfu bash sfu/tests/browser/run-simulcast.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [[ -z "${SFU_BIN:-}" ]]; then
  echo "run-simulcast.sh: set SFU_BIN to the sfu server binary" >&2
  exit 2
fi
SFU_BIN="$(realpath "$SFU_BIN")"
export SFU_BIN

if [[ "$(id -u)" != 0 ]]; then
  echo "run-simulcast.sh: needs root (it creates network namespaces and shapes links with tc)" >&2
  exit 2
fi
for tool in ip tc; do
  if ! command -v "$tool" >/dev/null; then
    echo "run-simulcast.sh: '$tool' (iproute2) is needed" >&2
    exit 2
  fi
done
# Random loss is made with nftables (numgen): kernels without sch_netem are common in containers.
if ! command -v nft >/dev/null; then
  if command -v apt-get >/dev/null; then
    echo "run-simulcast.sh: installing nftables" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q nftables >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q nftables >/dev/null; }
  else
    echo "run-simulcast.sh: 'nft' (nftables) is needed" >&2
    exit 2
  fi
fi

export CHROMIUM_PATH="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [[ ! -x "$CHROMIUM_PATH" ]]; then
  if command -v apt-get >/dev/null; then
    echo "run-simulcast.sh: installing chromium" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
  else
    echo "run-simulcast.sh: no browser at $CHROMIUM_PATH; install Debian's chromium or set CHROMIUM_PATH" >&2
    exit 2
  fi
fi

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "run-simulcast.sh: node (>= 20) and npm are needed" >&2
  exit 2
fi

cd "$here"
if [[ ! -d node_modules/playwright-core ]]; then
  echo "run-simulcast.sh: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi

# Names unique to this run, so that runs side by side do not collide.
tag="sfusc$$"
export SC_NS_SRV="$tag-srv" SC_NS_S1="$tag-s1" SC_NS_S2="$tag-s2"
export SC_SRV_IP1=10.99.1.1 SC_S1_IP=10.99.1.2 SC_SRV_IP2=10.99.2.1 SC_S2_IP=10.99.2.2
export SC_SRV_DEV_S2=v-s2 SC_S2_DEV=eth0
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
  for ns in "$SC_NS_S2" "$SC_NS_S1" "$SC_NS_SRV"; do
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

for ns in "$SC_NS_SRV" "$SC_NS_S1" "$SC_NS_S2"; do
  ip netns add "$ns"
  ip -n "$ns" link set lo up
done
# The servers' fixed ports lie in Linux's default range for outgoing connections: there,
# outgoing connections take ports from 50000 up, so none holds a number a server binds later.
ip netns exec "$SC_NS_SRV" sysctl -qw net.ipv4.ip_local_port_range="50000 60999"
ip -n "$SC_NS_SRV" link add v-s1 type veth peer name eth0 netns "$SC_NS_S1"
ip -n "$SC_NS_SRV" link add v-s2 type veth peer name eth0 netns "$SC_NS_S2"
ip -n "$SC_NS_SRV" addr add "$SC_SRV_IP1/24" dev v-s1
ip -n "$SC_NS_SRV" addr add "$SC_SRV_IP2/24" dev v-s2
ip -n "$SC_NS_S1" addr add "$SC_S1_IP/24" dev eth0
ip -n "$SC_NS_S2" addr add "$SC_S2_IP/24" dev eth0
ip -n "$SC_NS_SRV" link set v-s1 up
ip -n "$SC_NS_SRV" link set v-s2 up
ip -n "$SC_NS_S1" link set eth0 up
ip -n "$SC_NS_S2" link set eth0 up

# Chromium for a subscriber starts inside that subscriber's namespace; Playwright's pipes pass
# through `ip netns exec`, which execs the browser.
for who in S1 S2; do
  ns_var="SC_NS_$who"
  wrapper="$workdir/chromium-$who"
  printf '#!/bin/sh\nexec ip netns exec %q %q "$@"\n' "${!ns_var}" "$CHROMIUM_PATH" >"$wrapper"
  chmod +x "$wrapper"
  export "SC_CHROMIUM_$who=$wrapper"
done

# The driver runs in the server's namespace (it starts the server and P there). It runs in the
# background so that a TERM sent to this script reaches the trap at once.
ip netns exec "$SC_NS_SRV" node simulcast.js &
node_pid=$!
set +e
wait "$node_pid"
rc=$?
set -e
node_pid=""
exit "$rc"
