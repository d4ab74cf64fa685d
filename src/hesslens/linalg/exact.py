"""Exact spectra from dense matrices: the reference every estimator is tested against."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..operators.base import assemble_dense


def exact_spectrum(op: Any, *, max_bytes: int | None = None) -> np.ndarray:
    """All eigenvalues of a symmetric operator, ascending, in float64.

    The dense matrix is assembled with batched products against identity columns (n products) and
    diagonalised with ``torch.linalg.eigvalsh``. Above ``max_bytes`` (default 4 GiB for the matrix
    and one working copy) it refuses with the memory estimate rather than exhausting the machine.

    >>> import torch, hesslens as hl
    >>> hl.exact_spectrum(torch.tensor([[2.0, 1.0], [1.0, 2.0]])).tolist()
    [1.0, 3.0]
    """
    return torch.linalg.eigvalsh(assemble_dense(op, max_bytes=max_bytes)).numpy()
