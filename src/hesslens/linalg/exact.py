"""Exact spectra from dense matrices: the reference every estimator is tested against."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import InvalidInputError
from ..operators.base import assemble_dense
from ..operators.blocks import BlockView
from . import checks

if TYPE_CHECKING:
    from .blocks import BlockResults


def exact_spectrum(op: Any, *, max_bytes: int | str | None = None, max_block: int | None = None
                   ) -> np.ndarray | BlockResults:
    """All eigenvalues of a symmetric operator, ascending, in float64.

    The dense matrix is assembled with batched products against identity columns (n products) and
    diagonalised with ``torch.linalg.eigvalsh``. The matrix and one working copy, 16·n² bytes, must
    fit the memory budget (``max_bytes``, else :func:`hesslens.memory.default_budget`, a quarter of
    physical memory unless ``HESSLENS_MEMORY_BUDGET`` says otherwise); above it, it refuses with the
    estimate before any product rather than exhausting the machine.

    >>> import torch, hesslens as hl
    >>> hl.exact_spectrum(torch.tensor([[2.0, 1.0], [1.0, 2.0]])).tolist()
    [1.0, 3.0]

    For a :class:`~hesslens.operators.blocks.BlockView` it returns a
    :class:`~hesslens.linalg.blocks.BlockResults` of every block's eigenvalues (blocks of at most
    ``max_block`` coordinates, default 4096; see :func:`~hesslens.linalg.blocks.block_exact_spectrum`).
    ``max_block`` applies to block views only.
    """
    if isinstance(op, BlockView):
        from .blocks import block_exact_spectrum

        return block_exact_spectrum(op, max_block=max_block, max_bytes=max_bytes)
    if max_block is not None:
        raise InvalidInputError("max_block applies to a BlockView (the largest block formed densely), not to one operator")
    return torch.linalg.eigvalsh(assemble_dense(checks.operator(op), max_bytes=max_bytes)).numpy()
