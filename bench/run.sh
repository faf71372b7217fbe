#!/usr/bin/env bash
# One benchmark scenario against a freshly started server, on loopback only.
#
#   bash bench/run.sh SCENARIO [TARGET] [RUN]
#
# SCENARIO: a (fan-out burst), b (fan-out paced), c (idle memory), d (many topics + templates),
#           e (durable publish throughput; also e-periodic, e-memory), f (replay in large
#           histories), p (the publish path: p-publish-{1,16,64} over keep-alive HTTP/1.1 and
#           p-publish-h2-{1,16,64} over keep-alive HTTP/2 with TLS, default durable history),
#           all (a to f against Herald)
# TARGET:   herald (default), nchan or pushpin (a, b and c only)
# RUN:      a number naming the report: $RESULTS/<scenario>-<target>-<run>.json
#
# Environment: RESULTS (default target/bench-results), HERALD_ARGS (extra `herald serve` flags,
# e.g. "--transport memory"), HERALD_BIN and HERALD_BENCH_BIN (other builds of the hub and of the
# load generator), BUILD=0 to skip `cargo build --release`, PUBLISHERS (scenario e,
# default 16 concurrent publishers), CONNECT_RETRIES (a, b, c: times a failed subscription is
# tried again, default 5, the same for every target; Pushpin answers 500/502 to part of a
# connection burst, see docs/benchmarks.md).
# Every request goes to 127.0.0.1; every load loop is bounded in count and time.
#
# nchan needs:   apt-get install -y nginx libnginx-mod-nchan
# Pushpin needs: apt-get install -y pushpin condure zurl python3 (config in bench/pushpin/; the
#                server is the sum of pushpin's runner, condure, pushpin-proxy, pushpin-handler,
#                zurl and the GRIP origin, all started here, none as a system service)
set -euo pipefail

# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"
RESULTS=${RESULTS:-$ROOT/target/bench-results}
PORT=${PORT:-39001}
HERALD_ARGS=${HERALD_ARGS:-}
THREADS=${THREADS:-2}
RETRIES=${CONNECT_RETRIES:-5}

scenario=${1:?usage: bench/run.sh SCENARIO [herald|nchan|pushpin] [RUN]}
target=${2:-herald}
run=${3:-1}
mkdir -p "$RESULTS"
WORK=$(mktemp -d /tmp/herald-bench.XXXXXX)
SERVER_PID=
# Processes that are part of the server besides SERVER_PID (Pushpin's zurl and GRIP origin):
# measured with it, stopped after it.
EXTRA_PIDS=()
# Extra herald-bench flags the target needs (Pushpin: where to publish).
TARGET_ARGS=()

build_release

stop_server() {
  stop_pid "$SERVER_PID"
  for pid in "${EXTRA_PIDS[@]}"; do stop_pid "$pid"; done
  SERVER_PID=
  EXTRA_PIDS=()
}
cleanup() { stop_server; rm -rf "$WORK"; }
trap cleanup EXIT

start_herald() {
  # shellcheck disable=SC2086
  "$HERALD" serve --listen 127.0.0.1:$PORT --jwt-key "$KEY" --anonymous \
    --max-subscriptions-per-client 0 \
    --data-dir "$WORK/data" --log warn $HERALD_ARGS "$@" >"$WORK/herald.log" 2>&1 &
  SERVER_PID=$!
  wait_port "$PORT" "$SERVER_PID" "$WORK/herald.log"
}

start_nchan() {
  command -v nginx >/dev/null && [[ -e /usr/lib/nginx/modules/ngx_nchan_module.so ]] || {
    echo "nchan needs: apt-get install -y nginx libnginx-mod-nchan" >&2; exit 1; }
  mkdir -p "$WORK/nginx/logs"
  # Two workers (Herald uses the machine's two cores), connections up to the open-file limit,
  # a small message buffer, no access log: nchan at its best for fan-out.
  cat >"$WORK/nginx.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_nchan_module.so;
user root;
worker_processes 2;
worker_rlimit_nofile 20000;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx.log warn;
events { worker_connections 19990; multi_accept on; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 600s;
  nchan_message_buffer_length 10;
  nchan_message_timeout 60s;
  server {
    listen 127.0.0.1:$PORT backlog=4096;
    location = /sub {
      nchan_subscriber eventsource;
      nchan_channel_id \$arg_id;
      nchan_subscriber_first_message newest;
    }
    location = /pub { nchan_publisher; nchan_channel_id \$arg_id; }
  }
}
EOF
  nginx -c "$WORK/nginx.conf" -p "$WORK/nginx" -g 'daemon off;' &
  SERVER_PID=$!
  wait_port "$PORT" "$SERVER_PID" "$WORK/nginx.log"
}

start_pushpin() {
  for tool in pushpin condure zurl python3; do
    command -v "$tool" >/dev/null || {
      echo "pushpin needs: apt-get install -y pushpin condure zurl python3" >&2; exit 1; }
  done
  # Subscribers on $PORT (condure). The handler's ports are Pushpin's defaults moved by
  # port_offset (PUSHPIN_PORT_OFFSET, default 20000): ZeroMQ on 25560, 25562, 25563, the HTTP
  # publish endpoint on 25561, and the GRIP origin on 25564. Below the ephemeral port range
  # (32768-60999) on purpose: the publish endpoint binds without SO_REUSEADDR, so a port that a
  # previous run's client connection left in TIME_WAIT would refuse it.
  local run=$WORK/pushpin offset=${PUSHPIN_PORT_OFFSET:-20000}
  local publish_port=$((5561 + offset)) origin_port=$((5564 + offset))
  mkdir -p "$run/log"
  local subst=(-e "s#@RUNDIR@#$run#g" -e "s#@PORT@#$PORT#g" -e "s#@ORIGIN_PORT@#$origin_port#g"
    -e "s#@PORT_OFFSET@#$offset#g")
  for file in pushpin.conf zurl.conf routes; do
    sed "${subst[@]}" "$ROOT/bench/pushpin/$file" >"$run/$file"
  done
  python3 "$ROOT/bench/pushpin/grip-origin.py" "$origin_port" >"$run/log/origin.log" 2>&1 &
  EXTRA_PIDS+=($!)
  zurl --config="$run/zurl.conf" >"$run/log/zurl.log" 2>&1 &
  EXTRA_PIDS+=($!)
  pushpin --config="$run/pushpin.conf" >"$run/log/pushpin.log" 2>&1 &
  SERVER_PID=$!
  wait_port "$PORT" "$SERVER_PID" "$run/log/pushpin.log"
  wait_port "$publish_port" "$SERVER_PID" "$run/log/pushpin.log"
  wait_port "$origin_port" "${EXTRA_PIDS[0]}" "$run/log/origin.log"
  TARGET_ARGS=(--publish-addr "127.0.0.1:$publish_port")
}

# Connections closed with a FIN linger in TIME_WAIT for 60 s, and while tens of thousands of
# them name the same port, every new connect() searches longer for a free source port: the
# server measured next would pay for them. herald-bench's subscribers close with a reset and
# leave none; this wait covers whatever else left some (another tool, an interrupted run), so
# each run starts once they are mostly gone, whoever the target. TIME_WAIT_MAX (default 2000)
# is how many may remain; the wait is capped at 90 s.
drain_time_wait() {
  local max=${TIME_WAIT_MAX:-2000} count
  command -v ss >/dev/null || return 0
  for _ in $(seq 90); do
    count=$(ss -tan state time-wait | wc -l)
    ((count <= max)) && return 0
    sleep 1
  done
  echo "bench: $count connections still in TIME_WAIT after 90 s; starting anyway" >&2
}

start() {
  drain_time_wait
  case $target in
    herald) start_herald "$@" ;;
    nchan) start_nchan ;;
    pushpin) start_pushpin ;;
    *) echo "unknown target $target" >&2; exit 2 ;;
  esac
}

bench() {
  local name=$1; shift
  local sub=$1; shift
  echo "== $name against $target (run $run)" >&2
  local file=$name${SUFFIX:-}
  local pids
  pids=$(IFS=,; echo "$SERVER_PID${EXTRA_PIDS[*]:+,${EXTRA_PIDS[*]}}")
  "$BENCH" "$sub" --target "$target" --addr 127.0.0.1:$PORT --jwt-key "$KEY" \
    --server-pid "$pids" --scenario "$file" --threads "$THREADS" \
    --out "$RESULTS/$file-$target-$run.json" "${TARGET_ARGS[@]}" "$@"
}

herald_only() {
  [[ $target == herald ]] || { echo "scenario $scenario runs against herald only" >&2; exit 2; }
}

case $scenario in
  a)
    start
    bench a-burst run --subscribers 10000 --updates 100 --rate 0 --publishers ${BURST_PUBLISHERS:-100} \
      --connect-retries "$RETRIES"
    ;;
  b)
    start
    bench b-paced run --subscribers 10000 --updates 100 --rate 10 --publishers 4 \
      --connect-retries "$RETRIES"
    ;;
  c)
    # 19,000 idle subscribers held by two generator processes (each under the 20,000 open-file
    # limit); the server's RSS growth per connection.
    start
    bench c-idle run --subscribers 19000 --processes 2 --updates 0 --idle-secs 3 \
      --connect-retries "$RETRIES"
    ;;
  d)
    herald_only; start
    bench d-many-topics run --subscribers 10000 --topics many --templates 100 \
      --updates 10000 --rate 0 --publishers 4
    ;;
  e | e-periodic | e-memory)
    herald_only
    case $scenario in
      e) start --durability sync ;;
      e-periodic) start --durability periodic ;;
      e-memory) start --transport memory ;;
    esac
    bench "$scenario-publish" run --subscribers 0 --updates 20000 --rate 0 --publishers "${PUBLISHERS:-16}"
    ;;
  p)
    # Acknowledged publishes/s with the default history (embedded, --durability sync), 1, 16 and
    # 64 concurrent keep-alive publishers, each count on a fresh hub and data directory: over
    # HTTP/1.1 on plain TCP, then over HTTP/2 with TLS (a self-signed P-256 certificate for
    # 127.0.0.1 made by openssl here, not a CA: rustls refuses a CA certificate as the server's
    # own; one HTTP/2 connection per publisher).
    herald_only
    command -v openssl >/dev/null || { echo "scenario p needs openssl" >&2; exit 1; }
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
      -subj /CN=localhost -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
      -addext "basicConstraints=critical,CA:FALSE" -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
    for protocol in http1 h2; do
      for publishers in 1 16 64; do
        case $publishers in 1) updates=3000 ;; 16) updates=20000 ;; *) updates=40000 ;; esac
        if [[ $protocol == h2 ]]; then
          start --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem"
          bench "p-publish-h2-$publishers" run --subscribers 0 --updates "$updates" --rate 0 \
            --publishers "$publishers" --publish-protocol h2 --tls-ca "$WORK/cert.pem"
        else
          start
          bench "p-publish-$publishers" run --subscribers 0 --updates "$updates" --rate 0 \
            --publishers "$publishers"
        fi
        stop_server
        rm -rf "$WORK/data"
      done
    done
    ;;
  f)
    herald_only
    for size in 1000 100000 1000000; do
      start --history-size 2000000 --history-max-age 0s
      bench "f-replay-$size" replay --history "$size" --publishers 16 --back 10 --probes 50
      stop_server
      rm -rf "$WORK/data"
    done
    ;;
  all)
    for s in a b c d e e-memory f; do BUILD=0 bash "$0" "$s" herald "$run"; done
    ;;
  *)
    echo "unknown scenario $scenario (a b c d e e-periodic e-memory f p all)" >&2; exit 2 ;;
esac
