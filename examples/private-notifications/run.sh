#!/usr/bin/env bash
# The private-notifications example: Herald on :3000 and the backend (which serves the page) on
# :8000. Log in as alice in one browser and as bob in another (or a private window: both users
# in one browser share the cookie).
# Run: bash examples/private-notifications/run.sh   then open http://127.0.0.1:8000/
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../lib/run-example.sh"

# No --anonymous: a subscriber without a token (no cookie) is refused with 401. --cors-origin
# names the page's origin exactly (start_hub adds it): with `*` a browser sends no cookie.
start_hub --transport memory
run_backend "$here/backend.py"
