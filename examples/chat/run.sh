#!/usr/bin/env bash
# The chat example: Herald on :3000 and the backend (which serves the page) on :8000.
# Run: bash examples/chat/run.sh   then open http://127.0.0.1:8000/
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../lib/run-example.sh"

# Subscribers need a token (no --anonymous): the backend gives each user one in a cookie.
# History in memory: a chat needs none across restarts of the hub.
start_hub --transport memory
run_backend "$here/backend.py"
