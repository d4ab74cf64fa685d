#!/usr/bin/env bash
# Creates ./.venv (if missing) and installs hesslens into it, editable.
#
#   bash scripts/setup.sh            # what `hesslens analyze` needs (scripts/analyze.sh): the core only
#   bash scripts/setup.sh test       # also the test dependencies (scripts/test.sh): Ray, Lightning, ...
#   bash scripts/setup.sh studies,ray  # any extras of pyproject.toml, comma-separated (or HESSLENS_EXTRAS=...)
#   bash scripts/setup.sh docs       # MkDocs, mkdocstrings, Material: what scripts/docs.sh needs
#
# The CPU build of torch is pinned here; a GPU user installs torch first (see README) and sets
# HESSLENS_KEEP_TORCH=1 so that this script leaves it alone. Extras already installed stay installed.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=${1:-${HESSLENS_EXTRAS:-}}
if [[ ! "$EXTRAS" =~ ^[A-Za-z0-9_,-]*$ ]]; then
    echo "setup.sh: extras must be comma-separated names such as 'test' or 'studies,ray', got '$EXTRAS'" >&2
    exit 2
fi
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
if [ "${HESSLENS_KEEP_TORCH:-0}" != "1" ]; then
    .venv/bin/python -m pip install -q "torch==2.13.0"
fi
.venv/bin/python -m pip install -q -e ".${EXTRAS:+[$EXTRAS]}"
# Bytecode, as pip writes it for an installed package: an editable install leaves it to the first
# import, which never writes it where PYTHONDONTWRITEBYTECODE is set (each fresh process then compiles
# hesslens again, about 0.1 s). Stale files are recompiled by Python itself.
.venv/bin/python -m compileall -q src/hesslens
.venv/bin/python -c "import torch, hesslens; print(f'hesslens {hesslens.__version__} with torch {torch.__version__}')"
