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

Before allocating, the storage (p·(steps + 3)·n float64 numbers: the basis, w, and the product's
input and output) is checked against the memory budget of :mod:`hesslens.memory`.

Reference: Golub & Van Loan, *Matrix Computations*, §10.1; Parlett, *The Symmetric Eigenvalue
Problem*, ch. 13.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Generator

import numpy as np
import torch

from .. import memory
from ..errors import InvalidInputError
from . import checks

_ETA = 2 ** -0.5

#: β below this multiple of the largest |α|, |β| seen is a breakdown (invariant subspace).
BREAKDOWN_TOL = 1e-10


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


def lanczos_bytes(n: int, steps: int, p: int = 1) -> int:
    """Peak memory of :func:`lanczos`: p·(min(steps, n) + 3)·n float64 numbers."""
    return memory.estimate(p, min(steps, n) + 3, n)


def lanczos(
    matmat: Callable[[torch.Tensor], torch.Tensor],
    v0: torch.Tensor,
    steps: int,
    *,
    on_step: Callable[[], None] | None = None,
    on_matvecs: Callable[[int], None] | None = None,
    max_bytes: int | str | None = None,
) -> Tridiagonals:
    """Run ``v0.shape[1]`` Lanczos recurrences of ``steps`` steps together (float64 throughout).

    ``v0`` is (n, p) (or (n,) for p = 1), finite, without zero columns; ``matmat`` maps a float64
    (n, k) tensor to A times it. Products with NaN/Inf are refused. Above the memory budget
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
    memory.check(lanczos_bytes(n, steps, p), f"{p} Lanczos recurrence(s) of {steps} steps in dimension {n} "
                 f"(a {p}×{steps}×{n} float64 basis)", max_bytes, advice="run fewer recurrences at once or fewer steps")
    matmat = checks.guarded(matmat, n, "matmat")
    recurrences = lanczos_recurrences(v0, steps, on_step=on_step)
    block = next(recurrences)
    while True:
        product = matmat(block)
        if on_matvecs is not None:
            on_matvecs(block.shape[1])
        try:
            block = recurrences.send(product)
        except StopIteration as finished:
            return finished.value


def lanczos_recurrences(v0: torch.Tensor, steps: int, *, on_step: Callable[[], None] | None = None
                        ) -> Generator[torch.Tensor, torch.Tensor, Tridiagonals]:
    """The recurrences of :func:`lanczos` as a generator that yields each block to multiply.

    It yields the (n, k) float64 block of the k recurrences still active and must be sent A times
    it; it returns the :class:`Tridiagonals`. ``v0`` is a checked (n, p) float64 tensor and
    ``steps`` ≤ n; nothing is validated or budgeted here (:func:`lanczos` does both). Driving several
    of these generators with one product of all their blocks advances independent recurrences of
    different operators together: :func:`hesslens.linalg.blocks.spectral_density` does that for the
    diagonal blocks of one operator.
    """
    n, p = v0.shape
    # (p, steps, n): each recurrence's vectors contiguous, so reorthogonalisation is a batched GEMV.
    # Rows are written before they are read, so the storage need not be zeroed.
    basis = torch.empty(p, steps, n, dtype=torch.float64)
    w = torch.empty(p, n, dtype=torch.float64)
    alpha = np.zeros((p, steps))
    beta = np.zeros((p, max(steps - 1, 0)))
    lengths = np.full(p, steps)
    active = np.ones(p, dtype=bool)
    scale = np.zeros(p)
    torch.div(v0.T, v0.norm(dim=0)[:, None], out=basis[:, 0])
    matvecs = 0
    for j in range(steps):
        v = basis[:, j]
        idx = np.flatnonzero(active)
        if len(idx) == p:
            w.copy_((yield v.T.contiguous()).T)
        else:
            w.zero_()
            w[torch.from_numpy(idx)] = (yield v[torch.from_numpy(idx)].T.contiguous()).T
        matvecs += len(idx)
        a = torch.bmm(w.unsqueeze(1), v.unsqueeze(2)).view(p)
        alpha[active, j] = a.numpy()[active]
        w.addcmul_(v, a[:, None], value=-1.0)
        if j > 0:
            w.addcmul_(basis[:, j - 1], torch.from_numpy(beta[:, j - 1])[:, None], value=-1.0)
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
        b = torch.linalg.vector_norm(w, dim=1).numpy()
        scale = np.maximum(scale, np.maximum(np.abs(alpha[:, j]), b))
        broke = active & (b <= BREAKDOWN_TOL * np.maximum(scale, np.finfo(float).tiny))
        lengths[broke] = j + 1
        active &= ~broke
        if not active.any():
            break
        beta[active, j] = b[active]
        torch.div(w, torch.from_numpy(np.where(active, b, 1.0))[:, None], out=basis[:, j + 1])
        if not active.all():
            basis[torch.from_numpy(np.flatnonzero(~active)), j + 1] = 0.0
    return Tridiagonals(alpha=alpha, beta=beta, lengths=lengths, matvecs=matvecs)
