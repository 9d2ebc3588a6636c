#!/usr/bin/env bash
# Runs the three-browser end-to-end test (e2e.js) against the server binary in $SFU_BIN, inside a
# private network namespace where only `lo` exists. Installs Chromium (Debian), playwright-core
# and puppeteer-core (npm, from package-lock.json) when they are missing. E2E_SCRIPT picks another
# test script of this folder (for example chat.js); E2E_APT_PACKAGES names further Debian packages
# the script needs (installed when missing, as root).
#
#   SFU_BIN=target/debug/sfu bash sfu/tests/browser/run.sh
#   SFU_BIN=target/debug/sfu E2E_SCRIPT=chat.js bash sfu/tests/browser/run.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

script="${E2E_SCRIPT:-e2e.js}"
if [[ "$script" == */* || ! -f "$here/$script" ]]; then
  echo "run.sh: E2E_SCRIPT must name a script in $here (got '$script')" >&2
  exit 2
fi

if [[ -z "${SFU_BIN:-}" ]]; then
  echo "run.sh: set SFU_BIN to the sfu server binary" >&2
  exit 2
fi
SFU_BIN="$(realpath "$SFU_BIN")"
export SFU_BIN

export CHROMIUM_PATH="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [[ ! -x "$CHROMIUM_PATH" ]]; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    echo "run.sh: installing chromium" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
  else
    echo "run.sh: no browser at $CHROMIUM_PATH; install Debian's chromium or set CHROMIUM_PATH" >&2
    exit 2
  fi
fi

missing=()
for package in ${E2E_APT_PACKAGES:-}; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if ((${#missing[@]})); then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    echo "run.sh: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "${missing[@]}" >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null; }
  else
    echo "run.sh: $script needs the Debian packages ${missing[*]}" >&2
    exit 2
  fi
fi

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "run.sh: node (>= 20) and npm are needed" >&2
  exit 2
fi

cd "$here"
if [[ ! -d node_modules/playwright-core || ! -d node_modules/puppeteer-core ]]; then
  echo "run.sh: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi

# As root a plain network namespace will do; otherwise map ourselves to root in a user namespace.
unshare_flags=(-n)
[[ "$(id -u)" == 0 ]] || unshare_flags=(-r -n)

# The scripts give the servers fixed ports (40000 to 40430) inside Linux's default range for
# outgoing connections (32768 to 60999): a connection made first (a node's to Redis, a page's to
# the server) could hold the number a server then fails to bind. In the namespace, outgoing
# connections take ports from 50000 up.
exec unshare "${unshare_flags[@]}" bash -c \
  'ip link set lo up; sysctl -qw net.ipv4.ip_local_port_range="50000 60999"; exec "$@"' bash node "$script"
