#!/usr/bin/env bash
# Profiles `herald serve` under callgrind while herald-bench drives it (user-space instructions;
# perf counters are not available on the development VMs).
#
#   bash bench/callgrind.sh BINARY OUT.callgrind PORT [herald-bench run flags...]
#   bash bench/callgrind.sh target/release/herald /tmp/paced.cg 3930 \
#       --subscribers 2000 --updates 20 --rate 10 --publishers 2
#   callgrind_annotate --inclusive=yes /tmp/paced.cg | grep -E 'Registry::dispatch|Outbox::push'
#
# Under valgrind the hub runs ~50x slower: keep the load small (2,000 subscribers). Loopback only.
set -euo pipefail
# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"
bin=$1 out=$2 port=$3
shift 3
data=$(mktemp -d /tmp/herald-callgrind.XXXXXX)
valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" serve --listen 127.0.0.1:"$port" \
  --jwt-key "$KEY" --anonymous --max-subscriptions-per-client 0 \
  --data-dir "$data" --log warn >/dev/null 2>&1 &
vpid=$!
trap 'kill -INT $vpid 2>/dev/null || true; wait $vpid 2>/dev/null || true; rm -rf "$data"' EXIT
sleep 4
timeout 300 "$BENCH" run --addr 127.0.0.1:"$port" --server-pid "$vpid" \
  --jwt-key "$KEY" --connect-concurrency 64 --idle-secs 1 --settle-secs 20 "$@"
kill -INT $vpid
wait $vpid || true
callgrind_annotate "$out" 2>/dev/null | grep "PROGRAM TOTALS"
