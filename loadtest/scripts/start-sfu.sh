# Sourced by the benchmark scripts.
#
#   start_sfu CPUS LOG BIN [SERVER FLAGS...]
#   stop_sfu
#
# Starts the server BIN pinned to CPUS (not pinned if CPUS is empty), on loopback, on an HTTP
# port the kernel picks (so it can never collide with another listener), its output in LOG, and
# waits until it answers /healthz. Sets SFU_PID and SFU_URL. Returns 1 (the server's output says
# why) if it does not come up within 10 s.
start_sfu() {
  local cpus=$1 log=$2 bin=$3
  shift 3
  local pin=()
  [ -z "$cpus" ] || pin=(taskset -c "$cpus")
  "${pin[@]}" "$bin" --http 127.0.0.1:0 --udp-ip 127.0.0.1 --udp-port 0 \
    --advertise-ip 127.0.0.1 "$@" > "$log" 2>&1 &
  SFU_PID=$!
  SFU_URL=""
  for _ in $(seq 100); do
    # The ready line names the address it listens on.
    SFU_URL=$(grep -o -m1 'http://127\.0\.0\.1:[0-9]*' "$log" || true)
    if [ -n "$SFU_URL" ] && curl -fs "$SFU_URL/healthz" > /dev/null 2>&1; then
      return 0
    fi
    kill -0 "$SFU_PID" 2> /dev/null || break
    sleep 0.1
  done
  echo "the server did not come up (see $log)" >&2
  return 1
}

# Stops the server start_sfu started, if it still runs, and waits for it; a script sets
# `trap stop_sfu EXIT` so that an interrupted run leaves no server behind.
stop_sfu() {
  if [ -n "${SFU_PID:-}" ]; then
    kill "$SFU_PID" 2>/dev/null || true
    wait "$SFU_PID" 2>/dev/null || true
    SFU_PID=""
  fi
}
