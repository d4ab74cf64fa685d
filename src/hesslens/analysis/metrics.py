"""Spectral metrics of a Hessian (or of any diagonal block H_ii): pure functions of a SpectralDensity.

Every function takes a :class:`~hesslens.SpectralDensity` — SLQ nodes θ_k and weights w_k per probe
run, or an exact spectrum through :meth:`SpectralDensity.from_spectrum` (one run, every eigenvalue λ_i
with weight 1/n) — computes its statistic once per probe run and returns an :class:`Estimate`: the mean
over the runs where it is defined, the standard error of that mean (NaN for one run) and the per-run
values. Only nodes that carry weight (w_k > 0) take part: the weight-0 padding of Lanczos runs that
stopped early is left out.

All of them read the density as a quadrature rule: Σ_k w_k f(θ_k) estimates (1/n) Σ_i f(λ_i) =
tr f(H)/n (unbiased over Rademacher probes for polynomial f, exact for the exact spectrum), n the
dimension (``density.dimension``). The metrics, with P = Σ_{θ>0} θ w and N = Σ_{θ<0} |θ| w as in
:mod:`hesslens.analysis.hesd`, and m₁ = Σ_k w_k |θ_k| ≈ tr|H|/n:

* :func:`neg_mass` = N/(P + N) — the fraction of spectral mass on negative eigenvalues, tr(H₋)/tr|H|
  (H₋ the negative part); 0 for a positive semi-definite H, 1 for a negative one. It is (1 − C)/2 for
  hesslens's balance C of :func:`hesslens.hesd_type`.
* :func:`condition` = max|θ| / min{|θ_k| : |θ_k| > rel_tol · max|θ|} — the 2-norm condition number of
  H restricted to its non-negligible eigenvalues (``rel_tol`` default 1e-3).
* :func:`stable_rank` = tr(H)/λ_max = n Σ w θ / max θ (papers.md §3), and :func:`abs_stable_rank`
  = tr|H|/max|λ| = n m₁ / max|θ|.
* :func:`effective_rank` = exp(−Σ_i p_i log p_i), p_i = |λ_i| / Σ_j |λ_j| (Roy & Vetterli 2007; for a
  symmetric matrix the singular values are the |λ_i|), and :func:`spectral_entropy`, the same Shannon
  entropy −Σ p_i log p_i, divided by log n.

References: Roy & Vetterli (2007), *The effective rank: a measure of effective dimensionality*, EUSIPCO;
Bolshim & Kugaevskikh (2025), arXiv 2510.17486, for these metrics on local (layer-wise) Hessians;
Gabdullin (2025), arXiv 2504.17618, for P and N.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..errors import InvalidInputError
from ._stats import _mean_se
from .hesd import _density

__all__ = ["DEFAULT_REL_TOL", "Estimate", "abs_stable_rank", "condition", "effective_rank", "neg_mass",
           "spectral_entropy", "spectral_metrics", "stable_rank"]

#: Default relative threshold of :func:`condition`: eigenvalues with |λ| ≤ 1e-3 · max|λ| are negligible.
DEFAULT_REL_TOL = 1e-3


@dataclass(frozen=True)
class Estimate:
    """A metric over probe runs: ``value`` (the mean over the runs where it is defined), ``stderr`` (the
    standard error of that mean, s/√R; NaN with one defined run), ``runs`` (per-run values, NaN where
    undefined) and ``reason`` (why some or all runs are undefined; empty when none is). ``float(e)`` is
    the value."""

    value: float
    stderr: float
    runs: tuple[float, ...]
    reason: str = ""

    def __float__(self) -> float:
        return self.value

    @property
    def defined(self) -> bool:
        return math.isfinite(self.value)


def _live(density: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per probe run, the (nodes, weights) that carry weight."""
    return [(nodes[weights > 0], weights[weights > 0]) for nodes, weights in zip(density.nodes, density.weights)]


def _dimension(density: Any, what: str) -> int:
    n = density.dimension
    if n is None:
        raise InvalidInputError(f"{what} needs the dimension n of the operator (density.dimension is None): use "
                                "hl.spectral_density or SpectralDensity.from_spectrum, or build it with SpectralDensity(nodes, weights, n)")
    return int(n)


def _estimate(density: Any, per_run: Callable[[np.ndarray, np.ndarray], tuple[float, str]]) -> Estimate:
    """Apply ``per_run(nodes, weights) -> (value or NaN, why undefined)`` to every run; mean and SE."""
    runs, whys = [], []
    for nodes, weights in _live(density):
        value, why = per_run(nodes, weights)
        runs.append(float(value))
        if not math.isfinite(value):
            whys.append(why)
    arr = np.array(runs)
    mean, se = _mean_se(arr[np.isfinite(arr)])
    reason = ""
    if whys:
        common = max(set(whys), key=whys.count)
        reason = common if len(runs) == 1 else f"{len(whys)} of {len(runs)} probe runs: {common}" + (
            "; left out of the mean" if len(whys) < len(runs) else "")
    return Estimate(mean, se, tuple(runs), reason)


def neg_mass(density: Any) -> Estimate:
    """Negative-mass fraction N/(P + N), P = Σ_{θ>0} θ w, N = Σ_{θ<0} |θ| w, per probe run.

    Estimates tr(H₋)/tr|H| ∈ [0, 1] (H₋ = Σ_{λ<0} |λ| q qᵀ): the share of |curvature| in negative
    directions, 0 for a positive semi-definite H. Invariant under positive scaling of H; scaling by −1
    maps it to 1 − itself. Undefined (NaN) for a run whose every node is 0 (P + N = 0).
    """
    density = _density(density)

    def run(nodes: np.ndarray, weights: np.ndarray) -> tuple[float, str]:
        p = float((nodes[nodes > 0] * weights[nodes > 0]).sum())
        q = float((-nodes[nodes < 0] * weights[nodes < 0]).sum())
        return (q / (p + q), "") if p + q > 0 else (math.nan, "every eigenvalue is zero")

    return _estimate(density, run)


def condition(density: Any, *, rel_tol: float = DEFAULT_REL_TOL) -> Estimate:
    """Condition number over the non-negligible eigenvalues, per probe run:

        κ = max_k |θ_k| / min{ |θ_k| : |θ_k| > rel_tol · max_k |θ_k| },

    over the nodes carrying weight (w_k > 0; the weights enter only through that: κ is a ratio of
    extremes, not a mass). κ ≥ 1; it equals λ_max / min|λ| whenever λ_max ≥ |λ_min| (a mainly positive
    spectrum) and stays a proper condition number for indefinite or negative spectra, where
    λ_max / min|λ| would be below 1 or negative. ``rel_tol`` ∈ [0, 1) (default :data:`DEFAULT_REL_TOL` =
    1e-3) sets which eigenvalues count as zero — a trained network's Hessian has many eigenvalues at
    round-off level, which would make the plain ratio meaningless; rel_tol = 0 keeps every non-zero
    node. Exact for an exact spectrum, and for SLQ with steps ≥ n (the Ritz values are then the
    eigenvalues); with fewer steps the extreme Ritz values converge first, the smallest non-negligible
    |θ| is a rougher estimate. Invariant under any non-zero scaling; 1 for a single node. Undefined
    (NaN) for a run whose every node is 0.
    """
    density = _density(density)
    if isinstance(rel_tol, bool) or not isinstance(rel_tol, (int, float)) or not 0 <= rel_tol < 1:
        raise InvalidInputError(f"rel_tol must be a number in [0, 1), got {rel_tol!r}")

    def run(nodes: np.ndarray, weights: np.ndarray) -> tuple[float, str]:
        a = np.abs(nodes)
        top = float(a.max())
        if top == 0:
            return math.nan, "every eigenvalue is zero"
        return top / float(a[a > rel_tol * top].min()), ""

    return _estimate(density, run)


def stable_rank(density: Any) -> Estimate:
    """tr(H)/λ_max (papers.md §3), per probe run: n Σ_k w_k θ_k / max_k θ_k.

    For a positive semi-definite H it lies in [1, n] (n for a flat spectrum, 1 for rank one); for an
    indefinite H it can be below 1 and even **negative** (tr(H) < 0 < λ_max), so read it with
    :func:`neg_mass`, or use :func:`abs_stable_rank`. Undefined (NaN) when λ_max ≤ 0 (no positive node:
    the ratio no longer measures a rank). The numerator is the run's Hutchinson estimate of tr(H) (the
    quadrature's first moment, exact for the exact spectrum). Invariant under positive scaling.
    """
    density = _density(density)
    n = _dimension(density, "stable_rank")

    def run(nodes: np.ndarray, weights: np.ndarray) -> tuple[float, str]:
        top = float(nodes.max())
        if top <= 0:
            return math.nan, "λ_max ≤ 0: no positive eigenvalue"
        return n * float((weights * nodes).sum()) / top, ""

    return _estimate(density, run)


def abs_stable_rank(density: Any) -> Estimate:
    """tr|H| / max|λ|, per probe run: n m₁ / max_k |θ_k| with m₁ = Σ_k w_k |θ_k|.

    The stable rank of |H| = (H²)^{1/2}: in [1, n] for every symmetric H (exactly, for the exact
    spectrum), and never above :func:`effective_rank`. Invariant under any non-zero scaling. Undefined
    (NaN) for a run whose every node is 0.
    """
    density = _density(density)
    n = _dimension(density, "abs_stable_rank")

    def run(nodes: np.ndarray, weights: np.ndarray) -> tuple[float, str]:
        a = np.abs(nodes)
        top = float(a.max())
        return (n * float((weights * a).sum()) / top, "") if top > 0 else (math.nan, "every eigenvalue is zero")

    return _estimate(density, run)


def _entropy(nodes: np.ndarray, weights: np.ndarray, n: int) -> float:
    """Ĥ = log n − KL(q ‖ w) of one run (see :func:`effective_rank`); NaN when every node is 0."""
    a = np.abs(nodes)
    m1 = float((weights * a).sum())
    if m1 == 0:
        return math.nan
    q = weights * a / m1
    keep = q > 0  # 0 · log 0 = 0
    return math.log(n) - float((q[keep] * np.log(q[keep] / weights[keep])).sum())


def effective_rank(density: Any) -> Estimate:
    """Effective rank exp(−Σ_i p_i log p_i), p_i = |λ_i| / Σ_j |λ_j| (Roy & Vetterli 2007), per probe run.

    From a density it is estimated by the quadrature of the Shannon entropy of p,

        Ĥ = log n − Σ_k q_k log(q_k / w_k) = log n − KL(q ‖ w),   q_k = w_k |θ_k| / m₁,   m₁ = Σ_k w_k |θ_k|,

    effective rank = exp(Ĥ) = n · exp(−KL(q ‖ w)). Derivation: −Σ_i p_i log p_i = log Σ_j |λ_j| −
    Σ_i |λ_i| log|λ_i| / Σ_j |λ_j|, and with Σ_i f(λ_i) ≈ n Σ_k w_k f(θ_k) this is log(n m₁) −
    Σ_k w_k |θ_k| log|θ_k| / m₁ = Ĥ. For the exact spectrum (w_k = 1/n) it is exactly Roy & Vetterli's
    value; for SLQ each node θ_k stands for the n w_k eigenvalues around it, so the estimate can reach n,
    where the entropy of the node masses q_k alone (p_k ∝ |θ_k| w_k) could never exceed the number of
    nodes (≤ steps). It is a quadrature functional: splitting a node into copies with the same total
    weight does not change it (0 · log 0 = 0 for zero nodes).
    In [abs_stable_rank, n]: n for a flat |spectrum|, 1 for rank one. Invariant under any non-zero
    scaling. Undefined (NaN) for a run whose every node is 0.
    """
    density = _density(density)
    n = _dimension(density, "effective_rank")

    def run(nodes: np.ndarray, weights: np.ndarray) -> tuple[float, str]:
        h = _entropy(nodes, weights, n)
        return (math.exp(h), "") if math.isfinite(h) else (math.nan, "every eigenvalue is zero")

    return _estimate(density, run)


def spectral_entropy(density: Any, *, normalised: bool = True) -> Estimate:
    """Shannon entropy of the normalised |spectrum|, −Σ_i p_i log p_i with p_i = |λ_i| / Σ_j |λ_j|, per probe
    run, estimated as in :func:`effective_rank` (whose logarithm it is, run by run); divided by log n
    when ``normalised`` (default), so that it lies in [0, 1] — 1 for a flat |spectrum|, 0 for rank one —
    and blocks of different sizes compare; in nats otherwise.

    (The entropy of the density's own weights, −Σ w_k log w_k, would not do: for the exact spectrum
    every weight is 1/n and it is log n whatever the eigenvalues.) Invariant under any non-zero scaling.
    Undefined (NaN) for a run whose every node is 0, and, normalised, for n = 1 (0/0).
    """
    density = _density(density)
    n = _dimension(density, "spectral_entropy")
    if normalised and n == 1:
        return Estimate(math.nan, math.nan, (math.nan,) * density.probes,
                        "a one-dimensional block has no entropy to normalise (log n = 0)")

    def run(nodes: np.ndarray, weights: np.ndarray) -> tuple[float, str]:
        h = _entropy(nodes, weights, n)
        return (h / math.log(n) if normalised else h, "") if math.isfinite(h) else (math.nan, "every eigenvalue is zero")

    return _estimate(density, run)


def spectral_metrics(density: Any, *, rel_tol: float = DEFAULT_REL_TOL) -> dict[str, Estimate]:
    """Every metric of this module for one density: ``{"neg_mass": …, "condition": …, "stable_rank": …,
    "stable_rank_abs": …, "effective_rank": …, "spectral_entropy": …}`` (normalised entropy)."""
    return {"neg_mass": neg_mass(density), "condition": condition(density, rel_tol=rel_tol),
            "stable_rank": stable_rank(density), "stable_rank_abs": abs_stable_rank(density),
            "effective_rank": effective_rank(density), "spectral_entropy": spectral_entropy(density)}
