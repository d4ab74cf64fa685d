#!/usr/bin/env bash
# The main job: set up (the core dependencies only: no test, Ray or Lightning packages), train the
# embedded default model and write its curvature report.
# Extra arguments go to `hesslens analyze` (e.g. --out DIR, --steps 80 --probes 10).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >&2
exec .venv/bin/hesslens analyze "$@"
