#!/usr/bin/env bash
# The dashboard example: Herald on :3000 and the backend (which serves the page) on :8000.
# Run: bash examples/dashboard/run.sh   then open http://127.0.0.1:8000/
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../lib/run-example.sh"

# Public figures: subscribers need no token (--anonymous). No history needed across restarts.
start_hub --anonymous --transport memory
run_backend "$here/backend.py"
