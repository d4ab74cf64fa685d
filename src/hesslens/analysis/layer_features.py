"""Scalar features of a layer-wise table, and the evidence-based rules built on them.

:func:`block_features` turns a :attr:`hesslens.Layerwise.table` of a network with three blocks (the
input, hidden and output layers of a two-hidden-layer MLP: the family hesslens's ``layerwise`` study
trains) into named scalars, per position p ∈ {``in``, ``hidden``, ``out``}:

* ``log_lambda_max_p`` = log10 λ_max(H_pp);
* ``log_trace_per_param_p`` = log10(|tr H_pp| / n_p);
* ``neg_mass_p``, ``spectral_entropy_p`` (:mod:`hesslens.analysis.metrics`);
* ``effective_rank_fraction_p`` = effective rank / n_p;
* ``log_condition_p`` = log10 of the condition number;

logarithms floored at 1e-30 (a collapsed block gives −30, not −inf). The study records exactly these
(``hesslens.studies.layerwise.features``), so a rule it learns reads the same numbers here.

A :class:`StudyRule` is one such learned rule — a feature, a direction and a threshold, with the
leave-datasets-out accuracy it reached in the study and the command that printed it. It applies only to
the family it was learned on (three Linear blocks) and says so; :data:`hesslens.analysis.layerwise.
DIAGNOSTIC_RULES` lists the rules that met the declared evidence bar.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["FEATURES_PER_BLOCK", "MIN_BALANCED_ACCURACY", "POSITIONS", "StudyRule", "block_features", "in_family", "log10"]

POSITIONS = ("in", "hidden", "out")
FEATURES_PER_BLOCK = ("log_lambda_max", "log_trace_per_param", "neg_mass", "effective_rank_fraction",
                      "spectral_entropy", "log_condition")
#: The evidence bar, declared before the study ran: a rule becomes a flag only if its leave-datasets-out
#: balanced accuracy (the mean of its true-positive and true-negative rates) reached this in the study.
MIN_BALANCED_ACCURACY = 0.8
_FLOOR = 1e-30


def log10(x: float) -> float:
    """log10 |x|, floored at 1e-30; NaN stays NaN."""
    return math.log10(max(abs(float(x)), _FLOOR)) if math.isfinite(float(x)) else math.nan


def block_features(table: Any) -> dict[str, float]:
    """The named features of a three-block layer-wise table (see the module docstring)."""
    rows = table.to_dict("records")
    if len(rows) != len(POSITIONS):
        raise ValueError(f"block features are defined for three blocks (input, hidden, output), got {len(rows)}")
    out: dict[str, float] = {}
    for pos, row in zip(POSITIONS, rows):
        n = row["n_params"]
        out.update({f"log_lambda_max_{pos}": log10(row["lambda_max"]),
                    f"log_trace_per_param_{pos}": log10(row["trace"] / n), f"neg_mass_{pos}": float(row["neg_mass"]),
                    f"effective_rank_fraction_{pos}": float(row["effective_rank"]) / n,
                    f"spectral_entropy_{pos}": float(row["spectral_entropy"]),
                    f"log_condition_{pos}": log10(row["condition"])})
    return out


def in_family(table: Any) -> bool:
    """Whether a layer-wise table is of the family the study's rules were learned on: three Linear blocks."""
    return len(table) == len(POSITIONS) and set(table["type"]) == {"Linear"}


@dataclass(frozen=True)
class StudyRule:
    """``flag`` when ``feature`` ``direction`` ``threshold`` on a three-Linear-block table, learned by a study."""

    flag: str
    feature: str
    direction: str  # ">" or "<"
    threshold: float
    balanced_accuracy: float  # leave-datasets-out, in the study
    source: str  # the command and file that printed the rule

    def __post_init__(self) -> None:
        if self.direction not in (">", "<"):
            raise ValueError(f"direction must be '>' or '<', got {self.direction!r}")

    def __call__(self, table: Any) -> list[tuple[str | None, str]]:
        if not in_family(table):
            return []  # outside the family the rule was learned on: no flag, and no claim either way
        value = block_features(table)[self.feature]
        hit = value > self.threshold if self.direction == ">" else value < self.threshold
        if not (math.isfinite(value) and hit):
            return []
        return [(None, f"{self.flag}: {self.feature} = {value:.3g} {self.direction} {self.threshold:.3g} (a rule learned "
                       f"by hesslens's layerwise study on two-hidden-layer MLPs, leave-datasets-out balanced accuracy "
                       f"{self.balanced_accuracy:.0%}; {self.source})")]
