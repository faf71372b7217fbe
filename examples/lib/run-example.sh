# Sourced by each example's run.sh: the settings the hub and the backend share, the `herald`
# binary (found or built), and `start_hub`, which runs the hub in the background until run.sh
# exits. run.sh then runs its backend in the foreground; Ctrl-C stops both.
#
# Environment (all optional):
#   HUB_PORT        the hub's port on 127.0.0.1 (3000)
#   PORT            the backend's port on 127.0.0.1, which serves the page (8000)
#   HERALD_JWT_KEY  the HMAC key the hub verifies tokens with and the backend signs them with
#                   (a random one per run if unset; at least 32 bytes)
#   HERALD_BIN      the hub binary (else `herald` on PATH, else built here with cargo)
set -euo pipefail

examples_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
repo_dir="$(dirname "$examples_dir")"

export HUB_PORT="${HUB_PORT:-3000}"
export PORT="${PORT:-8000}"
export HUB_URL="http://127.0.0.1:$HUB_PORT/.well-known/mercure"
# The page's origin: the backend serves it, and the hub allows it (with cookies) by CORS.
page_origin="http://127.0.0.1:$PORT"

if [[ -z "${HERALD_JWT_KEY:-}" ]]; then
    HERALD_JWT_KEY="$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
fi
# `herald serve` reads its key from HERALD_JWT_KEY; the backend signs tokens with the same one.
export HERALD_JWT_KEY

herald_bin() {
    if [[ -n "${HERALD_BIN:-}" ]]; then
        echo "$HERALD_BIN"
    elif command -v herald >/dev/null; then
        command -v herald
    else
        echo "building herald (cargo build -p herald)..." >&2
        (cd "$repo_dir" && cargo build --quiet -p herald) >&2
        echo "${CARGO_TARGET_DIR:-$repo_dir/target}/debug/herald"
    fi
}

# start_hub [FLAGS...]: `herald serve` on 127.0.0.1:$HUB_PORT, allowing the page's origin, with
# the example's own flags; returns once it listens, and stops it (SIGTERM) when run.sh exits.
# Exits if the hub cannot start, naming the setting to change when the port is taken.
start_hub() {
    local bin
    bin="$(herald_bin)"
    hub_log="$(mktemp)"
    # The hub's log goes to the terminal, and to hub_log, where its "listening on" line is awaited.
    "$bin" serve --listen "127.0.0.1:$HUB_PORT" --cors-origin "$page_origin" "$@" \
        2> >(tee "$hub_log" >&2) &
    hub_pid=$!
    trap 'kill "$hub_pid" 2>/dev/null || true; wait "$hub_pid" 2>/dev/null || true; rm -f "$hub_log"' EXIT
    until grep -q "listening on" "$hub_log"; do
        if ! kill -0 "$hub_pid" 2>/dev/null; then
            sleep 0.1 # the last of its log
            if grep -qi "in use" "$hub_log"; then
                echo "run.sh: port $HUB_PORT is taken: choose another with HUB_PORT=3001" >&2
            else
                echo "run.sh: the hub did not start (its log is above)" >&2
            fi
            exit 1
        fi
        sleep 0.1
    done
}

# run_backend BACKEND.py: the example's backend in the foreground, until Ctrl-C.
run_backend() {
    echo "open $page_origin/ in a browser (Ctrl-C stops the hub and the backend)"
    python3 "$1"
}
