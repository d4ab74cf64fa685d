"""Accuracy and speed of float32 products under float64 Lanczos recurrences.

hesslens keeps every Lanczos vector and the tridiagonal in float64 while the Hessian-vector
products run in the model's dtype. This compares, on the digits MLP 64-64-64-10:

* products in float32 (the model as trained) against float64 (``model.double()``): λ_max, λ_min,
  the first two SLQ moments, and the time of SLQ 80 × 10;
* how much of the SLQ time the float64 recurrence (reorthogonalisation) takes.

Run: ``.venv/bin/python -m benchmarks.precision``. Prints a Markdown table.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

import hesslens as hl


def digits_mlp(seed: int = 0) -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    x, y = load_digits(return_X_y=True)
    x = (x - x.mean(0)) / (x.std(0) + 1e-8)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    return model, (torch.tensor(x, dtype=torch.float32), torch.tensor(y))


def measure(model: nn.Module, data, dtype: torch.dtype) -> dict[str, float]:
    model = copy.deepcopy(model).to(dtype)
    data = (data[0].to(dtype), data[1])
    op = hl.HessianOperator(model, nn.CrossEntropyLoss(), data)
    ends = hl.eigenvalues(op, k=1, which="both", tol=1e-9)
    op.product_seconds = 0.0
    t0 = time.perf_counter()
    sd = hl.spectral_density(op, steps=80, probes=10, seed=0)
    total = time.perf_counter() - t0
    return {"lambda_min": float(ends.values[0]), "lambda_max": float(ends.values[1]),
            "m1": sd.moment(1), "m2": sd.moment(2), "slq_s": total, "products_s": op.product_seconds,
            "engine": op.engine}


def main() -> None:
    torch.set_num_threads(torch.get_num_threads())
    model, data = digits_mlp()
    r32, r64 = measure(model, data, torch.float32), measure(model, data, torch.float64)
    print("| quantity | float32 products | float64 products | relative difference |")
    print("|---|---|---|---|")
    for key in ("lambda_max", "lambda_min", "m1", "m2"):
        rel = abs(r32[key] - r64[key]) / max(abs(r64[key]), 1e-300)
        print(f"| {key} | {r32[key]:.10g} | {r64[key]:.10g} | {rel:.1e} |")
    for key in ("slq_s", "products_s"):
        print(f"| {key} (SLQ 80×10) | {r32[key]:.2f} | {r64[key]:.2f} | ×{r64[key] / r32[key]:.2f} |")
    share = 1 - r32["products_s"] / r32["slq_s"]
    print(f"\nfloat64 recurrence (reorthogonalisation and bookkeeping): {share:.0%} of SLQ time with float32 products; "
          f"engines {r32['engine']} / {r64['engine']}")


if __name__ == "__main__":
    main()
