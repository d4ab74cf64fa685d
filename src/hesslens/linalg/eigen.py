"""Extreme eigenvalues by thick-restarted block Lanczos with full reorthogonalisation.

The basis V (at most ``ncv`` columns) grows block by block: W = A V_j, then W is orthogonalised
twice against all of V and QR-factorised into the next block. The projected matrix T = Vᵀ A V is
filled from those projections, so after a restart its arrow shape comes for free. Rayleigh–Ritz on
T gives Ritz pairs (θ_i, y_i = V u_i) whose residuals are exact by-products:

    ‖A y_i − θ_i y_i‖ = ‖R u_i[last block]‖,

R the coupling to the next block. When the basis is full it is restarted with the wanted Ritz
vectors (and as many more extreme ones, up to half the basis) plus the next block (thick restart,
Wu & Simon 2000; Stathopoulos & Saad 1998). Order is algebraic: "largest" means most positive,
unlike power iteration, which finds the largest magnitude.

A single-vector Krylov space holds one direction of a repeated eigenvalue, so a block of b ≥ the
multiplicity is needed to return every copy; ``block_size`` defaults to min(k, 8).
All recurrence work is float64 whatever precision the operator's products use.

Memory: the basis (n×ncv), the returned vectors (n×wanted) and a few n×b blocks, estimated by
:func:`eigen_bytes` and checked against the budget of :mod:`hesslens.memory` before allocating.
When the basis would fill the space (n ≤ ncv + b) the dense matrix is diagonalised instead, which
needs 3·n² float64 numbers (the matrix, LAPACK's copy, the eigenvectors) and is checked the same way.

The solver itself, :func:`restarted_lanczos`, is a generator that yields each block to multiply and
is sent its product: :func:`eigenvalues` drives one with the operator's products, the per-block
solver of :mod:`hesslens.linalg.block_lanczos` one per diagonal block, all advanced by shared block
products (pruned to each block where the operator can, else zero-padded).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Generator

import numpy as np
import torch

from .. import memory
from ..errors import InvalidInputError
from ..operators.base import _symmetrise_in_place
from ..operators.blocks import BlockView
from ..progress import product_bar
from . import checks
from .random import gaussian, generator

if TYPE_CHECKING:
    from .blocks import BlockResults

WHICH = ("largest", "smallest", "both")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EigenResult:
    """Ritz values with their vectors (columns) and residual norms ‖A y − θ y‖.

    Order: "largest" descending, "smallest" ascending, "both" the k smallest ascending followed by
    the k largest descending. ``converged[i]`` is True exactly when ``residuals[i] ≤ tol·‖A‖_est``.
    """

    values: np.ndarray
    vectors: np.ndarray
    residuals: np.ndarray
    converged: np.ndarray
    matvecs: int
    seconds: float
    restarts: int
    which: str
    tol: float

    @property
    def all_converged(self) -> bool:
        return bool(np.all(self.converged))


def _orthonormal_block(w: torch.Tensor, basis: torch.Tensor, scale: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """W = Q R for a block already orthogonal to ``basis``, column by column (Gram–Schmidt twice).

    A column with nothing left (breakdown: an invariant subspace) is replaced by a random
    direction orthogonal to the basis and to the accepted columns, with R[i, i] = 0, so that the
    Krylov space keeps growing and W = Q R still holds up to the dropped round-off remainder.
    """
    n, b = w.shape
    q = torch.zeros(n, b, dtype=torch.float64)
    r = torch.zeros(b, b, dtype=torch.float64)
    floor = 1e-10 * max(scale, np.finfo(float).tiny)
    for i in range(b):
        x = w[:, i].clone()
        for _ in range(2):
            c = q[:, :i].T @ x
            x -= q[:, :i] @ c
            r[:i, i] += c
        norm = float(x.norm())
        if norm > floor:
            q[:, i], r[i, i] = x / norm, norm
            continue
        z = gaussian(n, 1, gen).flatten()
        for _ in range(2):  # against the basis and the accepted columns, without an n×(j+i) copy of both
            z -= basis @ (basis.T @ z)
            z -= q[:, :i] @ (q[:, :i].T @ z)
        q[:, i] = z / z.norm()
    return q, r


def _select(theta: np.ndarray, count: int, which: str) -> np.ndarray:
    """Indices of the ``count`` most wanted Ritz values (theta ascending)."""
    idx = np.arange(len(theta))
    if which == "largest":
        return idx[::-1][:count]
    if which == "smallest":
        return idx[:count]
    lo = (count + 1) // 2
    return np.concatenate([idx[:lo], idx[::-1][: count - lo]])


def eigen_bytes(n: int, ncv: int, block: int, wanted: int) -> int:
    """Peak memory of the Lanczos path of :func:`eigenvalues`: the n×ncv basis, the n×wanted result
    vectors, four n×b blocks (product in and out, projections, next block), two ncv×ncv arrays."""
    return memory.estimate(n, ncv + wanted + 4 * block + 2) + 2 * memory.estimate(ncv, ncv)


def eigenvalues(
    op: Any,
    k: int = 1,
    which: str = "largest",
    *,
    tol: float = 1e-6,
    max_matvecs: int | None = None,
    seed: int = 0,
    v0: Any = None,
    block_size: int | None = None,
    ncv: int | None = None,
    max_bytes: int | str | None = None,
    progress: bool | None = None,
) -> EigenResult | BlockResults:
    """The k algebraically largest and/or smallest eigenvalues of a symmetric operator.

    Converged means ‖A y − θ y‖ ≤ tol · ‖A‖_est, with ‖A‖_est the largest |Ritz value| and tol in
    (0, 1); the eigenvalue error is then at most that residual and usually its square over the
    spectral gap. ``which="both"`` needs 2k ≤ n: the k smallest and the k largest must be distinct
    eigenpairs (with 2k > n the two ends would share some; use :func:`exact_spectrum`).
    ``v0`` (an (n,) or (n, j) array, j ≤ the block size) warm-starts the first block, e.g. with the
    previous top eigenvector when tracking training. Refuses above the memory budget
    (``max_bytes``, else :func:`hesslens.memory.default_budget`) with the estimate.

    ``progress`` (None: only on a terminal; False: never) shows a counter of products with their
    rate, the largest relative residual of the wanted pairs against ``tol`` and the restarts so
    far. It has no total and no ETA: the run stops on convergence, usually long before
    ``max_matvecs``, which is only a cap.

    For a :class:`~hesslens.operators.blocks.BlockView` it returns a
    :class:`~hesslens.linalg.blocks.BlockResults` of every block's eigenpairs (``v0`` then maps
    block names to warm starts; see :func:`~hesslens.linalg.block_lanczos.block_eigenvalues`).

    >>> import torch, hesslens as hl
    >>> A = torch.diag(torch.arange(-5.0, 45.0, dtype=torch.float64))
    >>> r = hl.eigenvalues(A, k=2, which="both")
    >>> r.values.round(8).tolist()  # the 2 smallest ascending, then the 2 largest descending
    [-5.0, -4.0, 44.0, 43.0]
    """
    which = checks.choice("which", which, WHICH)
    k = checks.integer("k", k, 1)
    tol = checks.tolerance("tol", tol)
    max_matvecs = checks.optional_integer("max_matvecs", max_matvecs, 1)
    block_size = checks.optional_integer("block_size", block_size, 1)
    ncv = checks.optional_integer("ncv", ncv, 1)
    if isinstance(op, BlockView):
        from .block_lanczos import block_eigenvalues

        return block_eigenvalues(op, k, which, tol=tol, max_matvecs=max_matvecs, seed=seed, v0=v0,
                                 block_size=block_size, ncv=ncv, max_bytes=max_bytes, progress=progress)
    a = checks.operator(op)
    n = a.n
    plan = restart_plan(n, k, which, tol, max_matvecs, block_size, ncv)
    checks.announce(a, min(plan.m, n), plan.b)  # one basis of b-column blocks: what an extreme eigenvalue usually takes
    start_given = None if v0 is None else checks.start_vectors("v0", v0, n, max_columns=plan.b)
    gen = generator(seed)
    t0 = time.perf_counter()
    plan.check_memory(n, max_bytes)

    def start() -> torch.Tensor:
        block = gaussian(n, plan.b, gen)
        if start_given is not None:
            block[:, : start_given.shape[1]] = start_given
        return block

    if plan.dense(n):
        return drive(a.matmat, restarted_lanczos(n, plan, start, gen, t0))
    # A counter, not a bar to max_matvecs: convergence, not the cap, ends the run.
    with product_bar(total=None, desc=f"Lanczos ({which})", enabled=progress) as bar:
        def report(res: np.ndarray, done: np.ndarray, scale: float, restarts: int) -> None:
            if not bar.disable:
                bar.set_postfix_str(_convergence(res, done, scale, tol, restarts), refresh=False)
            bar.update(plan.b)

        return drive(a.matmat, restarted_lanczos(n, plan, start, gen, t0, report))


@dataclass(frozen=True)
class RestartPlan:
    """The sizes :func:`eigenvalues` derives from its arguments: the block b, the basis m, the cap."""

    k: int
    which: str
    tol: float
    wanted: int
    b: int
    m: int
    max_matvecs: int

    def dense(self, n: int) -> bool:
        """Whether the basis and its next block would fill the space (n ≤ m + b): the dense matrix is
        then cheaper and exact."""
        return n <= self.m + self.b

    def peak_bytes(self, n: int) -> int:
        """Peak memory in dimension n: the dense path's 3·n² float64 numbers, or :func:`eigen_bytes`."""
        return 3 * memory.estimate(n, n) if self.dense(n) else eigen_bytes(n, self.m, self.b, self.wanted)

    def check_memory(self, n: int, max_bytes: int | str | None) -> None:
        """Refuse (:class:`~hesslens.errors.MemoryBudgetError`) a solve in dimension n above the budget."""
        if self.dense(n):
            memory.check(self.peak_bytes(n), f"eigenvalues(k={self.k}, which={self.which!r}) diagonalises the dense "
                         f"{n}×{n} matrix here (the basis would fill the space): the matrix, a working copy and "
                         "the eigenvectors in float64", max_bytes, advice="lower k (or ncv/block_size)")
        else:
            memory.check(self.peak_bytes(n), f"eigenvalues(k={self.k}, which={self.which!r}) with a {n}×{self.m} float64 "
                         f"Lanczos basis (ncv={self.m}, block {self.b})", max_bytes, advice="lower k, ncv or block_size")


def restart_plan(n: int, k: int, which: str, tol: float, max_matvecs: int | None, block_size: int | None,
                 ncv: int | None, what: str = "") -> RestartPlan:
    """Check k against the dimension n and derive the block and basis sizes (checked arguments).

    ``what`` names the operator in errors (e.g. "block 'fc1' "), empty for a single operator."""
    if k >= n:
        raise InvalidInputError(f"{what}k={k} must be smaller than the dimension n={n}; use exact_spectrum() for all "
                                "eigenvalues")
    if which == "both" and 2 * k > n:
        raise InvalidInputError(f"{what}which='both' with k={k} asks for the {k} smallest and the {k} largest of n={n} "
                                f"eigenvalues: the two ends would overlap; use k ≤ {n // 2}, or exact_spectrum()")
    wanted = 2 * k if which == "both" else k
    b = block_size or min(k, 8)
    m = ncv or max(20 + wanted, 2 * wanted + 2 * b)
    m = max(m, wanted + 2 * b)
    return RestartPlan(k, which, tol, wanted, b, m, max_matvecs or max(50 * m, 1000))


def drive(matmat: Callable[[torch.Tensor], torch.Tensor], solver: Generator[torch.Tensor, torch.Tensor, Any]) -> Any:
    """Run a generator that yields blocks to multiply (and is sent their products) to its result."""
    block = next(solver)
    while True:
        try:
            block = solver.send(matmat(block))
        except StopIteration as finished:
            return finished.value


def restarted_lanczos(n: int, plan: RestartPlan, start: Callable[[], torch.Tensor], gen: torch.Generator,
                      t0: float, report: Callable[[np.ndarray, np.ndarray, float, int], None] | None = None,
                      label: str = "") -> Generator[torch.Tensor, torch.Tensor, EigenResult]:
    """The solver of :func:`eigenvalues` in dimension n as a generator: it yields each (n, c) float64
    block to multiply, must be sent the operator times it, and returns the :class:`EigenResult`.

    ``start()`` gives the first (n, b) block (drawn only on the Lanczos path), ``gen`` the random
    replacements of broken-down directions; ``report(residuals, converged, scale, restarts)`` follows
    every iteration. Nothing is checked or budgeted here (the callers do it before any product).
    Several solvers, driven with one product of all their blocks, advance together
    (:func:`hesslens.linalg.blocks.block_eigenvalues`).
    """
    k, which, tol, wanted, b, m, max_matvecs = (plan.k, plan.which, plan.tol, plan.wanted, plan.b, plan.m,
                                                plan.max_matvecs)
    if plan.dense(n):
        dense = torch.empty(n, n, dtype=torch.float64)
        dense[:, :] = yield torch.eye(n, dtype=torch.float64)
        _symmetrise_in_place(dense, n)
        theta, u = np.linalg.eigh(dense.numpy())
        pick = _order(theta, k, which)
        res = np.linalg.norm(dense.numpy() @ u[:, pick] - u[:, pick] * theta[pick], axis=0)
        done = res <= tol * max(float(np.abs(theta).max()), np.finfo(float).tiny)
        logger.debug("eigenvalues(k=%d, which=%r)%s: n=%d fits the basis, dense eigendecomposition (%d products)",
                     k, which, label, n, n)
        return EigenResult(theta[pick], u[:, pick], res, done, n, time.perf_counter() - t0, 0, which, tol)

    basis = torch.zeros(n, m, dtype=torch.float64)
    basis[:, :b], _ = torch.linalg.qr(start())
    proj = np.zeros((m, m))
    j, matvecs, restarts, scale = b, 0, 0, 0.0
    while True:
        block = basis[:, j - b:j]
        w = yield block.contiguous()
        matvecs += b
        v = basis[:, :j]
        h = v.T @ w
        w -= v @ h
        h2 = v.T @ w
        w -= v @ h2
        h = (h + h2).numpy()
        proj[:j, j - b:j] = h
        proj[j - b:j, :j] = h.T
        proj[j - b:j, j - b:j] = (h[j - b:j] + h[j - b:j].T) / 2
        theta, u = np.linalg.eigh(proj[:j, :j])
        scale = max(scale, float(np.abs(theta).max()))
        nxt, coupling = _orthonormal_block(w, v, scale, gen)
        res = np.linalg.norm(coupling.numpy() @ u[j - b:j, :], axis=0)
        pick = _order(theta, k, which)
        done = res[pick] <= tol * max(scale, np.finfo(float).tiny)
        if report is not None:
            report(res[pick], done, scale, restarts)
        if (done.all() and j >= wanted) or matvecs >= max_matvecs:
            logger.debug("eigenvalues(k=%d, which=%r)%s: %d/%d converged after %d products, %d restarts "
                         "(cap %d)", k, which, label, int(done.sum()), len(done), matvecs, restarts, max_matvecs)
            vectors = (v @ torch.from_numpy(u[:, pick])).numpy()
            return EigenResult(theta[pick], vectors, res[pick], done, matvecs,
                               time.perf_counter() - t0, restarts, which, tol)
        if j + b <= m:
            basis[:, j:j + b] = nxt
            j += b
            continue
        # thick restart: keep the wanted Ritz vectors and more extreme ones, then the next block
        keep = _select(theta, max(wanted, min(m - 2 * b, wanted + (m - wanted) // 2)), which)
        kept = len(keep)
        _rotate_in_place(basis, j, torch.from_numpy(u[:, keep]))
        basis[:, kept:kept + b] = nxt
        proj[:] = 0.0
        proj[:kept, :kept] = np.diag(theta[keep])
        s = coupling.numpy() @ u[j - b:j, keep]
        proj[kept:kept + b, :kept] = s
        proj[:kept, kept:kept + b] = s.T
        j = kept + b
        restarts += 1


def _convergence(res: np.ndarray, done: np.ndarray, scale: float, tol: float, restarts: int) -> str:
    """The progress postfix: the largest relative residual of the wanted pairs (against tol), restarts."""
    worst = float(res.max()) / max(scale, np.finfo(float).tiny)
    text = f"residual {worst:.1e} (tol {tol:.0e})"
    if len(done) > 1:
        text += f", {int(done.sum())}/{len(done)} converged"
    return text + f", {restarts} restart{'' if restarts == 1 else 's'}"


def _rotate_in_place(basis: torch.Tensor, j: int, rotation: torch.Tensor, rows: int = 4096) -> None:
    """basis[:, :kept] ← basis[:, :j] @ rotation, in row blocks: no n×kept temporary next to the basis."""
    kept = rotation.shape[1]
    for r in range(0, basis.shape[0], rows):
        block = basis[r:r + rows]
        block[:, :kept] = block[:, :j] @ rotation


def _order(theta: np.ndarray, k: int, which: str) -> np.ndarray:
    """Indices into ascending ``theta`` in the documented result order."""
    idx = np.arange(len(theta))
    if which == "largest":
        return idx[::-1][:k]
    if which == "smallest":
        return idx[:k]
    return np.concatenate([idx[:k], idx[::-1][:k]])
