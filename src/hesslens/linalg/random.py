"""Seeded random probe vectors (every randomised algorithm takes ``seed=``)."""

from __future__ import annotations

import torch

from .checks import seed as checked_seed


def generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (an integer; anything else is refused, naming it)."""
    return torch.Generator(device="cpu").manual_seed(checked_seed(seed))


def rademacher_signs(n: int, k: int, gen: torch.Generator) -> torch.Tensor:
    """An (n, k) int8 matrix of independent 0/1 draws: 1/8 of the memory of the float64 probes.

    :func:`rademacher_columns` turns any group of its columns into ±1 float64 probes, so probes can be
    drawn once and used group by group with the same values as drawing them all at once.
    """
    return torch.randint(0, 2, (n, k), generator=gen, dtype=torch.int8)


def rademacher_columns(signs: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """±1 probes of ``dtype`` (exact in any float dtype) from 0/1 draws (0 → −1, 1 → +1), column-major:
    each probe contiguous, the layout in which hesslens operators take their columns without a copy."""
    out = torch.empty(signs.shape[1], signs.shape[0], dtype=dtype)
    return out.copy_(signs.T).mul_(2).sub_(1).T


def rademacher(n: int, k: int, gen: torch.Generator, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """An (n, k) matrix of independent ±1 entries (float64 unless told)."""
    return rademacher_columns(rademacher_signs(n, k, gen), dtype)


def gaussian(n: int, k: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(n, k, generator=gen, dtype=torch.float64)
