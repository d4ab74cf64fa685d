"""A tiny float64 problem for the report tests: small enough for a torch.func.hessian reference."""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn

from conftest import concatenated_objective, reference_hessian


def tiny_model() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        return nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double()


def tiny_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Two batches of unequal size (18 and 12 samples), so batch weighting matters."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(30, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (30,), generator=g)
    return [(x[:18], y[:18]), (x[18:], y[18:])]


@functools.lru_cache(maxsize=None)
def tiny_spectrum() -> np.ndarray:
    """Exact eigenvalues (ascending) of the tiny problem's mean cross-entropy Hessian."""
    h = reference_hessian(tiny_model(), concatenated_objective(nn.CrossEntropyLoss(), tiny_batches()))
    return torch.linalg.eigvalsh(h).numpy()
