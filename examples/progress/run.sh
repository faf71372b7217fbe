#!/usr/bin/env bash
# The progress example: Herald on :3000 and the backend (which serves the page) on :8000.
# Run: bash examples/progress/run.sh   then open http://127.0.0.1:8000/
# To see a job survive a restart of the hub, start a job, then in another terminal:
#   kill "$(cat examples/progress/herald-data/hub.pid)"
# (HERALD_DATA_DIR sets another directory for the hub's history and hub.pid.)
# This script starts the hub again at once; the page catches up without losing a step.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../lib/run-example.sh"

# History on disk (the default `embedded` transport) survives the restart; job topics are
# public, so subscribers need no token (--anonymous).
data_dir="${HERALD_DATA_DIR:-$here/herald-data}"
mkdir -p "$data_dir"
bin="$(herald_bin)"
(
    trap 'kill "$hub" 2>/dev/null; wait "$hub"; exit 0' TERM
    while true; do
        "$bin" serve --listen "127.0.0.1:$HUB_PORT" --cors-origin "$page_origin" --anonymous \
            --data-dir "$data_dir" &
        hub=$!
        echo "$hub" >"$data_dir/hub.pid"
        status=0
        wait "$hub" || status=$?
        # 1: the hub cannot run (port in use...), 2: a wrong setting; its log says which.
        if ((status == 1 || status == 2)); then
            echo "run.sh: the hub cannot start (exit $status, its log is above; if port $HUB_PORT" \
                "is taken, choose another with HUB_PORT=3001); Ctrl-C stops the backend" >&2
            exit "$status"
        fi
        echo "the hub stopped; starting it again" >&2
        sleep 0.5
    done
) &
hub_loop=$!
trap 'kill "$hub_loop" 2>/dev/null || true; wait "$hub_loop" 2>/dev/null || true' EXIT
run_backend "$here/backend.py"
