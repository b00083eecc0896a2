#!/usr/bin/env bash
# bntop-torch's pytest suite, in a virtual environment that has torch and pytest (created and
# filled when missing, so a fresh machine needs nothing but python3 and network access to PyPI).
#
#   python/run-tests.sh [pytest arguments]
#
# BNTOP_TORCH_VENV: the environment (default ${XDG_CACHE_HOME:-$HOME/.cache}/bntop/torch-venv).
# BNTOP_BIN: the bntop binary to test against (default: `cargo build --locked` in this checkout).
# PYTHON: the interpreter that creates the environment (default python3).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
venv="${BNTOP_TORCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/bntop/torch-venv}"

if [ ! -x "$venv/bin/python" ]; then
    echo "run-tests.sh: creating $venv" >&2
    mkdir -p "$(dirname "$venv")"
    "${PYTHON:-python3}" -m venv "$venv" || {
        echo "run-tests.sh: could not create a venv (Debian/Ubuntu: apt-get install -y python3-venv)" >&2
        exit 1
    }
fi
py="$venv/bin/python"

if ! "$py" -c 'import torch' 2>/dev/null; then
    echo "run-tests.sh: installing torch into $venv (a large download, once)" >&2
    "$py" -m pip install --quiet 'torch>=2.1'
fi
if ! "$py" -c 'import pytest' 2>/dev/null; then
    "$py" -m pip install --quiet pytest
fi
# Editable, so the environment always runs this checkout's package.
if ! "$py" - "$here" <<'PY' 2>/dev/null
import os, sys
import bntop_torch
ours = os.path.realpath(os.path.join(sys.argv[1], "bntop_torch"))
sys.exit(0 if os.path.realpath(os.path.dirname(bntop_torch.__file__)) == ours else 1)
PY
then
    "$py" -m pip install --quiet -e "$here"
fi

if [ -z "${BNTOP_BIN:-}" ]; then
    (cd "$repo" && cargo build --locked --quiet)
    export BNTOP_BIN="$repo/target/debug/bntop"
fi

cd "$here"
exec "$py" -m pytest "$@"
