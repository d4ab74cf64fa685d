"""Batched Lanczos with full reorthogonalisation.

For p starting vectors at once (the columns of V₀), run p independent Lanczos recurrences

    α_j = ⟨A v_j, v_j⟩,  w = A v_j − α_j v_j − β_j v_{j−1},  β_{j+1} = ‖w‖,  v_{j+1} = w / β_{j+1},

with every product of a step done as one batched ``A @ [v_j^(1) … v_j^(p)]``. Each new w is
orthogonalised twice against all stored vectors of its own recurrence (classical Gram–Schmidt
twice, "twice is enough"): without it, Ritz values drift into spurious copies. A recurrence whose
β falls to round-off level has found an invariant subspace; it stops there and its remaining
steps are left empty.

Reference: Golub & Van Loan, *Matrix Computations*, §10.1; Parlett, *The Symmetric Eigenvalue
Problem*, ch. 13.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

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
    basis = torch.zeros(steps, n, p, dtype=torch.float64)
    alpha = np.zeros((p, steps))
    beta = np.zeros((p, max(steps - 1, 0)))
    lengths = np.full(p, steps)
    active = torch.ones(p, dtype=torch.bool)
    scale = np.zeros(p)
    v = v0 / v0.norm(dim=0, keepdim=True)
    matvecs = 0
    for j in range(steps):
        basis[j] = v
        idx = active.nonzero().flatten()
        w = torch.zeros(n, p, dtype=torch.float64)
        w[:, idx] = matmat(v[:, idx].contiguous())
        matvecs += len(idx)
        a = (w * v).sum(0)
        alpha[idx.numpy(), j] = a[idx].numpy()
        for _ in range(2):  # full reorthogonalisation, twice
            coeff = torch.einsum("jnp,np->jp", basis[: j + 1], w)
            w -= torch.einsum("jnp,jp->np", basis[: j + 1], coeff)
        if on_step is not None:
            on_step()
        if j == steps - 1:
            break
        b = w.norm(dim=0)
        scale = np.maximum(scale, np.maximum(np.abs(alpha[:, j]), b.numpy()))
        broke = active & torch.from_numpy(b.numpy() <= BREAKDOWN_TOL * np.maximum(scale, np.finfo(float).tiny))
        for r in broke.nonzero().flatten().tolist():
            lengths[r] = j + 1
        active &= ~broke
        if not active.any():
            break
        beta[active.numpy(), j] = b[active].numpy()
        v = torch.where(active, w / b.clamp_min(np.finfo(float).tiny), torch.zeros_like(w))
    return Tridiagonals(alpha=alpha, beta=beta, lengths=lengths, matvecs=matvecs)
