# Sourced by the benchmark scripts: where the binaries are, the key the load generator signs
# with, and the steps the scripts share. Loopback only.
#
# Environment: HERALD_BIN and HERALD_BENCH_BIN (other builds of the hub and of the load
# generator), BUILD=0 (skip `cargo build --release`).

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HERALD=${HERALD_BIN:-$ROOT/target/release/herald}
BENCH=${HERALD_BENCH_BIN:-$ROOT/target/release/herald-bench}
# The hub's `--jwt-key` and the key `herald-bench` signs its publishers' tokens with.
KEY=herald-bench-key-not-a-secret-0123456789

# Builds the hub and the load generator in release mode, unless BUILD=0.
build_release() {
  if [[ ${BUILD:-1} != 0 ]]; then
    (cd "$ROOT" && cargo build --release -q -p herald -p herald-bench)
  fi
}

# Whether something accepts connections on 127.0.0.1:PORT.
port_open() { (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }

# wait_port PORT [PID [LOG]]: waits up to 10 s until 127.0.0.1:PORT accepts connections; exits
# the script if it does not, or as soon as PID (the process that should listen) has exited,
# showing its LOG.
wait_port() {
  local port=$1 pid=${2:-} log=${3:-}
  for _ in $(seq 100); do
    if port_open "$port"; then return 0; fi
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
      echo "the process for port $port exited${log:+ (see $log)}" >&2
      if [[ -n $log && -f $log ]]; then cat "$log" >&2; fi
      exit 1
    fi
    sleep 0.1
  done
  echo "nothing listens on $port" >&2
  exit 1
}

# stop_pid PID [SECONDS]: TERM, then KILL if it has not exited within SECONDS (default 10).
stop_pid() {
  local pid=$1 tenths=$((${2:-10} * 10))
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq "$tenths"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
}
