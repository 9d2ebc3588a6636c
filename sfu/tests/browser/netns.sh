# Sourced by the run-*.sh scripts that build private network namespaces for a test: what they
# check and install first, the namespaces and their links, the browsers started inside them, and
# the cleanup. Set `me` (the script's name, for messages) before sourcing.
#
# Every namespace made with `make_namespaces` is listed in `namespaces`; `remove_namespaces`
# stops whatever still runs in them and deletes them.

namespaces=()

fail() {
  echo "$me: $*" >&2
  exit 2
}

# SFU_BIN must name the server binary; exported as a full path (the driver runs elsewhere).
need_sfu_bin() {
  [[ -n "${SFU_BIN:-}" ]] || fail "set SFU_BIN to the sfu server binary"
  SFU_BIN="$(realpath "$SFU_BIN")"
  export SFU_BIN
}

# need_root <why>
need_root() {
  [[ "$(id -u)" == 0 ]] || fail "needs root ($1)"
}

# need_tools <tool>...: iproute2's tools.
need_tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || fail "'$tool' (iproute2) is needed"
  done
}

# apt_install <package>: installs a Debian package (quietly; the package lists are refreshed only
# when the first try fails).
apt_install() {
  local package="$1"
  command -v apt-get >/dev/null || fail "'$package' (Debian package) is needed"
  echo "$me: installing $package" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "$package" >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q "$package" >/dev/null; }
}

# need_command <command> <package>: installs the package when the command is missing.
need_command() {
  command -v "$1" >/dev/null || apt_install "$2"
}

# Chromium at CHROMIUM_PATH (default Debian's), installed when missing; node and npm; and the
# npm packages of this folder. Leaves the working directory at this folder.
need_chromium_and_node() {
  export CHROMIUM_PATH="${CHROMIUM_PATH:-/usr/bin/chromium}"
  if [[ ! -x "$CHROMIUM_PATH" ]]; then
    command -v apt-get >/dev/null || fail "no browser at $CHROMIUM_PATH; install Debian's chromium or set CHROMIUM_PATH"
    apt_install chromium
  fi
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    fail "node (>= 20) and npm are needed"
  fi
  cd "$here"
  if [[ ! -d node_modules/playwright-core ]]; then
    echo "$me: npm ci" >&2
    npm ci --no-audit --no-fund --loglevel=error
  fi
}

# make_namespaces <server namespace> <namespace>...: each with `lo` up. The servers' fixed
# ports lie in Linux's default range for outgoing connections: in the server's namespace,
# outgoing connections take ports from 50000 up, so none holds a number a server binds later.
make_namespaces() {
  local ns
  for ns in "$@"; do
    ip netns add "$ns"
    namespaces+=("$ns")
    ip -n "$ns" link set lo up
  done
  ip netns exec "$1" sysctl -qw net.ipv4.ip_local_port_range="50000 60999"
}

# link <server namespace> <its device> <its address> <namespace> <that one's address>: a veth
# pair, `eth0` on the far side, both ends up with a /24 each.
link() {
  ip -n "$1" link add "$2" type veth peer name eth0 netns "$4"
  ip -n "$1" addr add "$3/24" dev "$2"
  ip -n "$4" addr add "$5/24" dev eth0
  ip -n "$1" link set "$2" up
  ip -n "$4" link set eth0 up
}

# chromium_in <namespace> <path>: writes at <path> a Chromium that starts inside <namespace>.
# Playwright's pipes pass through `ip netns exec`, which execs the browser.
chromium_in() {
  printf '#!/bin/sh\nexec ip netns exec %q %q "$@"\n' "$1" "$CHROMIUM_PATH" >"$2"
  chmod +x "$2"
}

# stop_pid <pid>: TERM, then KILL after 10 s; nothing if empty or gone.
stop_pid() {
  local pid="$1"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
  kill -KILL "$pid" 2>/dev/null || true
}

# Stops whatever still runs in the namespaces made here (all of it was started by this run) and
# deletes them, the last made first.
remove_namespaces() {
  local i ns pids
  for ((i = ${#namespaces[@]} - 1; i >= 0; i--)); do
    ns="${namespaces[$i]}"
    [[ -e "/run/netns/$ns" ]] || continue
    pids="$(ip netns pids "$ns" 2>/dev/null || true)"
    if [[ -n "$pids" ]]; then
      kill -TERM $pids 2>/dev/null || true
      sleep 0.5
      pids="$(ip netns pids "$ns" 2>/dev/null || true)"
      [[ -z "$pids" ]] || kill -KILL $pids 2>/dev/null || true
    fi
    ip netns del "$ns" 2>/dev/null || true
  done
}

# run_driver <namespace> <script>: runs the node script there and exits with its status. It runs
# in the background so that a TERM sent to the caller reaches its trap at once.
node_pid=""
run_driver() {
  ip netns exec "$1" node "$2" &
  node_pid=$!
  local rc
  set +e
  wait "$node_pid"
  rc=$?
  set -e
  node_pid=""
  exit "$rc"
}
