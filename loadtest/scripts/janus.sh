#!/usr/bin/env bash
# Runs the load tester against Janus's VideoRoom: installs Janus when it is missing (Debian
# package, as root), starts it with loadtest/janus/*.jcfg, runs one loadtest with the flags given
# here, and stops Janus again.
#
#   loadtest/scripts/janus.sh [LOADTEST FLAGS...]
#   e.g. loadtest/scripts/janus.sh --video-publishers 1 --subscribers 20 --publishers-subscribe false
#
# Janus never offers loopback ICE candidates, so it runs in a network namespace of its own with a
# veth pair: Janus's media on 10.203.N.1 (ltj0), the bots on 10.203.N.2 (ltj1), its WebSocket on
# the namespace's 127.0.0.1:8188; the load tester runs in that namespace too. Nothing leaves the
# machine. Needs root (ip netns, sysctl, apt-get).
#
# The loadtest flags added here: --target janus --url ws://127.0.0.1:8188 --bind-ip 10.203.N.2
# --allow-ice-ip 10.203.N.1 --server-pid <janus>. The loadtest's exit status is the script's.
#
# Environment: LOADTEST_BIN (default target/release/loadtest), JANUS_CPUS / LOADTEST_CPUS (CPU
# lists for taskset, e.g. 0 and 1; default unpinned), JANUS_LOG (default: a file under /tmp),
# JANUS_DEBUG_LEVEL (Janus's log level, default 3), JANUS_NETNS (namespace name, default
# ltjanus-<pid>), JANUS_SUBNET (N above, 1-254, default from the pid). The namespace is removed
# at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
LOADTEST_BIN=${LOADTEST_BIN:-target/release/loadtest}
CONF_DIR=$(pwd)/loadtest/janus
NS=${JANUS_NETNS:-ltjanus-$$}
N=${JANUS_SUBNET:-$(( $$ % 250 + 2 ))}
JANUS_IP=10.203.$N.1
BOT_IP=10.203.$N.2
JANUS_LOG=${JANUS_LOG:-$(mktemp /tmp/janus-loadtest.XXXXXX.log)}
JANUS_DEBUG_LEVEL=${JANUS_DEBUG_LEVEL:-3}

die() { echo "janus.sh: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "needs root (network namespace, and apt-get when Janus is missing)"
[ -x "$LOADTEST_BIN" ] || die "missing $LOADTEST_BIN (cargo build --release -p loadtest)"
if ! command -v janus > /dev/null; then
  echo "janus.sh: installing Janus (apt-get install janus)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q janus > /dev/null \
    || { apt-get update -q > /dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q janus > /dev/null; } \
    || die "could not install the janus package"
fi
command -v janus > /dev/null || die "janus is not on PATH after installing it"
# The Debian package starts a system Janus on the default ports; ours lives in its own namespace.

pinned() { # CPU list: the taskset prefix for it, if any
  if [ -n "$1" ]; then echo "taskset -c $1"; fi
}

janus_pid=""
cleanup() {
  if [ -n "$janus_pid" ]; then
    kill "$janus_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$janus_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$janus_pid" 2>/dev/null || true
    wait "$janus_pid" 2>/dev/null || true
  fi
  ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT

ip netns add "$NS" || die "could not create network namespace $NS"
ip -n "$NS" link set lo up
ip -n "$NS" link add ltj0 type veth peer name ltj1
ip -n "$NS" addr add "$JANUS_IP/24" dev ltj0
ip -n "$NS" addr add "$BOT_IP/24" dev ltj1
ip -n "$NS" link set ltj0 up
ip -n "$NS" link set ltj1 up
# Janus sends out of ltj0 to an address of this same namespace: let ltj1 take it.
for dev in all default ltj0 ltj1; do
  ip netns exec "$NS" sysctl -qw "net.ipv4.conf.$dev.accept_local=1"
  ip netns exec "$NS" sysctl -qw "net.ipv4.conf.$dev.rp_filter=0"
done

# `taskset` and `ip netns exec` exec Janus: $! is Janus's pid.
$(pinned "${JANUS_CPUS:-}") ip netns exec "$NS" janus -F "$CONF_DIR" -E ltj0 -o -N \
  -d "$JANUS_DEBUG_LEVEL" -L "$JANUS_LOG" > /dev/null 2>&1 < /dev/null &
janus_pid=$!
up=""
for _ in $(seq 100); do
  kill -0 "$janus_pid" 2>/dev/null || break
  if ip netns exec "$NS" bash -c 'exec 3<>/dev/tcp/127.0.0.1/8188' 2>/dev/null; then up=1; break; fi
  sleep 0.1
done
[ -n "$up" ] || { tail -20 "$JANUS_LOG" >&2 || true; die "Janus did not open its WebSocket port in 10 s (log: $JANUS_LOG)"; }
echo "janus.sh: Janus pid $janus_pid in namespace $NS (media $JANUS_IP, log $JANUS_LOG)" >&2

status=0
$(pinned "${LOADTEST_CPUS:-}") ip netns exec "$NS" "$LOADTEST_BIN" --target janus \
  --url ws://127.0.0.1:8188 --bind-ip "$BOT_IP" --allow-ice-ip "$JANUS_IP" \
  --server-pid "$janus_pid" "$@" || status=$?
exit "$status"
