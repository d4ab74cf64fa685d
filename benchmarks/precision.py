"""Accuracy, speed and memory of float32 against float64: in the products, and in the Lanczos basis.

1. **Products** (``--products``, on the digits MLP 64-64-64-10): the model as trained (float32 products)
   against ``model.double()`` (float64 products), both with a float64 Lanczos basis: λ_max, λ_min, the
   first two SLQ moments and the time of SLQ 80 × 10.
2. **Basis** (``--basis``, on models of the benchmark zoo): one float32 operator, SLQ run twice with the
   same probes, once with a float64 Lanczos basis and once with a float32 one (the default for a float32
   model since issue 13): the extreme SLQ nodes, the first four moments, the smoothed density, the SLQ
   time, its share outside the products (the recurrence and reorthogonalisation), and the basis's bytes.

Run: ``.venv/bin/python -m benchmarks.precision`` (both; ``--models mlp,cnn,resnet18`` for the basis
table). Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

import hesslens as hl
from hesslens.linalg.lanczos import lanczos_bytes

from . import zoo

#: SLQ settings of the basis table per zoo model (those of benchmarks.run's full preset).
BASIS_SETTINGS = {"mlp": (80, 10), "cnn": (80, 10), "transformer": (80, 3), "resnet18": (40, 1), "gpt": (40, 1)}


def digits_mlp(seed: int = 0) -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    x, y = load_digits(return_X_y=True)
    x = (x - x.mean(0)) / (x.std(0) + 1e-8)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    return model, (torch.tensor(x, dtype=torch.float32), torch.tensor(y))


def measure_products(model: nn.Module, data, dtype: torch.dtype) -> dict[str, float]:
    model = copy.deepcopy(model).to(dtype)
    data = (data[0].to(dtype), data[1])
    op = hl.HessianOperator(model, nn.CrossEntropyLoss(), data)
    ends = hl.eigenvalues(op, k=1, which="both", tol=1e-9)
    op.product_seconds = 0.0
    t0 = time.perf_counter()
    sd = hl.spectral_density(op, steps=80, probes=10, seed=0, basis_dtype="float64")
    total = time.perf_counter() - t0
    return {"lambda_min": float(ends.values[0]), "lambda_max": float(ends.values[1]),
            "m1": sd.moment(1), "m2": sd.moment(2), "slq_s": total, "products_s": op.product_seconds,
            "engine": op.engine}


def products_table() -> str:
    model, data = digits_mlp()
    r32, r64 = measure_products(model, data, torch.float32), measure_products(model, data, torch.float64)
    lines = ["| quantity | float32 products | float64 products | relative difference |", "|---|---|---|---|"]
    for key in ("lambda_max", "lambda_min", "m1", "m2"):
        rel = abs(r32[key] - r64[key]) / max(abs(r64[key]), 1e-300)
        lines.append(f"| {key} | {r32[key]:.10g} | {r64[key]:.10g} | {rel:.1e} |")
    for key in ("slq_s", "products_s"):
        lines.append(f"| {key} (SLQ 80×10) | {r32[key]:.2f} | {r64[key]:.2f} | ×{r64[key] / r32[key]:.2f} |")
    share = 1 - r32["products_s"] / r32["slq_s"]
    lines.append(f"\nfloat64 recurrence (reorthogonalisation and bookkeeping): {share:.0%} of SLQ time with float32 "
                 f"products; engines {r32['engine']} / {r64['engine']}")
    return "\n".join(lines)


def _slq(op: hl.HessianOperator, steps: int, probes: int, basis: str) -> tuple[hl.SpectralDensity, float, float]:
    before = op.product_seconds
    t0 = time.perf_counter()
    sd = hl.spectral_density(op, steps=steps, probes=probes, seed=0, basis_dtype=basis, progress=False)
    return sd, time.perf_counter() - t0, op.product_seconds - before


def basis_rows(name: str) -> list[str]:
    """One float32 operator of zoo model ``name``; SLQ with a float64 and a float32 basis, same probes."""
    steps, probes = BASIS_SETTINGS[name]
    case = zoo.build(name)
    op = hl.HessianOperator(case.model, case.loss_fn, case.batch, expected_matvecs=2 * steps * probes)
    (ref, t64, p64), (low, t32, p32) = _slq(op, steps, probes, "float64"), _slq(op, steps, probes, "float32")
    scale = float(np.abs(ref.nodes).max())
    rel = lambda a, b: abs(a - b) / max(abs(b), 1e-300)  # noqa: E731
    grid = ref.default_grid()
    d64, d32 = ref.density(grid), low.density(grid)
    l1 = float(np.abs(d32 - d64).sum() / np.abs(d64).sum())
    cells = [
        ("largest node", f"{low.nodes.max():.10g}", f"{ref.nodes.max():.10g}", f"{rel(low.nodes.max(), ref.nodes.max()):.1e}"),
        ("smallest node", f"{low.nodes.min():.10g}", f"{ref.nodes.min():.10g}",
         f"{abs(low.nodes.min() - ref.nodes.min()) / scale:.1e} of max |node|"),
        *[(f"moment {k}", f"{low.moment(k):.10g}", f"{ref.moment(k):.10g}", f"{rel(low.moment(k), ref.moment(k)):.1e}")
          for k in (1, 2, 3, 4)],
        ("smoothed density (default grid)", "", "", f"{l1:.1e} (relative L1)"),
        (f"SLQ {steps}×{probes} time", f"{t32:.3g} s", f"{t64:.3g} s", f"×{t64 / t32:.2f}"),
        ("time outside products", f"{t32 - p32:.3g} s", f"{t64 - p64:.3g} s",
         f"×{(t64 - p64) / max(t32 - p32, 1e-9):.2f}"),
        ("Lanczos storage per probe", f"{lanczos_bytes(op.n, steps, 1, torch.float32) / 2**20:,.0f} MiB",
         f"{lanczos_bytes(op.n, steps) / 2**20:,.0f} MiB", "×2.00"),
    ]
    return [f"| {name} ({op.n:,} parameters, {op.engine}) | {q} | {a} | {b} | {d} |" for q, a, b, d in cells]


def basis_table(models: list[str]) -> str:
    lines = ["| model | quantity | float32 basis | float64 basis | difference (float32 against float64) |",
             "|---|---|---|---|---|"]
    for name in models:
        lines += basis_rows(name)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", action="store_true", help="only the products table")
    parser.add_argument("--basis", action="store_true", help="only the basis table")
    parser.add_argument("--models", default="mlp,cnn,resnet18", help=f"basis table models, of {sorted(BASIS_SETTINGS)}")
    args = parser.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    unknown = sorted(set(models) - set(BASIS_SETTINGS))
    if unknown:
        parser.error(f"unknown models {unknown}: choose from {sorted(BASIS_SETTINGS)}")
    both = not (args.products or args.basis)
    if args.products or both:
        print("Float32 against float64 products (float64 basis), digits MLP 64-64-64-10\n")
        print(products_table())
    if args.basis or both:
        print("\nFloat32 against float64 Lanczos basis (float32 products, same probes), SLQ seed 0\n")
        print(basis_table(models))


if __name__ == "__main__":
    main()
