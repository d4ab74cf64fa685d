"""The unified assessment of Gabdullin (2025): spectrum → type → criteria only where they are valid.

:func:`assess` computes a model's HESD by SLQ (or takes a density), decides its type
(:func:`~hesslens.analysis.hesd.hesd_type`) and computes re and Kh
(:func:`~hesslens.analysis.hesd.hesd_criteria`) only where the paper says they apply:

* **MP** — the criteria apply; they are returned, and the verdict says how to read them (smaller re
  and Kh: a negative part small against the positive one, a more minimum-like state; compare across
  models or dataset shifts — no absolute threshold is published, so none is applied);
* **MN** — the criteria do not apply: ``criteria`` is None and the verdict says why;
* **QS** — the criteria are returned but flagged unreliable (ratios of a collapsed spectrum are
  ill-conditioned), in the verdict and in ``warnings``.

:func:`compare` ranks several assessments (models, or one model across dataset shifts) by Kh and, given
accuracies, measures how the criteria track them: Kendall τ_b and Spearman ρ with their p-values over
the assessments whose criteria apply.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInputError
from .hesd import HesdCriteria, HesdType, hesd_criteria, hesd_type

__all__ = ["Assessment", "Comparison", "assess", "compare"]


@dataclass(frozen=True)
class Assessment:
    """Type, criteria (None where they do not apply), a verdict to act on, warnings, and the density."""

    hesd_type: HesdType
    criteria: HesdCriteria | None
    verdict: str
    warnings: tuple[str, ...]
    density: Any
    label: str = ""

    @property
    def applicable(self) -> bool:
        """True when the criteria apply and are defined: an MP spectrum, not quasi-singular."""
        return self.hesd_type.kind == "MP" and self.criteria is not None and self.criteria.defined


def assess(model: Any, loss_fn: Any = None, data: Any = None, *, steps: int = 80, probes: int = 10, seed: int = 0,
           n: float = 0.5, margin: float = 0.2, qs_floor: float = 1e-4, qs_relative: float = 0.01,
           reference: Any = None, label: str = "", progress: bool | None = None,
           **operator_options: Any) -> Assessment:
    """Assess ``model`` on ``loss_fn`` over ``data``, or a given :class:`~hesslens.SpectralDensity`.

    With a model, the density is ``spectral_density(HessianOperator(model, loss_fn, data,
    **operator_options), steps, probes, seed)`` (``params=``, ``mode=``, ``reduction=`` … go to the
    operator; the model is left as it was). ``n`` is Kh's exponent; ``margin``, ``qs_floor``,
    ``qs_relative`` and ``reference`` are :func:`~hesslens.analysis.hesd.hesd_type`'s.
    """
    from ..linalg.density import SpectralDensity

    if isinstance(model, SpectralDensity):
        if loss_fn is not None or data is not None or operator_options:
            raise InvalidInputError("assess(density): a density needs no loss_fn, data or operator options")
        density = model
    else:
        if loss_fn is None or data is None:
            raise InvalidInputError("assess(model, loss_fn, data): a model needs loss_fn and data (or pass a "
                                    "SpectralDensity instead of the model)")
        from ..linalg.density import spectral_density
        from ..operators import HessianOperator

        op = HessianOperator(model, loss_fn, data, **operator_options)
        density = spectral_density(op, steps=steps, probes=probes, seed=seed, progress=progress)
    kind = hesd_type(density, margin=margin, qs_floor=qs_floor, qs_relative=qs_relative, reference=reference)
    warnings: list[str] = []
    if kind.kind == "MN":
        verdict = (f"MN spectrum — {kind.reason}. The criteria re and Kh do not apply to it "
                   "(Gabdullin 2025): such spectra follow external gradient manipulation (clipping, AdaHessian), "
                   "and no generalization estimate is given.")
        return Assessment(kind, None, verdict, tuple(warnings), density, label)
    criteria = hesd_criteria(density, n=n)
    if criteria.reason:
        warnings.append(criteria.reason)
    if not kind.decisive:
        warnings.append(f"the type is weakly determined ({kind.reason}); read the criteria with caution")
    values = (f"re = {criteria.re:.4g}, Kh = {criteria.kh:.4g} (n = {criteria.n:g})" if criteria.defined
              else "re and Kh are undefined")
    if kind.kind == "QS":
        warnings.append(f"quasi-singular spectrum: {kind.reason}; re and Kh are ratios of a collapsed spectrum and "
                        "unreliable")
        verdict = (f"QS spectrum — {kind.reason}. {values}, but unreliable: the spectrum has "
                   "collapsed towards zero, where its ratios stop reflecting curvature.")
    else:
        verdict = (f"MP spectrum — {kind.reason}. The criteria apply: {values}. Smaller values — "
                   "a negative part small against the positive one — read as a more minimum-like state; compare "
                   "them across models or dataset shifts (hesslens.compare), as no absolute threshold is published.")
    return Assessment(kind, criteria, verdict, tuple(warnings), density, label)


@dataclass(frozen=True)
class Comparison:
    """``table``: one row per assessment, ranked by Kh (applicable rows first); ``correlations``: Kendall
    τ_b and Spearman ρ (with p-values) between each criterion and the accuracies, over the applicable
    rows (empty without accuracies); ``note``: which rows were left out of the correlations and why."""

    table: Any
    correlations: Any
    note: str


def compare(assessments: Sequence[Assessment], accuracies: Sequence[float] | None = None) -> Comparison:
    """Rank assessments by their criteria; with ``accuracies`` (one per assessment), correlate them."""
    import numpy as np
    import pandas as pd
    from scipy import stats

    items = list(assessments)
    if not items or not all(isinstance(a, Assessment) for a in items):
        raise InvalidInputError("compare needs a non-empty sequence of hesslens Assessments (hl.assess)")
    if accuracies is not None:
        accuracies = [float(a) for a in accuracies]
        if len(accuracies) != len(items):
            raise InvalidInputError(f"accuracies: {len(accuracies)} values for {len(items)} assessments")
        if not all(math.isfinite(a) for a in accuracies):
            raise InvalidInputError("accuracies must be finite numbers")
    rows = []
    for i, a in enumerate(items):
        c = a.criteria
        rows.append({"label": a.label or f"#{i}", "type": a.hesd_type.kind, "decisive": a.hesd_type.decisive,
                     "balance": a.hesd_type.balance, "scale": a.hesd_type.scale, "applicable": a.applicable,
                     "re": c.re if c is not None else math.nan, "kh": c.kh if c is not None else math.nan,
                     **({"accuracy": accuracies[i]} if accuracies is not None else {})})
    table = pd.DataFrame(rows)
    table = table.sort_values(["applicable", "kh"], ascending=[False, True], kind="stable").reset_index(drop=True)
    table.insert(0, "rank", [i + 1 if ok else None for i, ok in enumerate(table["applicable"])])
    left_out = table.loc[~table["applicable"], "label"].tolist()
    note = (f"left out of the ranking and correlations (criteria not applicable: MN, QS or undefined): {left_out}"
            if left_out else "")
    corr = pd.DataFrame(columns=["criterion", "runs", "kendall_tau", "kendall_p", "spearman_rho", "spearman_p"])
    if accuracies is not None:
        ok = table[table["applicable"]]
        out = []
        for crit in ("re", "kh"):
            x, y = ok[crit].to_numpy(float), ok["accuracy"].to_numpy(float)
            if len(ok) >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
                k, s = stats.kendalltau(x, y), stats.spearmanr(x, y)
                out.append([crit, len(ok), float(k.statistic), float(k.pvalue), float(s.statistic), float(s.pvalue)])
            else:
                out.append([crit, len(ok), math.nan, math.nan, math.nan, math.nan])
        corr = pd.DataFrame(out, columns=corr.columns)
        if len(ok) < 3:
            note = (note + "; " if note else "") + f"correlations need ≥ 3 applicable assessments, got {len(ok)}"
    return Comparison(table, corr, note)
