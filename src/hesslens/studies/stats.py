"""Statistics over seeds for study claims: t-intervals, paired differences, interactions, Kendall τ, TOST.

Pure functions over NumPy arrays (a pandas Series is accepted wherever an array is, and its index
labels name the offending entries in errors). Each replicate — one seed — contributes one value of
the per-seed statistic; the functions here summarise those n values. Nothing is random here.

Conventions:

* **n < 2.** A t-interval needs an estimate of the spread, so with one value the bounds are NaN
  (``Interval.defined`` is False) and no decision can be taken from it; with none the estimate is
  undefined and the call is refused.
* **Non-finite values are errors.** A NaN or ±inf value (a diverged run, a missing metric) is
  refused with the positions or labels at fault; it is never dropped silently, because dropping
  replicates after seeing them changes the design.
* **Zero spread.** n ≥ 2 identical values give the degenerate interval [x̄, x̄]; that is what the
  formula says, and a study with exactly repeatable runs is entitled to it.

References: Student (1908), "The probable error of a mean", Biometrika 6(1); Kendall (1938), "A new
measure of rank correlation", Biometrika 30(1/2), with the τ_b tie correction of Kendall (1945);
Schuirmann (1987), "A comparison of the two one-sided tests procedure and the power approach for
assessing the equivalence of average bioavailability", J. Pharmacokinet. Biopharm. 15(6); Lakens
(2017), "Equivalence tests", Soc. Psychol. Personal. Sci. 8(4).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import InvalidInputError

__all__ = ["Equivalence", "Interval", "as_values", "interaction_differences", "kendall_tau", "kendall_taus",
           "mean_interval", "paired_differences", "tost"]


def _scipy_stats():
    """``scipy.stats``, imported when a statistic is first computed: it takes most of a second to
    import, and merely declaring or listing a study (``hesslens study NAME --status``) computes none."""
    from scipy import stats

    return stats


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided confidence interval [low, high] at ``level`` from ``n`` values.

    ``low`` and ``high`` are NaN when the interval is undefined (n < 2); ``method`` names the formula.
    """

    estimate: float
    low: float
    high: float
    n: int
    level: float
    method: str

    @property
    def defined(self) -> bool:
        """True when both bounds are finite numbers (n ≥ 2)."""
        return math.isfinite(self.low) and math.isfinite(self.high)

    def __str__(self) -> str:
        bounds = f"[{self.low:.4g}, {self.high:.4g}]" if self.defined else "[undefined]"
        return f"{self.estimate:.4g} {bounds} ({self.level:.0%} {self.method}, n = {self.n})"


@dataclass(frozen=True)
class Equivalence:
    """Result of a TOST equivalence test of the mean against the margin ±``margin``.

    ``p_lower`` tests H0: μ ≤ −margin, ``p_upper`` tests H0: μ ≥ +margin, ``p`` = max of the two;
    ``equivalent`` is ``p < alpha``, which is the same decision as ``interval`` (the (1 − 2α)
    t-interval) lying strictly inside (−margin, margin). With n < 2 the p-values are NaN and
    ``equivalent`` is False.
    """

    estimate: float
    margin: float
    alpha: float
    p_lower: float
    p_upper: float
    p: float
    interval: Interval
    equivalent: bool


def as_values(values, name: str = "values") -> np.ndarray:
    """``values`` as a 1-D float64 array, refusing non-numeric, multi-dimensional or non-finite input.

    Errors name the non-finite entries by their index label (a Series) or position (an array).
    """
    labels = list(values.index) if isinstance(values, pd.Series) else None
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} must be numbers: {exc}") from None
    if arr.ndim != 1:
        raise InvalidInputError(f"{name} must be one-dimensional, got shape {arr.shape}")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        where = [labels[i] for i in bad] if labels is not None else bad.tolist()
        kind = "labels" if labels is not None else "positions"
        raise InvalidInputError(f"{name} hold {bad.size} non-finite value(s) (NaN or inf) at {kind} "
                                f"{where[:10]}{' …' if bad.size > 10 else ''}; they are not dropped silently — "
                                "fix or exclude those runs explicitly")
    return arr


def _mean_se(x: np.ndarray) -> tuple[float, float]:
    """Sample mean and its standard error s/√n (s with n − 1 degrees of freedom); se is NaN for n < 2."""
    n = x.size
    mean = float(np.mean(x))
    se = float(np.std(x, ddof=1) / math.sqrt(n)) if n >= 2 else math.nan
    return mean, se


def mean_interval(values, level: float = 0.95) -> Interval:
    """Mean of the per-seed values with its two-sided Student-t confidence interval.

    x̄ ± t_{(1+level)/2, n−1} · s/√n, s² = Σ(xᵢ − x̄)²/(n − 1) (Student 1908). Exact when the values
    are independent normal draws; for the small n of a study (5–10 seeds) this is the standard
    choice over a bootstrap, whose percentile intervals under-cover at such n.
    n = 1 gives NaN bounds (no spread to estimate); n = 0 is refused.
    """
    if not (isinstance(level, (int, float)) and 0.0 < level < 1.0):
        raise InvalidInputError(f"level must lie in (0, 1), got {level!r}")
    x = as_values(values)
    if x.size == 0:
        raise InvalidInputError("no values: the mean of zero seeds is undefined")
    mean, se = _mean_se(x)
    if x.size < 2:
        return Interval(mean, math.nan, math.nan, 1, float(level), "t-interval")
    half = float(_scipy_stats().t.ppf(0.5 + level / 2.0, df=x.size - 1)) * se
    return Interval(mean, mean - half, mean + half, int(x.size), float(level), "t-interval")


def paired_differences(a, b) -> np.ndarray:
    """Per-seed paired differences dᵢ = aᵢ − bᵢ (arms paired by seed, same order, same length).

    Pairing removes the between-seed variance the arms share (initialisation, data order): the
    paired t-interval is the one-sample interval of the dᵢ.
    """
    xa, xb = as_values(a, "arm a"), as_values(b, "arm b")
    if xa.shape != xb.shape:
        raise InvalidInputError(f"paired arms must have one value per seed each, got {xa.size} and {xb.size}")
    return xa - xb


def interaction_differences(a, b, c, d) -> np.ndarray:
    """Per-seed interaction of two differences, (aᵢ − bᵢ) − (cᵢ − dᵢ), all four arms paired by seed.

    E.g. "the effect of a large learning rate shrinks at large batch size": a, b = large/small rate at
    small batch, c, d = large/small rate at large batch; a positive interaction means the effect
    shrinks. Its t-interval tests the difference-in-differences.
    """
    return paired_differences(a, b) - paired_differences(c, d)


def kendall_tau(x, y) -> float:
    """Kendall's τ_b between x and y (scipy.stats.kendalltau, which corrects for ties).

    τ_b = (P − Q) / √((P + Q + T_x)(P + Q + T_y)), P/Q concordant/discordant pairs, T_x/T_y pairs tied
    only in x/y (Kendall 1945). Refused when undefined: fewer than 2 points or a constant x or y.
    """
    xs, ys = as_values(x, "x"), as_values(y, "y")
    if xs.shape != ys.shape:
        raise InvalidInputError(f"x and y must have the same length, got {xs.size} and {ys.size}")
    if xs.size < 2 or np.ptp(xs) == 0 or np.ptp(ys) == 0:
        raise InvalidInputError(f"Kendall's τ is undefined for {xs.size} point(s) or a constant variable")
    return float(_scipy_stats().kendalltau(xs, ys).statistic)


def kendall_taus(groups: Sequence[tuple]) -> np.ndarray:
    """Kendall's τ_b of each (x, y) group — one group per seed — as an array of per-seed values.

    The mean over seeds and its interval are then :func:`mean_interval` of the result: each seed's τ
    is one replicate, so the interval reflects how τ varies between seeds rather than the (dependent)
    within-seed pairs that a pooled τ's p-value would treat as independent.
    """
    return np.array([kendall_tau(x, y) for x, y in groups], dtype=np.float64)


def tost(values, margin: float, alpha: float = 0.05) -> Equivalence:
    """Two one-sided t-tests (TOST) of |μ| < margin for the mean of the per-seed values.

    t_L = (x̄ + m)/se, p_L = P(T_{n−1} ≥ t_L)   (H0: μ ≤ −m)
    t_U = (x̄ − m)/se, p_U = P(T_{n−1} ≤ t_U)   (H0: μ ≥ +m)
    equivalent ⇔ max(p_L, p_U) < α ⇔ the (1 − 2α) t-interval lies inside (−m, m)   (Schuirmann 1987).

    Both forms are computed: the p-values for the record, the (1 − 2α) = 90 % interval because it is
    what a reader can check against the margin. The 90 % (not 95 %) interval is the right one: each
    one-sided test has level α, and equivalence needs both, so the overall test has level α
    (Lakens 2017). With se = 0 (identical values) the p-values are 0 or 1 by the sign of the limit.
    """
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin > 0):
        raise InvalidInputError(f"the equivalence margin must be a finite number > 0, got {margin!r}")
    if not (isinstance(alpha, (int, float)) and 0.0 < alpha < 0.5):
        raise InvalidInputError(f"alpha must lie in (0, 0.5), got {alpha!r}")
    x = as_values(values)
    ci = mean_interval(x, level=1.0 - 2.0 * alpha)
    if x.size < 2:
        return Equivalence(ci.estimate, float(margin), float(alpha), math.nan, math.nan, math.nan, ci, False)
    mean, se = _mean_se(x)
    if se == 0.0:
        # t = ±inf (or 0/0 exactly at the margin): the limits of the t-distribution's tails.
        p_lower = 0.0 if mean > -margin else 1.0
        p_upper = 0.0 if mean < margin else 1.0
    else:
        t = _scipy_stats().t
        p_lower = float(t.sf((mean + margin) / se, df=x.size - 1))
        p_upper = float(t.cdf((mean - margin) / se, df=x.size - 1))
    p = max(p_lower, p_upper)
    return Equivalence(mean, float(margin), float(alpha), p_lower, p_upper, p, ci, bool(p < alpha))
