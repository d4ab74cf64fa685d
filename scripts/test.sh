#!/usr/bin/env bash
# Set up and run the whole test suite (unit, property-based, doctests, CLI and study smoke runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test   # the core and the test extra (studies, Ray, Lightning, pytest, ...)
export MPLBACKEND=Agg
exec .venv/bin/python -m pytest "$@"
