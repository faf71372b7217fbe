#!/usr/bin/env bash
# Cluster scenarios: two `herald serve` nodes on one Redis (redis-server started here, on
# loopback, with its own directory and `appendfsync always`, i.e. Herald's "acknowledged means
# kept"). Every request goes to 127.0.0.1; every load loop is bounded in count and time.
#
#   bash bench/cluster.sh [RUN]
#
# g-publish-1, g-publish-16: acknowledged publishes/s through Redis, 1 and 16 publishers;
# g-latency: publish on node B, subscribers on node A: publish-to-delivery latency across nodes;
# g-fanout-1node, g-fanout-2nodes: one burst to the same subscribers on one node, then spread
# over two.
# Environment: RESULTS (default target/bench-results), BUILD=0 to skip `cargo build --release`,
# FANOUT (subscribers of the fan-out runs, default 4000).
set -euo pipefail

# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"
RESULTS=${RESULTS:-$ROOT/target/bench-results}
REDIS_PORT=${REDIS_PORT:-39379}
A=127.0.0.1:39001
B=127.0.0.1:39002
FANOUT=${FANOUT:-4000}
run=${1:-1}
mkdir -p "$RESULTS"
WORK=$(mktemp -d /tmp/herald-cluster-bench.XXXXXX)
PIDS=()

build_release

cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$WORK" --save '' \
  --appendonly yes --appendfsync always --daemonize no >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
wait_port "$REDIS_PORT" "$!" "$WORK/redis.log"

for node in $A $B; do
  "$HERALD" serve --listen "$node" --jwt-key "$KEY" --anonymous --log warn \
    --max-subscriptions-per-client 0 \
    --transport "redis://127.0.0.1:$REDIS_PORT" --history-size 1000000 \
    >"$WORK/herald-${node##*:}.log" 2>&1 &
  PIDS+=($!)
  wait_port "${node##*:}" "$!" "$WORK/herald-${node##*:}.log"
done
NODE_A=${PIDS[1]}

bench() {
  local name=$1; shift
  echo "== $name (run $run)" >&2
  "$BENCH" run --addr "$A" --jwt-key "$KEY" --server-pid "$NODE_A" --scenario "$name" \
    --out "$RESULTS/$name-herald-$run.json" "$@"
}


bench g-publish-1 --subscribers 0 --updates 3000 --rate 0 --publishers 1
bench g-publish-16 --subscribers 0 --updates 20000 --rate 0 --publishers 16
bench g-latency --subscribers 100 --publish-addr "$B" --updates 2000 --rate 200 --publishers 4
bench g-fanout-1node --subscribers "$FANOUT" --updates 100 --rate 0 --publishers 100
bench g-fanout-2nodes --subscribers "$FANOUT" --also-subscribe-at "$B" --updates 100 --rate 0 \
  --publishers 100
