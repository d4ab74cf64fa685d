"""What a run of the HESD-type study measures on its trained network.

* :func:`spectrum` — the HESD by SLQ on the analysis set (``analysis_n`` evenly spaced training
  examples, mean cross-entropy, eval mode), assessed by :func:`hesslens.assess`: type, balance C, scale,
  and re and Kh computed from the density whatever the type (the claims about MN spectra need their
  values; whether they *apply* is the ``applicable`` column), plus the count-based statistic the type
  deliberately does not use (the weight on negative nodes).
* :func:`shifted` — the same on each declared dataset shift (the Hessian on the shifted training set, the
  accuracy on the shifted test set), and Kendall τ between each criterion and the accuracy over the
  shifts whose spectrum is MP, and separately over those that are not.
* :func:`collapse` — from the tracked spectra of a long run: the spectral scale at its peak and its later
  minimum, the first epoch whose scale fell below ``qs_relative`` × the peak before it (hesslens's
  relative quasi-singularity test, with the trajectory's own peak as the reference checkpoint).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["ENGINE", "collapse", "shifted", "spectrum"]

#: The product engine: the nets are small, so double backward batched over probes is the fastest verified
#: one without the engine trial (which costs more than the spectrum here); it is still checked on the first
#: batch against the column loop, as every engine is.
ENGINE = "double_backward+vmap"


def _density(model: Any, x: Any, y: Any, steps: int, probes: int, seed: int) -> Any:
    from torch.nn import functional as F

    from ...linalg import spectral_density
    from ...operators import HessianOperator

    op = HessianOperator(model, F.cross_entropy, (x, y), engine=ENGINE, mode="eval")
    return spectral_density(op, steps=steps, probes=probes, seed=seed, progress=False)


def _assessed(density: Any, margin: float, qs_relative: float, reference: float | None) -> dict[str, Any]:
    from ...analysis import assess, hesd_criteria

    a = assess(density, margin=margin, qs_relative=qs_relative, reference=reference)
    c = hesd_criteria(density)
    t = a.hesd_type
    neg = float((density.weights * (density.nodes < 0)).sum(axis=1).mean())
    return {"hesd_type": t.kind, "decisive": t.decisive, "balance": t.balance, "balance_stderr": t.balance_stderr,
            "scale": t.scale, "applicable": a.applicable, "re": c.re, "kh": c.kh, "kh_stderr": c.kh_stderr,
            "negative_weight": neg, "lambda_max_slq": float(density.nodes.max()),
            "lambda_min_slq": float(density.nodes.min())}


def spectrum(model: Any, data: Any, *, n: int, steps: int, probes: int, seed: int, margin: float,
             qs_relative: float, reference: float | None = None) -> tuple[dict[str, Any], Any]:
    """The record entries of the trained network's HESD, and the density (an artifact of the run)."""
    from ...training.tracker import evenly_spaced

    x, y = evenly_spaced(data.x_train, data.y_train, n)
    density = _density(model, x, y, steps, probes, seed)
    return _assessed(density, margin, qs_relative, reference), density


def _accuracy(model: Any, x: Any, y: Any) -> float:
    import torch

    from ...operators import preserved_state

    with preserved_state(model), torch.no_grad():
        model.eval()
        return float((model(x).argmax(1) == y).double().mean())


def _tau(x: np.ndarray, y: np.ndarray) -> float:
    from ...errors import InvalidInputError
    from ..stats import kendall_tau

    try:
        return kendall_tau(x, y)
    except InvalidInputError:  # fewer than 2 cells or a constant column: τ is undefined
        return math.nan


def shifted(model: Any, data: Any, shifts: Any, other: str | None, *, n: int, steps: int, probes: int, seed: int,
            margin: float, qs_relative: float, reference: float | None) -> tuple[dict[str, Any], Any]:
    """Assess the network on every shift; returns the record's τ columns and the per-shift table."""
    import pandas as pd

    from ... import datasets

    cells = [(kind, level, data if kind == "none" else datasets.shift(data, kind, level, seed=seed))
             for kind, level in shifts]
    if other is not None:
        cells.append(("dataset", math.nan, datasets.load(other, seed=0)))
    rows = []
    for kind, level, ds in cells:
        entries, _ = spectrum(model, ds, n=n, steps=steps, probes=probes, seed=seed, margin=margin,
                              qs_relative=qs_relative, reference=reference)
        rows.append({"shift": kind, "level": level, "dataset": other if kind == "dataset" else "",
                     "accuracy": _accuracy(model, ds.x_test, ds.y_test), **entries})
    table = pd.DataFrame(rows)
    mp = table[table["hesd_type"] == "MP"]
    rest = table[table["hesd_type"] != "MP"]
    record = {"shift_cells": len(table), "shift_mp_cells": len(mp), "shift_nonmp_cells": len(rest)}
    for crit in ("kh", "re"):
        record[f"tau_{crit}_acc_mp"] = _tau(mp[crit].to_numpy(float), mp["accuracy"].to_numpy(float))
        ok = rest[np.isfinite(rest[crit].to_numpy(float))]
        record[f"tau_{crit}_acc_nonmp"] = (_tau(ok[crit].to_numpy(float), ok["accuracy"].to_numpy(float))
                                           if len(ok) >= 3 else math.nan)
    record["tau_mp_defined"] = bool(math.isfinite(record["tau_kh_acc_mp"]) and math.isfinite(record["tau_re_acc_mp"]))
    record["tau_nonmp_defined"] = bool(math.isfinite(record["tau_kh_acc_nonmp"])
                                       and math.isfinite(record["tau_re_acc_nonmp"]))
    return record, table


def collapse(tracker: Any, qs_relative: float) -> tuple[dict[str, Any], Any]:
    """Quasi-singularity along a tracked run: record entries and the trajectory table.

    With s_t the scale (largest |θ| carrying weight) of checkpoint t and p the checkpoint of the peak
    scale, ``qs_log_ratio`` = log10(min_{t ≥ p} s_t / (qs_relative · s_p)): negative when the spectrum
    collapsed below the relative threshold after its peak. ``qs_first_epoch`` is the first checkpoint whose
    scale is below qs_relative × the largest scale before it (NaN if none).
    """
    import pandas as pd

    from ...analysis import hesd_type

    epochs, scales, balances, losses = [], [], [], []
    for (i, density), row in zip(tracker.densities, tracker.rows):
        t = hesd_type(density)
        epochs.append(row["epoch"])
        scales.append(t.scale)
        balances.append(t.balance)
        losses.append(row.get("analysis_loss", math.nan))
    s = np.array(scales, dtype=float)
    p = int(np.argmax(s))
    running = np.maximum.accumulate(s)
    below = np.flatnonzero((np.arange(len(s)) > 0) & (s < qs_relative * np.concatenate([[np.inf], running[:-1]])))
    record = {"peak_scale": float(s[p]), "peak_epoch": float(epochs[p]), "final_scale": float(s[-1]),
              "min_scale_after_peak": float(s[p:].min()),
              "qs_log_ratio": float(math.log10(s[p:].min() / (qs_relative * s[p]))) if s[p] > 0 else math.nan,
              "qs_reached": bool(below.size), "qs_first_epoch": float(epochs[below[0]]) if below.size else math.nan,
              "final_tracked_loss": float(losses[-1])}
    table = pd.DataFrame({"epoch": epochs, "scale": s, "balance": balances, "loss": losses})
    return record, table
