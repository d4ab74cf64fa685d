"""What the linear-algebra layer needs from an operator, and adapters for the common kinds.

hesslens algorithms accept any symmetric operator: a :class:`~hesslens.HessianOperator`, a dense
``torch.Tensor`` or NumPy array, or a SciPy ``LinearOperator``. :func:`as_operator` wraps each in a
:class:`SymmetricOperator` whose :meth:`matmat` maps a float64 ``(n, k)`` tensor to a float64
``(n, k)`` tensor, so that the recurrences can always run in float64 whatever the products run in.
:func:`as_operator` only adapts; the algorithms check what they are given (symmetry and finiteness of
dense inputs, finite products) in :mod:`hesslens.linalg.checks`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from .. import memory
from ..errors import InvalidInputError


def __getattr__(name: str) -> Any:
    # DENSE_BUDGET_BYTES was a fixed 4 GiB; the ceiling is now the shared budget of hesslens.memory,
    # read when asked so that HESSLENS_MEMORY_BUDGET set at run time is seen.
    if name == "DENSE_BUDGET_BYTES":
        return memory.default_budget()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class SymmetricOperator:
    """A symmetric n×n operator seen through batched products in float64."""

    n: int
    matmat: Callable[[torch.Tensor], torch.Tensor]
    source: Any = None

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.n)


def _dense_matmat(a: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    a64 = a.detach().to(torch.float64)
    return lambda v: a64 @ v.to(a64.device)


def as_operator(a: Any) -> SymmetricOperator:
    """Wrap ``a`` (hesslens operator, tensor, array or SciPy LinearOperator) as a SymmetricOperator."""
    if isinstance(a, SymmetricOperator):
        return a
    shape = getattr(a, "shape", None)
    if shape is None or len(shape) != 2 or shape[0] != shape[1]:
        raise InvalidInputError(f"operator must be square with a 2-D .shape, got shape {shape}")
    n = int(shape[0])
    if n == 0:
        raise InvalidInputError("operator has dimension 0")
    if isinstance(a, torch.Tensor):
        return SymmetricOperator(n, _dense_matmat(a), a)
    if isinstance(a, np.ndarray):
        return SymmetricOperator(n, _dense_matmat(torch.from_numpy(np.asarray(a, dtype=np.float64))), a)
    if hasattr(a, "matmat") and not hasattr(a, "torch_matmat"):  # SciPy LinearOperator

        def scipy_matmat(v: torch.Tensor) -> torch.Tensor:
            out = np.asarray(a.matmat(v.cpu().numpy()), dtype=np.float64)
            return torch.from_numpy(out.reshape(n, -1))

        return SymmetricOperator(n, scipy_matmat, a)
    if hasattr(a, "torch_matmat"):  # hesslens operators: float64 in, float64 out
        return SymmetricOperator(n, a.torch_matmat, a)
    if hasattr(a, "__matmul__"):
        return SymmetricOperator(n, lambda v: torch.as_tensor(a @ v, dtype=torch.float64), a)
    raise InvalidInputError(f"cannot use {type(a).__name__} as an operator: it has no matmat or @")


def dense_bytes(n: int) -> int:
    """Memory to assemble and diagonalise an n×n float64 matrix (the matrix and one working copy)."""
    return 2 * memory.estimate(n, n)


def check_dense_budget(n: int, max_bytes: int | str | None) -> None:
    """Refuse (:class:`~hesslens.errors.MemoryBudgetError`) a dense n×n matrix above the memory budget."""
    memory.check(dense_bytes(n), f"a dense {n}×{n} float64 matrix (plus one working copy)", max_bytes,
                 advice="use eigenvalues() or spectral_density(), which need only a few n-vectors")


def _symmetrise_in_place(a: torch.Tensor, tile: int) -> None:
    """a ← (a + aᵀ)/2 tile by tile: the same numbers as ``(a + a.T) / 2`` without a second n×n matrix."""
    n = a.shape[0]
    for i in range(0, n, tile):
        for j in range(i, n, tile):
            upper, lower = a[i:i + tile, j:j + tile], a[j:j + tile, i:i + tile]
            s = (upper + lower.T) / 2
            upper.copy_(s)
            lower.copy_(s.T)


def assemble_dense(op: Any, *, max_bytes: int | str | None = None, chunk: int = 256) -> torch.Tensor:
    """Assemble the dense float64 matrix of a symmetric operator from batched products with I.

    The result is symmetrised, (A + Aᵀ)/2, which removes round-off asymmetry and nothing else. The
    budget (``max_bytes``, else :func:`hesslens.memory.default_budget`) must hold the matrix and one
    working copy, 16·n² bytes, which is what diagonalising it takes; it is checked before any product.
    """
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise InvalidInputError(f"chunk must be a positive integer, got {chunk!r}")
    sym = as_operator(op)
    check_dense_budget(sym.n, max_bytes)
    out = torch.empty(sym.n, sym.n, dtype=torch.float64)
    for start in range(0, sym.n, chunk):
        stop = min(sym.n, start + chunk)
        eye = torch.zeros(sym.n, stop - start, dtype=torch.float64)
        eye[torch.arange(start, stop), torch.arange(stop - start)] = 1.0
        out[:, start:stop] = sym.matmat(eye)
    _symmetrise_in_place(out, chunk)
    return out
