"""Planted spectra: symmetric matrices with a known eigendecomposition, and hypothesis strategies.

A = Q diag(λ) Qᵀ with Q the orthogonal factor of the QR decomposition of a seeded Gaussian matrix
(signs fixed by diag R > 0, which makes Q Haar-distributed). Every test of the linear-algebra layer
compares against λ, so the expected values are the planted ones, never numbers read off a run.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse.linalg as spla
from hypothesis import strategies as st

KINDS = ("general", "negative", "degenerate", "rank_deficient", "clustered", "wide")
#: Cluster half-widths relative to the spectrum's scale: numerically degenerate, tight, loose.
CLUSTER_WIDTHS = (1e-13, 1e-8, 1e-3)


class Planted:
    """A planted symmetric matrix: ``a`` (float64, n×n), eigenvalues ``lam`` (ascending), eigenvectors ``q``.

    A plain class rather than a dataclass so that hypothesis reports a failing example by the short
    ``__repr__`` below (kind, n, seed: enough to rebuild it) instead of printing whole matrices.
    """

    def __init__(self, kind: str, lam: np.ndarray, q: np.ndarray, a: np.ndarray, seed: int, params=None):
        self.kind, self.lam, self.q, self.a, self.seed = kind, lam, q, a, seed
        self.params = dict(params or {})  # the family's structure (multiplicity, rank, cluster width, …)

    @property
    def n(self) -> int:
        return len(self.lam)

    @property
    def norm(self) -> float:
        """‖A‖₂ = max |λ| (the scale every tolerance is relative to); 1 for the zero matrix."""
        return float(np.abs(self.lam).max()) or 1.0

    def __repr__(self) -> str:
        return (f"Planted(kind={self.kind!r}, n={self.n}, seed={self.seed}, params={self.params}, "
                f"lam[:3]={self.lam[:3].tolist()}, lam[-3:]={self.lam[-3:].tolist()})")

    def _repr_pretty_(self, printer, cycle) -> None:  # hypothesis's pretty-printer uses this
        printer.text(repr(self))


def haar_orthogonal(n: int, seed: int) -> np.ndarray:
    """A Haar-random orthogonal matrix: Q of QR(G), G Gaussian, with the signs of diag R made positive."""
    g = np.random.default_rng([seed, 0x51AB]).standard_normal((n, n))
    q, r = np.linalg.qr(g)
    return q * np.sign(np.diag(r))


def plant(lam, seed: int = 0, kind: str = "custom", **params) -> Planted:
    """A = Q diag(λ) Qᵀ, exactly symmetric (symmetrised after the product); λ is sorted ascending."""
    lam = np.sort(np.asarray(lam, dtype=np.float64))
    q = haar_orthogonal(len(lam), seed)
    a = (q * lam) @ q.T
    return Planted(kind, lam, q, (a + a.T) / 2, seed, params)


def counting_operator(a: np.ndarray) -> tuple[spla.LinearOperator, list[int]]:
    """A SciPy LinearOperator over ``a`` and a one-element list counting the columns it has multiplied."""
    count = [0]

    def matmat(x):
        x = np.asarray(x)
        count[0] += 1 if x.ndim == 1 else x.shape[1]
        return a @ x

    op = spla.LinearOperator(a.shape, matvec=matmat, matmat=matmat, rmatvec=matmat, dtype=np.float64)
    return op, count


def sample_spectrum(kind: str, n: int, rng: np.random.Generator, *, mult: int = 1, rank: int | None = None,
                    clusters: int = 3, width: float = 1e-6, decades: float = 10.0) -> np.ndarray:
    """Eigenvalues of one family, with max |λ| of order 1 (callers scale)."""
    if kind == "general":
        return rng.uniform(-1.0, 1.0, n)
    if kind == "negative":  # strictly negative: "largest" is the least negative, not the largest |λ|
        return -rng.uniform(0.05, 1.0, n)
    if kind == "degenerate":  # top and bottom eigenvalues repeated `mult` times, separated from the rest
        lam = rng.uniform(-0.8, 0.8, n)
        lam[:mult], lam[mult:2 * mult] = 1.0, -1.0
        return lam
    if kind == "rank_deficient":  # exact zeros, and `rank` nonzero eigenvalues of either sign
        lam = np.zeros(n)
        r = max(1, n // 4) if rank is None else rank
        lam[:r] = rng.uniform(0.1, 1.0, r) * rng.choice([-1.0, 1.0], r)
        return lam
    if kind == "clustered":  # tight clusters around a few centres
        centres = rng.uniform(-1.0, 1.0, clusters)
        return centres[rng.integers(0, clusters, n)] + width * rng.uniform(-1.0, 1.0, n)
    if kind == "wide":  # magnitudes spread over `decades` orders of magnitude, both signs
        return rng.choice([-1.0, 1.0], n) * 10.0 ** rng.uniform(-decades, 0.0, n)
    raise ValueError(kind)


@st.composite
def planted(draw, kinds=KINDS, n_min: int = 10, n_max: int = 200, max_mult: int = 1) -> Planted:
    """A planted matrix of a drawn family; hypothesis draws the structure, a seed draws the values.

    ``max_mult`` bounds the multiplicity of the repeated extreme eigenvalues of "degenerate" spectra.
    """
    kind = draw(st.sampled_from(kinds))
    n = draw(st.integers(n_min, n_max))
    seed = draw(st.integers(0, 2**31 - 1))
    scale = draw(st.sampled_from([1e-3, 1.0, 1e4]))
    opts = {}
    if kind == "degenerate":
        opts["mult"] = draw(st.integers(1, max(1, min(max_mult, n // 3))))
    elif kind == "rank_deficient":
        opts["rank"] = draw(st.integers(1, max(1, n // 3)))
    elif kind == "clustered":
        opts["clusters"] = draw(st.integers(2, 6))
        opts["width"] = draw(st.sampled_from(CLUSTER_WIDTHS))
    elif kind == "wide":
        opts["decades"] = draw(st.sampled_from([4.0, 8.0, 12.0]))
    lam = scale * sample_spectrum(kind, n, np.random.default_rng(seed), **opts)
    return plant(lam, seed, kind, scale=scale, **opts)
