"""Low-level statistics shared by the analyses: means over probe runs with their standard errors.

Every analysis of a :class:`~hesslens.SpectralDensity` computes its statistic once per probe run (one
row of nodes and weights) and reports the mean over runs with the standard error of that mean,
s/√R (s the sample standard deviation with R − 1 degrees of freedom, R the number of runs). With a
single run — an exact spectrum, or SLQ with one probe — there is no standard error: NaN.
"""

from __future__ import annotations

import math

import numpy as np


def _mean_se(values: np.ndarray) -> tuple[float, float]:
    """(mean, standard error s/√R) of the per-run values; (NaN, NaN) for none, SE NaN for one."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return math.nan, math.nan
    se = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else math.nan
    return float(values.mean()), se
