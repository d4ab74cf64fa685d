"""The features a layer-wise run records, from its tracked local Hessians and its trained network.

With the checkpoints' per-block tables (:attr:`hesslens.Tracker.layerwise_history`, blocks in model order:
``in``, ``hidden``, ``out``):

* **spectral** (final checkpoint): :func:`hesslens.analysis.layer_features.block_features` of its table —
  per position p, ``log_lambda_max_p``, ``log_trace_per_param_p``, ``neg_mass_p``,
  ``effective_rank_fraction_p``, ``spectral_entropy_p`` and ``log_condition_p`` (the same function the
  evidence-based flags of :func:`hesslens.layerwise` read, so a learned rule reads the same numbers);
* **cheap** (the baseline of claim 1): ``log_train_loss``, ``train_score`` (accuracy, or R² = 1 − MSE/Var y
  for regression), ``log_params_per_sample`` = log10(#parameters / #training examples) and
  ``log_weight_norm_p`` = log10 of the Frobenius norm of block p's parameters;
* **generalization**: ``test_score`` and ``score_gap`` = train_score − test_score;
* **patterns** along training (1.0 when it holds, 0.0 when not; NaN where undefined): ``p_output_sharpest``
  (at the end the output block has the largest λ_max), ``p_sharpness_peaks`` (the largest block λ_max peaks
  at an interior checkpoint, above both the first and the last), ``p_negmass_falls`` (the mean negative
  mass over blocks is lower at the end than at initialisation; NaN for ReLU nets, whose local Hessians are
  PSD — piecewise linear in each block's parameters, H_ii is the Gauss–Newton block), ``p_erank_falls``
  (the output block's effective-rank fraction is lower at the end than at initialisation).

Logarithms are of absolute values, floored at 1e-30 (so a collapsed block gives −30, not −inf).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...analysis.layer_features import POSITIONS, block_features
from ...analysis.layer_features import log10 as _log

__all__ = ["SCALAR_COLUMNS", "features"]

#: The per-block table columns kept in the run's artifact (the others are text or lists).
SCALAR_COLUMNS = ("checkpoint", "epoch", "block", "type", "n_params", "exact", "lambda_max", "lambda_min", "trace",
                  "trace_stderr", "neg_mass", "condition", "stable_rank", "effective_rank", "spectral_entropy", "kh",
                  "balance", "hesd_type")
_FLOOR = 1e-30


def _score(model: Any, x: Any, y: Any, classification: bool) -> float:
    import torch

    from ...operators import preserved_state

    with preserved_state(model), torch.no_grad():
        model.eval()
        out = model(x)
        if classification:
            return float((out.argmax(1) == y).double().mean())
        y = y.to(out.dtype)
        return float(1.0 - ((out - y) ** 2).mean() / y.var(unbiased=False).clamp_min(_FLOOR))


def _per_block(table: Any) -> list[dict[str, float]]:
    rows = table.to_dict("records")
    if len(rows) != len(POSITIONS):
        raise ValueError(f"expected {len(POSITIONS)} blocks (an MLP with two hidden layers), got {len(rows)}")
    return rows


def features(config: Any, t: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(record entries, artifacts)`` of one trained run (see the module docstring)."""
    history = t.tracker.layerwise_history
    checkpoints = sorted(history["checkpoint"].unique())
    tables = [history[history["checkpoint"] == c] for c in checkpoints]
    first, last = _per_block(tables[0]), _per_block(tables[-1])
    record: dict[str, Any] = {**block_features(tables[-1]),
                              **{f"n_params_{pos}": row["n_params"] for pos, row in zip(POSITIONS, last)}}
    classification = t.data.info.task == "classification"
    train_score = _score(t.model, t.data.x_train, t.data.y_train, classification)
    test_score = _score(t.model, t.data.x_test, t.data.y_test, classification)
    params = [p for _, p in t.model.named_parameters()]
    linear = [m for m in t.model.modules() if hasattr(m, "weight") and m.weight is not None]
    record.update({"task": t.data.info.task, "log_train_loss": _log(t.result.train_loss), "train_score": train_score,
                   "test_score": test_score,
                   "score_gap": train_score - test_score,
                   "log_params_per_sample": _log(sum(p.numel() for p in params) / len(t.data.x_train)),
                   **{f"log_weight_norm_{pos}": _log(float(sum((q.detach().double() ** 2).sum()
                                                               for q in m.parameters()) ** 0.5))
                      for pos, m in zip(POSITIONS, linear)}})
    peak = [max(r["lambda_max"] for r in _per_block(tab)) for tab in tables]
    interior = int(np.argmax(peak)) not in (0, len(peak) - 1)
    relu = config.activation == "relu"
    record.update({
        "p_output_sharpest": float(last[-1]["lambda_max"] > max(r["lambda_max"] for r in last[:-1])),
        "p_sharpness_peaks": float(interior and peak[int(np.argmax(peak))] > max(peak[0], peak[-1])),
        "p_negmass_falls": math.nan if relu else float(np.mean([r["neg_mass"] for r in last])
                                                       < np.mean([r["neg_mass"] for r in first])),
        "p_erank_falls": float(last[-1]["effective_rank"] < first[-1]["effective_rank"]),
        "checkpoints": len(tables), "layerwise_matvecs": int(sum(r.get("matvecs", 0) for r in t.tracker.rows)),
    })
    keep = [c for c in SCALAR_COLUMNS if c in history.columns]
    return record, {"layerwise": history[keep].reset_index(drop=True)}
