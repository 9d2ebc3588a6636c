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
me=run-network.sh
# shellcheck source=netns.sh
. "$here/netns.sh"

need_sfu_bin
need_root "it creates network namespaces and firewall rules"
need_tools ip ss
need_command nft nftables
need_chromium_and_node

# Names unique to this run, so that runs side by side do not collide.
tag="sfunet$$"
export NET_NS_SRV="$tag-srv" NET_NS_P1="$tag-p1" NET_NS_P2="$tag-p2"
export NET_SRV_IP1=10.97.1.1 NET_P1_IP=10.97.1.2 NET_SRV_IP1_NEW=10.97.3.1 NET_P1_IP_NEW=10.97.3.2
export NET_SRV_IP2=10.97.2.1 NET_P2_IP=10.97.2.2
workdir="$(mktemp -d "${TMPDIR:-/tmp}/$tag.XXXXXX")"

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pid "$node_pid"
  remove_namespaces
  rm -rf "$workdir"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

make_namespaces "$NET_NS_SRV" "$NET_NS_P1" "$NET_NS_P2"
link "$NET_NS_SRV" v-p1 "$NET_SRV_IP1" "$NET_NS_P1" "$NET_P1_IP"
link "$NET_NS_SRV" v-p2 "$NET_SRV_IP2" "$NET_NS_P2" "$NET_P2_IP"
# The network P1 moves to: another subnet on the same link.
ip -n "$NET_NS_SRV" addr add "$NET_SRV_IP1_NEW/24" dev v-p1
export NET_SRV_DEV1=v-p1

# Chromium for each participant starts inside that participant's namespace.
for who in P1 P2; do
  ns_var="NET_NS_$who"
  chromium_in "${!ns_var}" "$workdir/chromium-$who"
  export "NET_CHROMIUM_$who=$workdir/chromium-$who"
done

# The driver runs in the server's namespace (it starts the servers there and changes the other
# namespaces' links, addresses and firewalls).
run_driver "$NET_NS_SRV" network.js
