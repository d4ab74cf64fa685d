"""Seeded random probe vectors (every randomised algorithm takes ``seed=``)."""

from __future__ import annotations

import torch


def generator(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(int(seed))


def rademacher(n: int, k: int, gen: torch.Generator) -> torch.Tensor:
    """An (n, k) float64 matrix of independent ±1 entries."""
    return torch.randint(0, 2, (n, k), generator=gen, dtype=torch.int8).to(torch.float64).mul_(2).sub_(1)


def gaussian(n: int, k: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(n, k, generator=gen, dtype=torch.float64)
