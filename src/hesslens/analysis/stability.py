"""The edge of stability, judged on a tracked λ_max trajectory, not on its last point.

Under full-batch gradient descent with step η, a quadratic model is stable only while λ_max < 2/η.
Cohen et al. (2021, "Gradient descent on neural networks typically occurs at the edge of stability",
arXiv 2103.00065) observed that λ_max of a network's training loss rises during training ("progressive
sharpening") until it reaches about 2/η, then hovers at or somewhat above it while the loss keeps
falling, non-monotonically. A single final measurement cannot tell hovering from passing through,
so hesslens summarises the whole trajectory after the threshold is first reached, in units of the
threshold:

    r_t = λ_max(t) · η / 2,     t ≥ t* = first tracked point with r_t ≥ ``reach`` (default 1),

reporting the median of r over t ≥ t* with its quartiles (the spread), its range, and the fraction of
those points at or above the threshold. A median near 1 with a narrow spread is the edge of stability;
a trajectory that never reaches the threshold has ``reached = False`` and no ratios (NaN), which is
itself a finding (too few steps, or a learning rate too small for sharpening to meet 2/η in time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidInputError


@dataclass(frozen=True)
class EdgeOfStability:
    """Summary of λ_max·η/2 after the trajectory first reaches ``reach`` (see the module docstring)."""

    lr: float
    threshold: float  # 2/η
    reached: bool
    first_step: float  # the step (or epoch) t* at which r first reached ``reach``; NaN if never
    points_after: int  # tracked points from t* on
    ratio_median: float
    ratio_q25: float
    ratio_q75: float
    ratio_min: float
    ratio_max: float
    fraction_at_or_above: float  # share of points from t* on with r ≥ 1
    reach: float

    def line(self) -> str:
        """One line for tables and reports."""
        if not self.reached:
            return (f"η = {self.lr:g}: λ_max never reached {self.reach:g} × 2/η = {self.reach * self.threshold:.4g} "
                    "on the tracked points")
        return (f"η = {self.lr:g}: from step {self.first_step:g} on ({self.points_after} points) λ_max·η/2 has median "
                f"{self.ratio_median:.3g} (quartiles {self.ratio_q25:.3g}–{self.ratio_q75:.3g}, range "
                f"{self.ratio_min:.3g}–{self.ratio_max:.3g}); {self.fraction_at_or_above:.0%} of points at or above 2/η")


def _vector(values: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=float).reshape(-1)
    except (TypeError, ValueError) as err:
        raise InvalidInputError(f"{name} must be numbers, got {type(values).__name__}") from err
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise InvalidInputError(f"{name} has non-finite values at positions {bad[:5].tolist()}")
    return arr


def edge_of_stability(steps: Any, lambda_max: Any, lr: float, *, reach: float = 1.0) -> EdgeOfStability:
    """Summarise a tracked λ_max trajectory of full-batch GD with step ``lr`` against 2/η.

    ``steps`` (steps or epochs, increasing) and ``lambda_max`` are the tracked points, e.g. the
    ``step`` and ``lambda_max`` columns of :attr:`hesslens.Tracker.history`. ``reach`` sets what
    counts as having reached the threshold (r ≥ reach; 1 by default, 0.9 to allow for a tracker that
    samples sparsely).

    >>> r = edge_of_stability([0, 10, 20, 30, 40], [1.0, 5.0, 20.5, 19.0, 21.0], lr=0.1)
    >>> r.first_step, r.points_after, round(r.ratio_median, 3)
    (20.0, 3, 1.025)
    """
    t, lam = _vector(steps, "steps"), _vector(lambda_max, "lambda_max")
    if len(t) != len(lam):
        raise InvalidInputError(f"steps and lambda_max differ in length ({len(t)} and {len(lam)})")
    if len(t) == 0:
        raise InvalidInputError("the trajectory is empty: no tracked points")
    if np.any(np.diff(t) <= 0):
        raise InvalidInputError("steps must be strictly increasing (one tracked point per step)")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise InvalidInputError(f"lr must be a finite number > 0, got {lr!r}")
    if isinstance(reach, bool) or not isinstance(reach, (int, float)) or not 0 < reach <= 2:
        raise InvalidInputError(f"reach must be a number in (0, 2], got {reach!r}")
    threshold = 2.0 / lr
    ratio = lam * lr / 2.0
    hits = np.flatnonzero(ratio >= reach)
    if hits.size == 0:
        nan = math.nan
        return EdgeOfStability(float(lr), threshold, False, nan, 0, nan, nan, nan, nan, nan, nan, float(reach))
    after = ratio[hits[0]:]
    q25, median, q75 = np.quantile(after, [0.25, 0.5, 0.75])
    return EdgeOfStability(float(lr), threshold, True, float(t[hits[0]]), int(after.size), float(median), float(q25),
                           float(q75), float(after.min()), float(after.max()), float(np.mean(after >= 1.0)), float(reach))
