"""Batched Lanczos with full reorthogonalisation.

For p starting vectors at once (the columns of V₀), run p independent Lanczos recurrences

    α_j = ⟨A v_j, v_j⟩,  w = A v_j − α_j v_j − β_j v_{j−1},  β_{j+1} = ‖w‖,  v_{j+1} = w / β_{j+1},

with every product of a step done as one batched ``A @ [v_j^(1) … v_j^(p)]``. After the three-term
recurrence each new w is orthogonalised against all stored vectors of its own recurrence
(classical Gram–Schmidt, repeated where one pass cancelled most of w): without it, Ritz values
drift into spurious copies. A recurrence whose β falls to round-off level has found an invariant
subspace; it stops there and its remaining steps are left empty.

The recurrences are a generator, :func:`lanczos_recurrences`, that yields each block of vectors to
multiply; :func:`lanczos` drives it with one operator, per-block SLQ drives one per diagonal block.

Before allocating, the storage (p·(steps + 3)·n numbers: the basis, w, and the product's input and
output) is checked against the memory budget of :mod:`hesslens.memory`.

The vectors are float64 unless told otherwise. A float32 basis (``dtype=torch.float32``) halves the
storage and the reorthogonalisation traffic, which dominate on models of millions of parameters; it
is what the products of a float32 model carry anyway: each product has a relative error of order
ε₃₂ ≈ 6e-8 · (the loss's conditioning), so vectors kept to ε₃₂ add an error of the same order
(orthogonality to about √j·ε₃₂ after full reorthogonalisation, Ritz values to about ε₃₂·‖A‖).
α, β and the tridiagonal stay float64. :func:`basis_dtype` picks float32 for float32 hesslens
operators only; measured against float64 in ``benchmarks/precision.py``.

Reference: Golub & Van Loan, *Matrix Computations*, §10.1; Parlett, *The Symmetric Eigenvalue
Problem*, ch. 13.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generator

import numpy as np
import torch

from .. import memory
from ..errors import InvalidInputError
from . import checks

_ETA = 2 ** -0.5

#: β below this multiple of the largest |α|, |β| seen is a breakdown (invariant subspace), per basis
#: dtype: well above what full reorthogonalisation leaves of an exhausted Krylov space (√j·ε·‖A‖),
#: well below any β a quadrature weight could notice.
BREAKDOWN_TOL = 1e-10
BREAKDOWN_TOLS = {torch.float64: BREAKDOWN_TOL, torch.float32: 1e-5}

#: What ``dtype=``/``basis_dtype=`` accept, by name.
BASIS_DTYPES = {"float64": torch.float64, "float32": torch.float32}


@dataclass(frozen=True)
class Tridiagonals:
    """α (p, m) and β (p, m−1) of p Lanczos recurrences; ``lengths[r]`` steps of recurrence r are valid."""

    alpha: np.ndarray
    beta: np.ndarray
    lengths: np.ndarray
    matvecs: int

    def matrix(self, r: int) -> np.ndarray:
        """The valid tridiagonal T_m of recurrence r, as a dense array."""
        m = int(self.lengths[r])
        t = np.diag(self.alpha[r, :m])
        off = self.beta[r, : m - 1]
        return t + np.diag(off, 1) + np.diag(off, -1)


def _project_out(stored: torch.Tensor, w: torch.Tensor) -> None:
    """Per recurrence r, in place: w[r] −= stored[r]ᵀ (stored[r] w[r]) (one classical Gram–Schmidt pass)."""
    coeffs = torch.bmm(stored, w.unsqueeze(2))
    w.unsqueeze(1).baddbmm_(coeffs.transpose(1, 2), stored, alpha=-1.0)


def lanczos_bytes(n: int, steps: int, p: int = 1, dtype: torch.dtype = torch.float64) -> int:
    """Peak memory of :func:`lanczos`: p·(min(steps, n) + 3)·n numbers of ``dtype``."""
    return memory.estimate(p, min(steps, n) + 3, n, itemsize=torch.empty((), dtype=dtype).element_size())


def basis_dtype(value: Any, op: Any = None) -> torch.dtype:
    """The dtype of the Lanczos vectors: ``"float64"``/``"float32"`` (or the torch dtypes) as given;
    None: float32 where ``op`` is a hesslens operator whose products run in float32 (a float32 model),
    float64 for everything else (dense matrices, SciPy operators, float64 models)."""
    if value is None:
        source = getattr(op, "source", op)
        float32 = hasattr(source, "torch_matmat") and getattr(source, "dtype", None) == torch.float32
        return torch.float32 if float32 else torch.float64
    named = BASIS_DTYPES.get(value) if isinstance(value, str) else (value if value in BASIS_DTYPES.values() else None)
    if named is None:
        raise InvalidInputError(f"basis_dtype must be None (chosen from the operator), 'float64' or 'float32', got {value!r}")
    return named


def _in_float64(matmat: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """``matmat`` of an operator that multiplies float64 only, fed a block of another dtype."""
    def product(v: torch.Tensor) -> torch.Tensor:
        return matmat(v.to(torch.float64))

    product._hesslens_guarded = getattr(matmat, "_hesslens_guarded", False)  # type: ignore[attr-defined]
    return product


def lanczos(
    matmat: Callable[[torch.Tensor], torch.Tensor],
    v0: torch.Tensor,
    steps: int,
    *,
    on_step: Callable[[], None] | None = None,
    on_matvecs: Callable[[int], None] | None = None,
    max_bytes: int | str | None = None,
    dtype: Any = torch.float64,
    native: bool = False,
) -> Tridiagonals:
    """Run ``v0.shape[1]`` Lanczos recurrences of ``steps`` steps together.

    ``v0`` is (n, p) (or (n,) for p = 1), finite, without zero columns; ``matmat`` maps a float64
    (n, k) tensor to A times it. Products with NaN/Inf are refused. ``dtype``: of the stored vectors
    (float64, or float32 to halve memory and reorthogonalisation traffic; α and β are float64 either
    way); ``native``: ``matmat`` takes and returns blocks of ``dtype`` itself (a hesslens operator),
    else each block is converted to float64 for it. Above the memory budget
    (``max_bytes``, else :func:`hesslens.memory.default_budget`) it refuses before allocating.
    Every n-long operation works in place on preallocated storage: on large models a fresh
    n-vector per operation costs more in page faults than the arithmetic itself.

    ``on_step()`` is called after each step, ``on_matvecs(k)`` after each batched product with the
    number k of columns it multiplied (the recurrences still active): their sum is ``matvecs``.
    """
    if not callable(matmat):
        raise InvalidInputError(f"matmat must be a callable (n, k) -> (n, k), got {type(matmat).__name__}")
    steps = checks.integer("steps", steps, 1)
    n = int(np.shape(v0)[0]) if np.ndim(v0) >= 1 else 0
    if n < 1:
        raise InvalidInputError(f"v0 must have shape (n,) or (n, p) with n ≥ 1, got shape {np.shape(v0)}")
    v0 = checks.start_vectors("v0", v0, n)
    p = v0.shape[1]
    steps = min(steps, n)
    dtype = basis_dtype(dtype)
    memory.check(lanczos_bytes(n, steps, p, dtype), f"{p} Lanczos recurrence(s) of {steps} steps in dimension {n} "
                 f"(a {p}×{steps}×{n} {checks.dtype_name(dtype)} basis)", max_bytes,
                 advice="run fewer recurrences at once or fewer steps")
    matmat = checks.guarded(matmat if native or dtype == torch.float64 else _in_float64(matmat), n, "matmat")
    recurrences = lanczos_recurrences(v0, steps, on_step=on_step, dtype=dtype)
    block = next(recurrences)
    while True:
        product = matmat(block)
        if on_matvecs is not None:
            on_matvecs(block.shape[1])
        try:
            block = recurrences.send(product)
        except StopIteration as finished:
            return finished.value


def lanczos_recurrences(v0: torch.Tensor, steps: int, *, on_step: Callable[[], None] | None = None,
                        dtype: torch.dtype = torch.float64) -> Generator[torch.Tensor, torch.Tensor, Tridiagonals]:
    """The recurrences of :func:`lanczos` as a generator that yields each block to multiply.

    It yields the (n, k) block (of ``dtype``, the basis's) of the k recurrences still active and must
    be sent A times it (any float dtype); it returns the :class:`Tridiagonals`. ``v0`` is a checked
    (n, p) float64 tensor and
    ``steps`` ≤ n; nothing is validated or budgeted here (:func:`lanczos` does both). Driving several
    of these generators with one product of all their blocks advances independent recurrences of
    different operators together: :func:`hesslens.linalg.blocks.spectral_density` does that for the
    diagonal blocks of one operator.
    """
    n, p = v0.shape
    # (p, steps, n): each recurrence's vectors contiguous, so reorthogonalisation is a batched GEMV.
    # Rows are written before they are read, so the storage need not be zeroed.
    basis = torch.empty(p, steps, n, dtype=dtype)
    w = torch.empty(p, n, dtype=dtype)
    breakdown = BREAKDOWN_TOLS[dtype]
    alpha = np.zeros((p, steps))
    beta = np.zeros((p, max(steps - 1, 0)))
    lengths = np.full(p, steps)
    active = np.ones(p, dtype=bool)
    scale = np.zeros(p)
    basis[:, 0].copy_(v0.T / v0.norm(dim=0)[:, None])
    matvecs = 0
    for j in range(steps):
        v = basis[:, j]
        idx = np.flatnonzero(active)
        # The block is yielded column-major, (k, n) rows seen as (n, k) columns: hesslens operators take
        # and return that layout without a strided copy.
        if len(idx) == p:
            w.copy_((yield v.T).T)
        else:
            w.zero_()
            w[torch.from_numpy(idx)] = (yield v[torch.from_numpy(idx)].T).T.to(dtype)
        matvecs += len(idx)
        a = torch.bmm(w.unsqueeze(1), v.unsqueeze(2)).view(p)
        alpha[active, j] = a.double().numpy()[active]
        w.addcmul_(v, a[:, None], value=-1.0)
        if j > 0:
            w.addcmul_(basis[:, j - 1], torch.from_numpy(beta[:, j - 1]).to(dtype)[:, None], value=-1.0)
        # Full reorthogonalisation against every stored vector; a second pass only where the first
        # removed most of w (Kahan–Parlett "twice is enough" test, η = 1/√2).
        stored = basis[:, : j + 1]
        before = torch.linalg.vector_norm(w, dim=1)
        _project_out(stored, w)
        if bool((torch.linalg.vector_norm(w, dim=1) < _ETA * before).any()):
            _project_out(stored, w)
        if on_step is not None:
            on_step()
        if j == steps - 1:
            break
        b = torch.linalg.vector_norm(w, dim=1).double().numpy()
        scale = np.maximum(scale, np.maximum(np.abs(alpha[:, j]), b))
        broke = active & (b <= breakdown * np.maximum(scale, np.finfo(float).tiny))
        lengths[broke] = j + 1
        active &= ~broke
        if not active.any():
            break
        beta[active, j] = b[active]
        torch.div(w, torch.from_numpy(np.where(active, b, 1.0)).to(dtype)[:, None], out=basis[:, j + 1])
        if not active.all():
            basis[torch.from_numpy(np.flatnonzero(~active)), j + 1] = 0.0
    return Tridiagonals(alpha=alpha, beta=beta, lengths=lengths, matvecs=matvecs)
