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
me=run-simulcast.sh
# shellcheck source=netns.sh
. "$here/netns.sh"

need_sfu_bin
need_root "it creates network namespaces and shapes links with tc"
need_tools ip tc
# Random loss is made with nftables (numgen): kernels without sch_netem are common in containers.
need_command nft nftables
need_chromium_and_node

# Names unique to this run, so that runs side by side do not collide.
tag="sfusc$$"
export SC_NS_SRV="$tag-srv" SC_NS_S1="$tag-s1" SC_NS_S2="$tag-s2"
export SC_SRV_IP1=10.99.1.1 SC_S1_IP=10.99.1.2 SC_SRV_IP2=10.99.2.1 SC_S2_IP=10.99.2.2
export SC_SRV_DEV_S2=v-s2 SC_S2_DEV=eth0
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

make_namespaces "$SC_NS_SRV" "$SC_NS_S1" "$SC_NS_S2"
link "$SC_NS_SRV" v-s1 "$SC_SRV_IP1" "$SC_NS_S1" "$SC_S1_IP"
link "$SC_NS_SRV" v-s2 "$SC_SRV_IP2" "$SC_NS_S2" "$SC_S2_IP"

# Chromium for a subscriber starts inside that subscriber's namespace.
for who in S1 S2; do
  ns_var="SC_NS_$who"
  chromium_in "${!ns_var}" "$workdir/chromium-$who"
  export "SC_CHROMIUM_$who=$workdir/chromium-$who"
done

# The driver runs in the server's namespace (it starts the server and P there).
run_driver "$SC_NS_SRV" simulcast.js
