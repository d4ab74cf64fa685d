"""Validation of what the algorithms are given: operators, counts, tolerances, seeds, starting vectors.

Every algorithm of :mod:`hesslens.linalg` checks its arguments here, once, before any product, so
that bad input ends in an :class:`~hesslens.errors.InvalidInputError` naming the argument and the
value instead of a wrong number or a raw NumPy/PyTorch error.

Operators (:func:`operator`). A dense input (``torch.Tensor`` or NumPy array) must be real, finite
and symmetric: max |A − Aᵀ| ≤ √ε · max |A|, ε the machine epsilon of its dtype (1.5e-8 for float64,
3.5e-4 for float32). Round-off asymmetry of a computed Hessian is far below that, a non-symmetric
matrix far above it (for a Gaussian matrix the ratio is of order 1). Within the tolerance the
algorithms compute the spectrum of (A + Aᵀ)/2 up to the asymmetry's size. The check reads the matrix
twice, in blocks (O(n²) once per call, a few MiB of extra memory; 30 ms for n = 3000 on one core,
a tenth of a cold-started λ_max). Other operators are not inspected, since
that would cost products; a ``HessianOperator`` is symmetric by construction. Every product of a
non-hesslens operator is checked for shape and for NaN/Inf, and an error names the cause; hesslens
operators check their own products.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..errors import InvalidInputError
from ..operators.base import SymmetricOperator, as_operator

#: Elements per row block of the finiteness pass, and the side of the symmetry pass's square tiles.
_BLOCK_ELEMENTS = 2**22
_TILE = 128


def integer(name: str, value: Any, minimum: int = 1, why: str = "") -> int:
    """``value`` as an int ≥ ``minimum``; Python and NumPy integers only (bool and 3.0 are refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise InvalidInputError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise InvalidInputError(f"{name} must be at least {minimum}{why}, got {value}")
    return int(value)


def optional_integer(name: str, value: Any, minimum: int = 1) -> int | None:
    """None, or :func:`integer` (None means "the default")."""
    return None if value is None else integer(name, value, minimum)


def tolerance(name: str, value: Any) -> float:
    """A relative tolerance: a real number strictly between 0 and 1."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise InvalidInputError(f"{name} must be a number in (0, 1), got {value!r}")
    v = float(value)
    if not 0.0 < v < 1.0:  # also refuses NaN and ±Inf
        raise InvalidInputError(f"{name} must be in (0, 1) (a residual relative to the operator's norm), got {value!r}")
    return v


def seed(value: Any, name: str = "seed") -> int:
    """A seed for :class:`torch.Generator`: an integer in [−2⁶³, 2⁶⁴ − 1]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise InvalidInputError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if not -(2**63) <= int(value) < 2**64:
        raise InvalidInputError(f"{name} must lie in [-2**63, 2**64 - 1], got {value}")
    return int(value)


def dtype_name(dtype: torch.dtype) -> str:
    """``"float32"`` for ``torch.float32``: how messages and results name a dtype."""
    return str(dtype).removeprefix("torch.")


def choice(name: str, value: Any, options: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in options:
        raise InvalidInputError(f"{name} must be one of {tuple(options)}, got {value!r}")
    return value


# -- dense matrices and operators --------------------------------------------------------------------


def _as_tensor(a: Any, name: str) -> torch.Tensor:
    """A tensor view (no copy where possible) of a real array, refusing complex and non-numeric dtypes."""
    if isinstance(a, torch.Tensor):
        if a.is_complex():
            raise InvalidInputError(f"{name} is complex ({a.dtype}): hesslens works with real symmetric operators; "
                                    "pass the real part explicitly if that is what is meant")
        return a.detach()
    arr = np.asarray(a)
    if arr.dtype.kind == "c":
        raise InvalidInputError(f"{name} is complex ({arr.dtype}): hesslens works with real symmetric operators; "
                                "pass the real part explicitly if that is what is meant")
    if arr.dtype.kind not in "biuf":
        raise InvalidInputError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    try:
        return torch.as_tensor(arr)
    except (TypeError, ValueError):  # negative strides, unusual byte orders: copy
        return torch.from_numpy(np.array(arr, dtype=np.float64))


def _finite_range(x: torch.Tensor) -> tuple[float, float]:
    # min and max propagate NaN and show ±Inf, ten times faster than an isfinite mask
    lo, hi = (float(v) for v in torch.aminmax(x))
    return lo, hi


def dense_matrix(a: Any, name: str = "op") -> None:
    """Refuse a dense matrix that is complex, has NaN/Inf entries, or is not symmetric (see module docstring).

    Two passes in blocks: min and max by row blocks (finiteness, max|A|), then A − Aᵀ by square tiles
    of the upper triangle, each compared with the tolerance as soon as it is computed.
    """
    t = _as_tensor(a, name)
    if t.layout != torch.strided:  # sparse tensors: only the dtype is checked here, products are guarded
        return
    if not t.is_floating_point():
        t = t.to(torch.float64)  # integers and booleans are exact in float64
    n = t.shape[0]
    rows = max(1, _BLOCK_ELEMENTS // max(1, n))
    largest = 0.0
    for i in range(0, n, rows):
        lo, hi = _finite_range(t[i:i + rows])
        if not (math.isfinite(lo) and math.isfinite(hi)):
            bad = ~torch.isfinite(t)
            count, (r, c) = int(bad.sum()), (int(x) for x in torch.nonzero(bad)[0])
            raise InvalidInputError(f"{name} has {count} non-finite entr{'y' if count == 1 else 'ies'} (NaN or Inf), "
                                    f"the first {float(t[r, c])} at ({r}, {c}): the matrix must be finite")
        largest = max(largest, -lo, hi)
    eps = torch.finfo(t.dtype).eps
    rtol = math.sqrt(eps)
    for i in range(0, n, _TILE):
        for j in range(i, n, _TILE):
            diff = t[i:i + _TILE, j:j + _TILE] - t[j:j + _TILE, i:i + _TILE].T
            lo, hi = _finite_range(diff)
            skew = max(-lo, hi)
            if skew > rtol * largest:
                r, c = divmod(int(diff.abs().argmax()), diff.shape[1])
                r, c = i + r, j + c
                raise InvalidInputError(
                    f"{name} is not symmetric: |A[{r},{c}] − A[{c},{r}]| = {skew:.3g} is {skew / largest:.3g} × max|A| "
                    f"(the tolerance for {dtype_name(t.dtype)} is √ε = {rtol:.2g} × max|A|); hesslens "
                    "needs a symmetric operator (a Hessian): pass (A + A.T) / 2 if the asymmetry is round-off"
                )


def guarded(matmat: Callable[[torch.Tensor], torch.Tensor], n: int, what: str = "the operator") -> Callable[[torch.Tensor], torch.Tensor]:
    """``matmat`` that refuses a product of the wrong shape or with NaN/Inf entries, naming the cause."""
    if getattr(matmat, "_hesslens_guarded", False):
        return matmat

    def product(v: torch.Tensor) -> torch.Tensor:
        out = matmat(v)
        if not isinstance(out, torch.Tensor):
            out = torch.as_tensor(np.asarray(out, dtype=np.float64))
        if tuple(out.shape) != tuple(v.shape):
            raise InvalidInputError(f"{what} returned a product of shape {tuple(out.shape)} for a block of "
                                    f"shape {tuple(v.shape)}; it must map (n, k) to (n, k) with n = {n}")
        if out.numel() and not all(map(math.isfinite, _finite_range(out))):
            if not bool(torch.isfinite(v).all()):
                raise InvalidInputError(f"the vectors multiplied by {what} are not finite: the recurrence "
                                        "overflowed (are the operator's entries near the float64 range?)")
            raise InvalidInputError(f"{what} returned NaN or Inf for a finite input block: the operator itself "
                                    "is not finite here (for a Hessian: NaN/Inf curvature)")
        return out

    product._hesslens_guarded = True  # type: ignore[attr-defined]
    return product


def _trusted(matmat: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """``matmat`` marked as checked: hesslens operators (``torch_matmat``) refuse non-finite products
    themselves, so a second pass over every product would only cost time."""
    def product(v: torch.Tensor) -> torch.Tensor:
        return matmat(v)

    product._hesslens_guarded = True  # type: ignore[attr-defined]
    return product


def operator(op: Any, name: str = "op") -> SymmetricOperator:
    """:func:`~hesslens.operators.base.as_operator` plus the checks of this module (see its docstring)."""
    if isinstance(op, (torch.Tensor, np.ndarray)) and np.ndim(op) == 2 and op.shape[0] == op.shape[1]:
        dense_matrix(op, name)  # before as_operator, whose float64 copy would drop an imaginary part
    sym = as_operator(op)
    source = sym.source
    if sym is op and isinstance(source, (torch.Tensor, np.ndarray)):
        dense_matrix(source, name)
    elif not isinstance(source, (torch.Tensor, np.ndarray)):
        dtype = getattr(source, "dtype", None)
        try:
            kind = np.dtype(dtype).kind if dtype is not None and not isinstance(dtype, torch.dtype) else None
        except TypeError:
            kind = None
        if kind == "c" or (isinstance(dtype, torch.dtype) and dtype.is_complex):
            raise InvalidInputError(f"{name} is complex ({dtype}): hesslens works with real symmetric operators")
    if getattr(sym.matmat, "_hesslens_guarded", False):
        return sym
    if hasattr(source, "torch_matmat"):  # HessianOperator and relatives
        return SymmetricOperator(sym.n, _trusted(sym.matmat), source)
    return SymmetricOperator(sym.n, guarded(sym.matmat, sym.n, f"{name} ({type(source).__name__})"), source)


def announce(op: Any, matvecs: int, columns: int | None = None) -> None:
    """Tell the operator behind ``op`` (a :class:`~hesslens.HessianOperator`, directly or behind a wrapper
    or a block view) how many product columns an estimator is about to ask for, before its first: its
    engine choice, if still pending, weighs set-up against them; ``columns`` is the widest product it
    will ask for, where known. Other operators have nothing to tell."""
    for candidate in (op, getattr(op, "source", None), getattr(op, "operator", None),
                      getattr(getattr(op, "operator", None), "source", None)):
        expect = getattr(candidate, "expect", None)
        if callable(expect):
            expect(matvecs, columns)
            return


def start_vectors(name: str, v0: Any, n: int, max_columns: int | None = None) -> torch.Tensor:
    """``v0`` of shape (n,) or (n, b) as a finite float64 (n, b) tensor without zero columns."""
    t = _as_tensor(v0, name) if isinstance(v0, (torch.Tensor, np.ndarray, list, tuple)) else None
    if t is None:
        raise InvalidInputError(f"{name} must be an array or tensor of shape ({n},) or ({n}, b), got {type(v0).__name__}")
    if t.ndim == 1:
        t = t[:, None]
    if t.ndim != 2 or t.shape[0] != n or t.shape[1] == 0:
        raise InvalidInputError(f"{name} must have shape ({n},) or ({n}, b) for an operator of dimension {n}, "
                                f"got shape {tuple(v0.shape) if hasattr(v0, 'shape') else np.shape(v0)}")
    if max_columns is not None and t.shape[1] > max_columns:
        raise InvalidInputError(f"{name} has {t.shape[1]} columns but the block size is {max_columns}: pass at most "
                                f"{max_columns} columns or a larger block_size")
    t = t.to(device="cpu", dtype=torch.float64)
    finite = torch.isfinite(t)
    if not bool(finite.all()):
        raise InvalidInputError(f"{name} has {int((~finite).sum())} non-finite entries (NaN or Inf): a starting "
                                "vector must be finite")
    zero = torch.nonzero(t.abs().amax(dim=0) == 0).flatten()
    if len(zero):
        raise InvalidInputError(f"{name} column {int(zero[0])} is zero: a starting vector needs a direction")
    return t
