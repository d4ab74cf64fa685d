"""Batched Lanczos with full reorthogonalisation.

For p starting vectors at once (the columns of V₀), run p independent Lanczos recurrences

    α_j = ⟨A v_j, v_j⟩,  w = A v_j − α_j v_j − β_j v_{j−1},  β_{j+1} = ‖w‖,  v_{j+1} = w / β_{j+1},

with every product of a step done as one batched ``A @ [v_j^(1) … v_j^(p)]``. After the three-term
recurrence each new w is orthogonalised against all stored vectors of its own recurrence
(classical Gram–Schmidt, repeated where one pass cancelled most of w): without it, Ritz values
drift into spurious copies. A recurrence whose β falls to round-off level has found an invariant
subspace; it stops there and its remaining steps are left empty.

Reference: Golub & Van Loan, *Matrix Computations*, §10.1; Parlett, *The Symmetric Eigenvalue
Problem*, ch. 13.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

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


def _project(stored: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Per recurrence r: stored[r]ᵀ (stored[r] w[r]), the component of w[r] in its Krylov basis."""
    return torch.bmm(torch.bmm(stored, w.unsqueeze(2)).transpose(1, 2), stored).squeeze(1)


def lanczos(
    matmat: Callable[[torch.Tensor], torch.Tensor],
    v0: torch.Tensor,
    steps: int,
    *,
    on_step: Callable[[], None] | None = None,
) -> Tridiagonals:
    """Run ``v0.shape[1]`` Lanczos recurrences of ``steps`` steps together (float64 throughout)."""
    n, p = v0.shape
    steps = min(steps, n)
    # (p, steps, n): each recurrence's vectors contiguous, so reorthogonalisation is a batched GEMV.
    basis = torch.zeros(p, steps, n, dtype=torch.float64)
    alpha = np.zeros((p, steps))
    beta = np.zeros((p, max(steps - 1, 0)))
    lengths = np.full(p, steps)
    active = np.ones(p, dtype=bool)
    scale = np.zeros(p)
    v = (v0 / v0.norm(dim=0, keepdim=True)).T.contiguous()  # (p, n)
    matvecs = 0
    for j in range(steps):
        basis[:, j] = v
        idx = torch.from_numpy(np.flatnonzero(active))
        w = torch.zeros(p, n, dtype=torch.float64)
        w[idx] = matmat(v[idx].T.contiguous()).T
        matvecs += len(idx)
        a = (w * v).sum(1)
        alpha[active, j] = a[idx].numpy()
        w -= a[:, None] * v
        if j > 0:
            w -= torch.from_numpy(beta[:, j - 1])[:, None] * basis[:, j - 1]
        # Full reorthogonalisation against every stored vector; a second pass only where the first
        # removed most of w (Kahan–Parlett "twice is enough" test, η = 1/√2).
        stored = basis[:, : j + 1]
        before = w.norm(dim=1)
        w -= _project(stored, w)
        if bool((w.norm(dim=1) < _ETA * before).any()):
            w -= _project(stored, w)
        if on_step is not None:
            on_step()
        if j == steps - 1:
            break
        b = w.norm(dim=1).numpy()
        scale = np.maximum(scale, np.maximum(np.abs(alpha[:, j]), b))
        broke = active & (b <= BREAKDOWN_TOL * np.maximum(scale, np.finfo(float).tiny))
        lengths[broke] = j + 1
        active &= ~broke
        if not active.any():
            break
        beta[active, j] = b[active]
        v = torch.where(torch.from_numpy(active)[:, None], w / torch.from_numpy(np.maximum(b, np.finfo(float).tiny))[:, None], 0.0)
    return Tridiagonals(alpha=alpha, beta=beta, lengths=lengths, matvecs=matvecs)
