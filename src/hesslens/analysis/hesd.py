"""Hessian eigenvalue spectral density (HESD): the criteria re and Kh, and the spectrum's type.

Analyses over a :class:`~hesslens.SpectralDensity` — from SLQ (nodes θ_k and weights w_k per probe
run), or exact (:meth:`SpectralDensity.from_spectrum` of :func:`hesslens.exact_spectrum`: one run, every
eigenvalue with weight 1/n) — never over a model, so the same numbers come from any source.

**Criteria** (Gabdullin 2024, arXiv 2412.10146; formulas as in the author's public code), per probe run,
over the nodes that carry weight and are not zero (|θ| > ``zero_tol``):

    re   = |min_k θ_k / max_k θ_k|
    Kh_n = Σ_{θ_k<0} (|θ_k| w_k)^n / Σ_{θ_k>0} (θ_k w_k)^n,     0 < n < 1 recommended (default 0.5)

then averaged over probe runs. A run with no positive node has neither (a division by zero): it is
reported as undefined, with the count, and left out of the means; if every run is undefined the criteria
are NaN with the reason. Smaller re and Kh — a negative part small against the positive one — read as a
more minimum-like state; the papers compare them across models or dataset shifts, with no published
thresholds, so hesslens applies none.

**Type** (Gabdullin 2025, arXiv 2504.17618: MP mainly positive, MN mainly negative, QS quasi-singular).
The paper's own criterion Ct was not available to us; this is **hesslens's criterion**, from the same
SLQ quantities, every threshold an argument:

* the *spectral-mass balance* C = (P − N)/(P + N), P = Σ_{θ>0} θ w, N = Σ_{θ<0} |θ| w, per run and
  averaged: since P − N = Σ θ w estimates tr(H)/n and P + N the same for |H|, C estimates
  tr(H)/tr|H| ∈ [−1, 1]. Counting negative eigenvalues would not do: after ordinary training 39–50 % of
  an MLP's eigenvalues are negative yet small, while C is 0.65–0.83 (measured when this was designed;
  see the issue "HESD type" in the project's notes);
* MP when C ≥ 0 and MN when C < 0, *decisive* only when |C| ≥ ``margin`` (default 0.2) — otherwise the
  type is reported with ``decisive = False`` and the reason says the balance is near zero;
* QS — which overrides MP/MN — when the spectrum's scale, the largest |θ| carrying weight, is below
  ``qs_floor`` (absolute; default 1e-4), or below ``qs_relative`` (default 0.01) times the scale of a
  ``reference`` (an earlier checkpoint's density, or a number): quasi-singularity is a collapse of
  scale, during which C can stay near 1 (memorising a small set drove λ_max from 1.3 to 1e-5 with C ≈
  0.99), so the test is on scale, not on signs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ._stats import _mean_se

__all__ = ["HESD_KINDS", "HesdCriteria", "HesdType", "hesd_criteria", "hesd_type"]

HESD_KINDS = ("MP", "MN", "QS")


def _density(density: Any) -> Any:
    from ..linalg.density import SpectralDensity

    if not isinstance(density, SpectralDensity):
        raise InvalidInputError(f"density must be a hesslens SpectralDensity (hl.spectral_density, or "
                                f"SpectralDensity.from_spectrum(eigenvalues)), got {type(density).__name__}")
    return density


def _nonnegative(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise InvalidInputError(f"{name} must be a finite number ≥ 0, got {value!r}")
    return float(value)


def _runs(density: Any, zero_tol: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per probe run, the (nodes, weights) that carry weight and are not zero."""
    out = []
    for nodes, weights in zip(density.nodes, density.weights):
        keep = (weights > 0) & (np.abs(nodes) > zero_tol)
        out.append((nodes[keep], weights[keep]))
    return out


@dataclass(frozen=True)
class HesdCriteria:
    """re and Kh_n: means over the defined probe runs, their standard errors, and the per-run values
    (NaN for an undefined run); ``undefined`` counts the runs without a positive node."""

    re: float
    kh: float
    re_stderr: float
    kh_stderr: float
    re_runs: tuple[float, ...]
    kh_runs: tuple[float, ...]
    n: float
    undefined: int
    reason: str = ""

    @property
    def defined(self) -> bool:
        return math.isfinite(self.re) and math.isfinite(self.kh)


def hesd_criteria(density: Any, n: float = 0.5, *, zero_tol: float = 0.0) -> HesdCriteria:
    """re and Kh_n of a spectral density (formulas in the module docstring).

    ``n`` > 0 (0 < n < 1 as the paper recommends; n ≤ 0 is refused); nodes with |θ| ≤ ``zero_tol`` count
    as zero and are left out, as are the weight-0 padding nodes of early-stopped Lanczos runs.
    """
    density = _density(density)
    if isinstance(n, bool) or not isinstance(n, (int, float)) or not math.isfinite(n) or n <= 0:
        raise InvalidInputError(f"n must be a finite number > 0 (0 < n < 1 recommended), got {n!r}")
    zero_tol = _nonnegative("zero_tol", zero_tol)
    re_runs, kh_runs = [], []
    for nodes, weights in _runs(density, zero_tol):
        pos, neg = nodes > 0, nodes < 0
        if not pos.any():
            re_runs.append(math.nan)
            kh_runs.append(math.nan)
            continue
        re_runs.append(float(abs(nodes.min() / nodes.max())))
        kh_runs.append(float(((-nodes[neg] * weights[neg]) ** n).sum() / ((nodes[pos] * weights[pos]) ** n).sum()))
    re_arr, kh_arr = np.array(re_runs), np.array(kh_runs)
    ok = np.isfinite(kh_arr)
    undefined = int((~ok).sum())
    reason = ""
    if undefined:
        reason = (f"{undefined} of {len(kh_arr)} probe run(s) have no positive non-zero node, where re and Kh "
                  "are undefined (a division by zero); " + ("they are left out of the means" if ok.any()
                                                            else "so the criteria are undefined"))
    re_mean, re_se = _mean_se(re_arr[ok])
    kh_mean, kh_se = _mean_se(kh_arr[ok])
    return HesdCriteria(re_mean, kh_mean, re_se, kh_se, tuple(re_runs), tuple(kh_runs), float(n), undefined, reason)


@dataclass(frozen=True)
class HesdType:
    """The spectrum's type by hesslens's criterion (module docstring), the statistics it rests on, the
    thresholds used and a one-line reason."""

    kind: str  # "MP", "MN" or "QS"
    decisive: bool
    balance: float  # C, mean over probe runs
    balance_stderr: float
    balance_runs: tuple[float, ...]
    scale: float  # largest |θ| carrying weight
    reference_scale: float | None
    margin: float
    qs_floor: float
    qs_relative: float
    reason: str


def _scale(density: Any) -> float:
    live = np.abs(density.nodes[density.weights > 0])
    return float(live.max()) if live.size else 0.0


def hesd_type(density: Any, *, margin: float = 0.2, qs_floor: float = 1e-4, qs_relative: float = 0.01,
              reference: Any = None, zero_tol: float = 0.0) -> HesdType:
    """MP, MN or QS for a spectral density, by hesslens's criterion (see the module docstring).

    ``reference``: the density of the same model at an earlier checkpoint (or its scale, a number > 0) for
    the relative quasi-singularity test; without it only the absolute floor ``qs_floor`` applies.
    """
    density = _density(density)
    margin = _nonnegative("margin", margin)
    if margin > 1:
        raise InvalidInputError(f"margin must be in [0, 1] (the balance C lies in [−1, 1]), got {margin}")
    qs_floor, qs_relative = _nonnegative("qs_floor", qs_floor), _nonnegative("qs_relative", qs_relative)
    zero_tol = _nonnegative("zero_tol", zero_tol)
    ref = None
    if reference is not None:
        ref = _scale(_density(reference)) if not isinstance(reference, (int, float)) else float(reference)
        if isinstance(reference, bool) or not (math.isfinite(ref) and ref > 0):
            raise InvalidInputError(f"reference must be a SpectralDensity or a scale > 0, got {reference!r}")
    balances = []
    for nodes, weights in _runs(density, zero_tol):
        p = float((nodes[nodes > 0] * weights[nodes > 0]).sum())
        q = float((-nodes[nodes < 0] * weights[nodes < 0]).sum())
        balances.append((p - q) / (p + q) if p + q > 0 else math.nan)
    arr = np.array(balances)
    c, c_se = _mean_se(arr[np.isfinite(arr)])
    scale = _scale(density)
    common = dict(balance=c, balance_stderr=c_se, balance_runs=tuple(balances), scale=scale, reference_scale=ref,
                  margin=margin, qs_floor=qs_floor, qs_relative=qs_relative)
    if scale < qs_floor or not math.isfinite(c):
        why = (f"spectral scale max|λ| = {scale:.3g} is below the floor {qs_floor:g}" if math.isfinite(c)
               else "every node is zero")
        return HesdType("QS", True, reason=f"quasi-singular: {why}", **common)
    if ref is not None and scale < qs_relative * ref:
        return HesdType("QS", True, reason=f"quasi-singular: spectral scale {scale:.3g} is below {qs_relative:g} × the "
                        f"reference scale {ref:.3g}", **common)
    kind = "MP" if c >= 0 else "MN"
    decisive = abs(c) >= margin
    side = "positive" if kind == "MP" else "negative"
    reason = (f"mainly {side}: spectral-mass balance C = {c:+.3f} ({'beyond' if decisive else 'within'} the margin "
              f"±{margin:g}{'' if decisive else ', so the type is weakly determined'}), scale {scale:.3g}")
    return HesdType(kind, decisive, reason=reason, **common)
