#!/usr/bin/env bash
# The Python interop tests: a venv in .venv with requirements.txt installed (once per change of
# requirements.txt), then pytest against the real `herald` binary ($HERALD_BIN, else built here
# with `cargo build -p herald`). Fails when pytest collects no test.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
python="${PYTHON:-python3}"

if ! command -v "$python" >/dev/null; then
    echo "tests/interop/python/run.sh: $python is not installed: apt-get install python3 python3-venv" >&2
    exit 1
fi

venv="$here/.venv"
stamp="$venv/.requirements.sha256"
wanted="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]]; then
    echo "==> creating $venv"
    rm -rf "$venv"
    if ! "$python" -m venv "$venv"; then
        echo "tests/interop/python/run.sh: cannot create a venv: apt-get install python3-venv" >&2
        exit 1
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    echo "$wanted" >"$stamp"
fi

if [[ -n "${HERALD_BIN:-}" ]]; then
    HERALD_BIN="$(realpath "$HERALD_BIN")"
    export HERALD_BIN
else
    (cd "$repo" && cargo build -p herald)
    target_dir="$(cd "$repo" && cargo metadata --format-version 1 --no-deps |
        "$venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
    export HERALD_BIN="$target_dir/debug/herald"
fi

echo "==> Python interop tests (hub $HERALD_BIN)"
cd "$here"
status=0
"$venv/bin/python" -m pytest -p no:cacheprovider "$@" || status=$?
if [[ $status -eq 5 ]]; then
    echo "tests/interop/python/run.sh: pytest collected no test" >&2
fi
exit "$status"
