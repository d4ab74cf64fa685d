#!/usr/bin/env bash
# Install the benchmark peers (the `bench` extra of pyproject.toml) into .venv without their
# dependencies: backpack-for-pytorch (a dependency of curvlinops) requires torchvision, and
# resolving that would replace the CPU torch 2.13.0 with the newest CUDA build. Nothing the
# benchmarks call imports torchvision. On a machine whose torch has a matching torchvision
# (e.g. a GPU install), `pip install -e '.[bench]'` works as well.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh
mapfile -t pins < <(.venv/bin/python - <<'PY'
try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib
with open("pyproject.toml", "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["optional-dependencies"]["bench"]))
PY
)
.venv/bin/pip install --no-deps "${pins[@]}"
.venv/bin/python -c "import torch, pyhessian, hessian_eigenthings, curvlinops; print('peers installed; torch', torch.__version__)"
