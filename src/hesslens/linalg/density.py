"""Eigenvalue spectral density by stochastic Lanczos quadrature (SLQ).

For a symmetric n×n operator A with eigenpairs (λ_i, q_i), the spectral density is
φ(t) = (1/n) Σ_i δ(t − λ_i). For a normalised Rademacher probe v, m Lanczos steps give a
tridiagonal T_m with eigenpairs (θ_k, u_k); the Gauss quadrature

    vᵀ f(A) v ≈ Σ_k w_k f(θ_k),   w_k = (u_k[0])²,   Σ_k w_k = 1,

is unbiased over probes for (1/n) tr f(A). Averaging the discrete measures Σ_k w_k δ(t − θ_k) over
n_v probes estimates φ; for plots it is smoothed with a Gaussian of standard deviation σ:

    ρ_σ(t) = (1/n_v) Σ_r Σ_k w_k^(r) g_σ(t − θ_k^(r)),   g_σ(x) = exp(−x²/2σ²) / (σ√(2π)).

**σ here is a standard deviation in eigenvalue units**, unlike PyHessian and the Ghorbani et al.
code, whose "sigma squared" is a variance scaled by the spectral range (σ² = 1e-5·max(1, range)).
Moments are free: Σ_k w_k θ_k^p estimates tr(A^p)/n exactly for p < 2m (Gauss quadrature degree).

References: Ghorbani, Krishnan & Xiao (2019), arXiv 1901.10159; Lin, Saad & Yang (2016),
*Approximating spectral densities of large matrices*, SIAM Review 58(1); Ubaru, Chen & Saad (2017).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .. import memory
from ..errors import InvalidInputError
from ..operators.blocks import BlockView
from ..progress import product_bar
from . import checks
from .lanczos import basis_dtype as resolve_basis_dtype, lanczos, lanczos_bytes
from .random import generator, rademacher_columns, rademacher_signs

if TYPE_CHECKING:
    from .blocks import BlockResults

SCHEMA = "hesslens.SpectralDensity/1"


@dataclass(frozen=True)
class SpectralDensity:
    """SLQ nodes and weights, arrays of shape (probes, steps); each row's weights sum to 1.

    Rows of recurrences that stopped early (invariant subspace) are padded with weight-0 copies
    of their first node, so padding never moves an extreme node.
    """

    nodes: np.ndarray
    weights: np.ndarray
    dimension: int | None = None
    matvecs: int = 0
    seconds: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        nodes = np.atleast_2d(np.asarray(self.nodes, dtype=np.float64))
        weights = np.atleast_2d(np.asarray(self.weights, dtype=np.float64))
        if nodes.shape != weights.shape:
            raise InvalidInputError(f"nodes {nodes.shape} and weights {weights.shape} must have the same shape")
        if nodes.size == 0:
            raise InvalidInputError("a spectral density needs at least one node")
        if not (np.isfinite(nodes).all() and np.isfinite(weights).all()) or (weights < 0).any():
            raise InvalidInputError("nodes must be finite and weights finite and non-negative")
        object.__setattr__(self, "nodes", nodes)
        object.__setattr__(self, "weights", weights)

    @classmethod
    def from_spectrum(cls, eigenvalues: Any, **meta: Any) -> "SpectralDensity":
        """The exact density of a spectrum: one row whose nodes are the n eigenvalues, each of weight
        1/n (e.g. of :func:`hesslens.exact_spectrum`), so every analysis of a density also runs on
        the exact reference."""
        values = np.asarray(eigenvalues, dtype=np.float64).reshape(-1)
        if values.size == 0:
            raise InvalidInputError("from_spectrum needs at least one eigenvalue")
        return cls(values[None, :], np.full((1, values.size), 1.0 / values.size), dimension=values.size,
                   meta={"source": "exact spectrum", **meta})

    @property
    def probes(self) -> int:
        return self.nodes.shape[0]

    @property
    def steps(self) -> int:
        return self.nodes.shape[1]

    @property
    def support(self) -> tuple[float, float]:
        """Smallest and largest node carrying weight: Ritz values, inside [λ_min, λ_max]."""
        live = self.nodes[self.weights > 0]
        return float(live.min()), float(live.max())

    # -- moments --------------------------------------------------------------------------------
    def moment_samples(self, order: int) -> np.ndarray:
        """Per-probe estimates Σ_k w_k θ_k^p of tr(A^p)/n."""
        return (self.weights * self.nodes**order).sum(axis=1)

    def moment(self, order: int) -> float:
        return float(self.moment_samples(order).mean())

    def moment_stderr(self, order: int) -> float:
        """Standard error of :meth:`moment` over probes (NaN with a single probe)."""
        s = self.moment_samples(order)
        return float(s.std(ddof=1) / np.sqrt(len(s))) if len(s) > 1 else float("nan")

    # -- smoothing ------------------------------------------------------------------------------
    def default_sigma(self) -> float:
        """1% of the support width (or of its magnitude when all nodes coincide)."""
        lo, hi = self.support
        width = hi - lo
        return 0.01 * (width if width > 0 else max(abs(hi), 1.0))

    def default_grid(self, num: int = 1000, sigma: float | None = None) -> np.ndarray:
        """An even grid over the support, padded by five σ on each side."""
        s = self.default_sigma() if sigma is None else sigma
        lo, hi = self.support
        return np.linspace(lo - 5 * s, hi + 5 * s, num)

    def density(self, grid: np.ndarray | None = None, sigma: float | None = None) -> np.ndarray:
        """ρ_σ on ``grid`` (σ a standard deviation in eigenvalue units; see the module docstring)."""
        s = self.default_sigma() if sigma is None else float(sigma)
        if not s > 0:
            raise InvalidInputError(f"sigma must be positive, got {sigma}")
        t = self.default_grid(sigma=s) if grid is None else np.asarray(grid, dtype=np.float64)
        diff = t[:, None] - self.nodes.reshape(-1)[None, :]
        kernel = np.exp(-0.5 * (diff / s) ** 2) / (s * np.sqrt(2 * np.pi))
        return kernel @ self.weights.reshape(-1) / self.probes

    # -- plotting -------------------------------------------------------------------------------
    def plot(self, sigma: float | None = None, num: int = 1000, axes: Any = None, title: str | None = None):
        """Linear and log-scale density side by side; returns the matplotlib Figure."""
        if axes is None:
            import matplotlib.pyplot as plt

            fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
        else:
            fig = axes[0].figure
        s = self.default_sigma() if sigma is None else sigma
        grid = self.default_grid(num, s)
        rho = self.density(grid, s)
        axes[0].plot(grid, rho, color="C0")
        axes[0].set_ylabel("density")
        axes[1].semilogy(grid, np.maximum(rho, 1e-12), color="C0")
        axes[1].set_ylim(bottom=max(1e-8, rho.max() * 1e-9))
        axes[1].set_ylabel("density (log)")
        for ax in axes:
            ax.set_xlabel("eigenvalue")
            ax.axvline(0.0, color="0.6", lw=0.8, ls=":")
        fig.suptitle(title or f"SLQ spectral density ({self.probes} probes × {self.steps} steps, σ = {s:.3g})")
        return fig

    # -- serialisation --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "nodes": self.nodes.tolist(), "weights": self.weights.tolist(),
                "dimension": self.dimension, "matvecs": self.matvecs, "seconds": self.seconds, "meta": self.meta}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SpectralDensity":
        if d.get("schema") != SCHEMA:
            raise InvalidInputError(f"not a {SCHEMA} document (schema {d.get('schema')!r})")
        return cls(np.array(d["nodes"]), np.array(d["weights"]), d.get("dimension"),
                   int(d.get("matvecs", 0)), float(d.get("seconds", 0.0)), dict(d.get("meta", {})))

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict())
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> "SpectralDensity":
        text = str(text_or_path)
        if not text.lstrip().startswith("{"):
            text = Path(text).read_text()
        return cls.from_dict(json.loads(text))


def _quadrature(alpha: np.ndarray, beta: np.ndarray, length: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.diag(alpha[:length]) + np.diag(beta[: length - 1], 1) + np.diag(beta[: length - 1], -1)
    theta, u = np.linalg.eigh(t)
    nodes = np.full(steps, theta[0])
    weights = np.zeros(steps)
    nodes[:length], weights[:length] = theta, u[0] ** 2
    return nodes, weights


def spectral_density(
    op: Any,
    steps: int = 80,
    probes: int = 10,
    seed: int = 0,
    *,
    probe_batch: int | None = None,
    max_bytes: int | str | None = None,
    progress: bool | None = None,
    basis_dtype: Any = None,
) -> SpectralDensity | BlockResults:
    """SLQ estimate of the spectral density of a symmetric operator.

    Probes advance together through batched products, in groups whose Lanczos storage fits the
    memory budget (``max_bytes``, else :func:`hesslens.memory.default_budget`): a group of p
    probes holds p·(m + 3)·n numbers of the basis dtype, m = min(steps, n), next to the n·probes
    bytes of the probes' signs, drawn once. ``basis_dtype``: of the Lanczos vectors; None (default)
    float32 for a float32 :class:`~hesslens.HessianOperator` (half the memory and
    reorthogonalisation traffic, at the precision its float32 products have anyway; see
    :mod:`hesslens.linalg.lanczos`), float64 otherwise; ``"float64"`` or ``"float32"`` to say.
    The recurrence coefficients and the quadrature are float64 either way. ``probe_batch`` caps the
    group size further. Grouping changes neither the probes nor the recurrences, only how many run
    at once; when not even one probe
    fits, it refuses with the estimate. Returns nodes and weights of shape (probes, steps); with
    steps > n the rows are padded. ``progress`` shows a bar over the probes × min(steps, n)
    products (None: only on a terminal; False: never).

    For a :class:`~hesslens.operators.blocks.BlockView` it returns a
    :class:`~hesslens.linalg.blocks.BlockResults` of one density per block, every block's
    recurrences advancing together through shared block products (over a
    :class:`~hesslens.HessianOperator` each block's product pruned to its parameters where the
    engine can, else one product of the zero-padded columns), each block's probes the rows of this
    operator's probes (see :func:`~hesslens.linalg.block_lanczos.block_spectral_density`).

    >>> import torch, hesslens as hl
    >>> A = torch.diag(torch.tensor([-1.0, 2.0, 3.0], dtype=torch.float64))
    >>> sd = hl.spectral_density(A, steps=3, probes=4)
    >>> round(sd.moment(1), 12)  # tr(A)/n exactly
    1.333333333333
    """
    steps = checks.integer("steps", steps, 1)
    probes = checks.integer("probes", probes, 1)
    probe_batch = checks.optional_integer("probe_batch", probe_batch, 1)
    if isinstance(op, BlockView):
        from .block_lanczos import block_spectral_density

        if basis_dtype is not None and resolve_basis_dtype(basis_dtype) != torch.float64:
            raise InvalidInputError("per-block SLQ keeps its Lanczos vectors in float64: pass basis_dtype=None or 'float64'")

        checks.announce(op, probes * sum(min(steps, m) for m in op.sizes))
        return block_spectral_density(op, steps, probes, seed, probe_batch=probe_batch, max_bytes=max_bytes,
                                      progress=progress)
    a = checks.operator(op)
    dtype = resolve_basis_dtype(basis_dtype, a)
    gen = generator(seed)
    batch = probe_batch_size(a.n, steps, probes, probe_batch, max_bytes, dtype)
    checks.announce(a, probes * min(steps, a.n), batch)  # products of one probe group's columns
    nodes = np.zeros((probes, steps))
    weights = np.zeros((probes, steps))
    t0 = time.perf_counter()
    matvecs = 0
    # All signs in one draw, used group by group: any grouping multiplies the same probes.
    signs = rademacher_signs(a.n, probes, gen)
    # The bar counts products: probes × min(steps, n) planned, one fewer per step a recurrence
    # skips after an early stop, so the total matches the products done once the run is over.
    m = min(steps, a.n)
    with product_bar(total=probes * m, desc="SLQ", enabled=progress) as bar:
        for start in range(0, probes, batch):
            stop = min(probes, start + batch)
            v0 = rademacher_columns(signs[:, start:stop])
            tri = lanczos(a.matmat, v0, steps, on_matvecs=bar.update, max_bytes=max_bytes, dtype=dtype,
                          native=hasattr(a.source, "torch_matmat"))
            matvecs += tri.matvecs
            if tri.matvecs < (stop - start) * m:
                bar.total -= (stop - start) * m - tri.matvecs
                bar.refresh()
            for r in range(stop - start):
                nodes[start + r], weights[start + r] = _quadrature(tri.alpha[r], tri.beta[r], int(tri.lengths[r]), steps)
    meta = {"steps": steps, "probes": probes, "seed": int(seed), "probe": "rademacher", "reorthogonalisation": "full",
            "basis": checks.dtype_name(dtype)}
    return SpectralDensity(nodes, weights, a.n, matvecs, time.perf_counter() - t0, meta)


def probe_batch_size(n: int, steps: int, probes: int, probe_batch: int | None = None,
                     max_bytes: int | str | None = None, dtype: torch.dtype = torch.float64) -> int:
    """How many SLQ probes :func:`spectral_density` runs at once: as many as fit the budget (at most
    ``probe_batch``); refuses with the estimate when not even one does."""
    signs = memory.estimate(n, probes, itemsize=1)
    per_probe = lanczos_bytes(n, steps, 1, dtype)
    m = min(steps, n)
    return memory.items_that_fit(per_probe, probe_batch or probes, signs, max_bytes, advice="lower steps",
                                 what=f"SLQ with {steps} steps in dimension {n} (one probe's {m}×{n} "
                                 f"{checks.dtype_name(dtype)} Lanczos basis and the probes' signs)")
