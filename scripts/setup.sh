#!/usr/bin/env bash
# Creates ./.venv (if missing) and installs hesslens with its test dependencies.
# The CPU build of torch is pinned here; a GPU user installs torch first (see README) and sets
# HESSLENS_KEEP_TORCH=1 so that this script leaves it alone.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
if [ "${HESSLENS_KEEP_TORCH:-0}" != "1" ]; then
    .venv/bin/python -m pip install -q "torch==2.13.0"
fi
.venv/bin/python -m pip install -q -e ".[test]"
.venv/bin/python -c "import torch, hesslens; print(f'hesslens {hesslens.__version__} with torch {torch.__version__}')"
