#!/usr/bin/env bash
# Builds the documentation site (MkDocs + mkdocstrings) into ./site, warnings as errors.
#
#   bash scripts/docs.sh            # build ./site with `mkdocs build --strict`
#   bash scripts/docs.sh serve      # live preview at http://127.0.0.1:8000
#
# Installs nothing itself: when the docs packages are missing it runs `bash scripts/setup.sh docs`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import mkdocs, mkdocstrings_handlers.python, material, hesslens" 2>/dev/null; then
    bash scripts/setup.sh docs
fi
if [ "${1:-build}" = "serve" ]; then
    exec .venv/bin/python -m mkdocs serve --strict
fi
exec .venv/bin/python -m mkdocs build --strict -d site "$@"
