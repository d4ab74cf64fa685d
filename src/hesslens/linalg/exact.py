"""Exact spectra from dense matrices: the reference every estimator is tested against."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..operators.base import assemble_dense
from . import checks


def exact_spectrum(op: Any, *, max_bytes: int | str | None = None) -> np.ndarray:
    """All eigenvalues of a symmetric operator, ascending, in float64.

    The dense matrix is assembled with batched products against identity columns (n products) and
    diagonalised with ``torch.linalg.eigvalsh``. The matrix and one working copy, 16·n² bytes, must
    fit the memory budget (``max_bytes``, else :func:`hesslens.memory.default_budget`, a quarter of
    physical memory unless ``HESSLENS_MEMORY_BUDGET`` says otherwise); above it, it refuses with the
    estimate before any product rather than exhausting the machine.

    >>> import torch, hesslens as hl
    >>> hl.exact_spectrum(torch.tensor([[2.0, 1.0], [1.0, 2.0]])).tolist()
    [1.0, 3.0]
    """
    return torch.linalg.eigvalsh(assemble_dense(checks.operator(op), max_bytes=max_bytes)).numpy()
