#!/usr/bin/env bash
# Herald, nchan and Pushpin side by side: scenarios a (fan-out burst), b (fan-out paced) and c
# (idle memory), RUNS times each (default 3), alternating the servers within each round (each
# round starting with the next one), then a table of medians with ratios against Herald
# (Herald/nchan, Herald/Pushpin), and the latency plots.
#
#   bash bench/compare.sh
#
# Environment: RUNS (default 3), RESULTS (default target/bench-results/compare-<time>),
# PLOTS (default docs/images), HERALD_ARGS (extra `herald serve` flags), TARGETS (default
# "herald nchan pushpin"), and bench/common.sh's (HERALD_BIN, HERALD_BENCH_BIN, BUILD=0).
# Needs: apt-get install -y nginx libnginx-mod-nchan pushpin condure zurl python3
set -euo pipefail
# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"
RUNS=${RUNS:-3}
export RESULTS=${RESULTS:-$ROOT/target/bench-results/compare-$(date +%Y%m%d-%H%M%S)}
PLOTS=${PLOTS:-$ROOT/docs/images}
mkdir -p "$RESULTS" "$PLOTS"
build_release
export BUILD=0
read -ra targets <<<"${TARGETS:-herald nchan pushpin}"
for run in $(seq "$RUNS"); do
  # Each round starts with the next server (herald, nchan, pushpin; then nchan, pushpin,
  # herald; ...), so that no server always runs first, or always after the same one.
  shift_by=$(((run - 1) % ${#targets[@]}))
  order=("${targets[@]:shift_by}" "${targets[@]:0:shift_by}")
  for scenario in a b c; do
    for target in "${order[@]}"; do
      bash "$ROOT/bench/run.sh" "$scenario" "$target" "$run" >/dev/null
    done
  done
done
echo
echo "Results in $RESULTS (medians of $RUNS runs):"
echo
"$BENCH" table "$RESULTS"/*.json | tee "$RESULTS/table.md"
"$BENCH" plot --title "Fan-out paced: 10,000 subscribers, 10 updates/s for 10 s" \
  --out "$PLOTS/paced-latency.svg" "$RESULTS"/b-paced-*.json
"$BENCH" plot --title "Fan-out burst: 10,000 subscribers, 100 updates at once" \
  --out "$PLOTS/burst-latency.svg" "$RESULTS"/a-burst-*.json
