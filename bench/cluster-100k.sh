#!/usr/bin/env bash
# 100,000 subscribers on one machine: NODES `herald serve` nodes on one Redis, SUBSCRIBERS
# subscriptions on one topic spread evenly over them, held by GENERATORS `herald-bench
# cluster-worker` processes from loopback source addresses 127.0.0.2, 127.0.0.3, ... (4 per
# generator), then a paced load (PACED updates at RATE/s) and a burst (BURST updates at once).
# Every process stays under this machine's 20,000 open files; everything listens and connects on
# loopback only; every loop is bounded in count and time; everything started here is stopped on
# exit.
#
#   bash bench/cluster-100k.sh [RUNS]
#
# RUNS (default 1) fresh clusters one after the other, each writing
# $RESULTS/cluster-100k-<run>.json; with more than one, the medians are printed at the end.
# Environment: SUBSCRIBERS (100000), NODES (6), GENERATORS (NODES), PACED (10), RATE (1),
# BURST (20), BASE_PORT (29101: nodes on BASE_PORT.., below the ephemeral range),
# REDIS_PORT (29379), RESULTS (target/bench-results), BUILD=0 to skip `cargo build --release`.
set -euo pipefail

# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"
RESULTS=${RESULTS:-$ROOT/target/bench-results}
SUBSCRIBERS=${SUBSCRIBERS:-100000}
NODES=${NODES:-6}
GENERATORS=${GENERATORS:-$NODES}
PACED=${PACED:-10}
RATE=${RATE:-1}
BURST=${BURST:-20}
BASE_PORT=${BASE_PORT:-29101}
REDIS_PORT=${REDIS_PORT:-29379}
# Files a node or a generator needs besides its subscribers' sockets: listener, Redis
# connections, epoll, stdio, runtime, publishers' connections.
HEADROOM=200
RUNS=${1:-1}
mkdir -p "$RESULTS"

# Each process may open up to the hard limit; every node and generator must fit under it.
ulimit -n "$(ulimit -Hn)"
LIMIT=$(ulimit -n)
per_node=$(( (SUBSCRIBERS + NODES - 1) / NODES ))
per_generator=$(( (SUBSCRIBERS + GENERATORS - 1) / GENERATORS ))
if (( per_node + HEADROOM > LIMIT )); then
  echo "NODES=$NODES: $per_node subscribers per node do not fit the open-file limit $LIMIT" \
    "with $HEADROOM to spare; use NODES=$(( (SUBSCRIBERS + LIMIT - HEADROOM - 1) / (LIMIT - HEADROOM) ))" >&2
  exit 2
fi
if (( per_generator + HEADROOM > LIMIT )); then
  echo "GENERATORS=$GENERATORS: $per_generator subscribers per generator do not fit the" \
    "open-file limit $LIMIT; raise GENERATORS" >&2
  exit 2
fi
if (( 2 + GENERATORS * 4 > 254 )); then
  echo "GENERATORS=$GENERATORS: at most 63 (4 source addresses each in 127.0.0.2-255)" >&2; exit 2
fi

build_release

WORK=
PIDS=()
stop_all() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
  if [[ -n $WORK ]]; then rm -rf "$WORK"; fi
  WORK=
}
trap stop_all EXIT

join() { local IFS=,; echo "$*"; }

one_run() {
  local run=$1
  WORK=$(mktemp -d /tmp/herald-cluster-100k.XXXXXX)
  for port in "$REDIS_PORT" $(seq "$BASE_PORT" $(( BASE_PORT + NODES - 1 ))); do
    if port_open "$port"; then echo "port $port is taken: set BASE_PORT / REDIS_PORT" >&2; exit 1; fi
  done
  # Redis as bench/cluster.sh starts it: loopback, its own directory, `appendfsync always`
  # (an acknowledged update is on Redis's disk).
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$WORK" --save '' \
    --appendonly yes --appendfsync always --daemonize no >"$WORK/redis.log" 2>&1 &
  local redis_pid=$!
  PIDS+=("$redis_pid")
  wait_port "$REDIS_PORT" "$redis_pid" "$WORK/redis.log"

  local nodes=() node_pids=()
  for n in $(seq 0 $(( NODES - 1 ))); do
    local port=$(( BASE_PORT + n ))
    # --write-timeout 3600s: no subscription's lifetime ends during the run, whatever the load.
    "$HERALD" serve --listen "127.0.0.1:$port" --jwt-key "$KEY" --anonymous --log warn \
      --max-subscriptions-per-client 0 --write-timeout 3600s \
      --transport "redis://127.0.0.1:$REDIS_PORT" >"$WORK/herald-$port.log" 2>&1 &
    PIDS+=($!)
    node_pids+=($!)
    nodes+=("127.0.0.1:$port")
    wait_port "$port" "$!" "$WORK/herald-$port.log"
    local limit
    limit=$(awk '/Max open files/ {print $4}' "/proc/$!/limits")
    if (( per_node + HEADROOM > limit )); then
      echo "node on $port: open-file limit $limit is below $per_node + $HEADROOM" >&2; exit 1
    fi
  done

  echo "== cluster-100k run $run: $SUBSCRIBERS subscribers, $NODES nodes ($per_node each)," \
    "$GENERATORS generators, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  timeout 1200 "$BENCH" cluster --nodes "$(join "${nodes[@]}")" \
    --node-pids "$(join "${node_pids[@]}")" \
    --redis-pid "$redis_pid" --jwt-key "$KEY" --subscribers "$SUBSCRIBERS" \
    --generators "$GENERATORS" --paced-updates "$PACED" --paced-rate "$RATE" \
    --burst-updates "$BURST" --scenario cluster-100k --out "$RESULTS/cluster-100k-$run.json"
  stop_all
}

for run in $(seq "$RUNS"); do one_run "$run"; done

if (( RUNS > 1 )); then
  echo "== medians over $RUNS runs (load average now $(cut -d' ' -f1-3 /proc/loadavg))"
  files=()
  for run in $(seq "$RUNS"); do files+=("$RESULTS/cluster-100k-$run.json"); done
  jq -s -r '
    def median: sort | if length % 2 == 1 then .[length / 2 | floor]
      else (.[length / 2 - 1] + .[length / 2]) / 2 end;
    def r: if type == "number" then (. * 100 | round) / 100 else . end;
    def row(name; f): "\(name)\t\(map(f) | median | r)\t\(map(f | r) | map(tostring) | join(" "))";
    "figure\tmedian\truns",
    row("connected"; .connected),
     row("connect s"; .connect_secs),
     row("listen-queue overflows while connecting"; .listen_overflows),
     row("nodes+redis CPU s while connecting"; .connect_server_cpu_secs),
     row("RSS per node, idle, MiB (largest)"; [.nodes[].idle.rss_bytes] | max / 1048576),
     row("nodes RSS per subscriber, bytes"; .nodes_rss_per_subscriber),
     row("redis RSS, idle, MiB"; .redis.idle.rss_bytes / 1048576),
     row("generators RSS, idle, MiB"; .generators.idle.rss_bytes / 1048576),
     row("machine memory used, MiB"; .machine_memory_used_bytes / 1048576),
     row("kernel TCP buffers, MiB"; .kernel_tcp_memory_bytes / 1048576),
    (.[0].phases | keys[]) as $i |
    (row("\(.[0].phases[$i].name) deliveries"; .phases[$i].deliveries),
     row("\(.[0].phases[$i].name) subscribers complete"; .phases[$i].subscribers_complete),
     row("\(.[0].phases[$i].name) deliveries per server CPU-s"; .phases[$i].deliveries_per_server_cpu_sec),
     row("\(.[0].phases[$i].name) server CPU s"; .phases[$i].server_cpu_secs),
     row("\(.[0].phases[$i].name) latency p50 ms"; .phases[$i].latency_ms.p50),
     row("\(.[0].phases[$i].name) latency p99 ms"; .phases[$i].latency_ms.p99),
     row("\(.[0].phases[$i].name) last delivery s"; .phases[$i].delivery_secs))' "${files[@]}" | column -t -s $'\t'
fi
