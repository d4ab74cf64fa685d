"""The evidence-based layer-wise diagnoses: re-derived from the ``layerwise`` study's committed results.

Each rule of :data:`hesslens.analysis.layerwise.DIAGNOSTIC_RULES` must be exactly what the study's
leave-datasets-out stump fit prints for ``docs/studies/layerwise-results.csv`` and must meet the evidence bar
declared before the study; a rule reads the same features the study recorded, and applies only to
three-Linear-block tables.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import hesslens as hl
from hesslens.analysis import layer_features
from hesslens.analysis.layerwise import DIAGNOSTIC_RULES
from hesslens.models import mlp
from hesslens.studies.layerwise.report import stump_rules

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "studies" / "layerwise-results.csv"


def test_the_rules_are_the_studys_and_meet_the_declared_bar():
    fitted = stump_rules(pd.read_csv(RESULTS), folds=5).set_index("regime")
    kept = fitted[fitted["cv_balanced_accuracy"] >= layer_features.MIN_BALANCED_ACCURACY]
    assert len(DIAGNOSTIC_RULES) == len(kept)
    flags = {"over": "overfitting", "under": "under-parameterised"}
    for rule in DIAGNOSTIC_RULES:
        regime = next(r for r, word in flags.items() if word in rule.flag)
        row = kept.loc[regime]
        assert (rule.feature, rule.direction) == (row["feature"], row["direction"])
        assert rule.threshold == pytest.approx(row["threshold"], rel=1e-12)
        assert rule.balanced_accuracy == pytest.approx(row["cv_balanced_accuracy"], rel=1e-12)


def _table(width: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(64, 5, generator=g), torch.randint(0, 3, (64,), generator=g)
    return hl.layerwise(mlp(5, (width, width), 3, seed=seed), nn.CrossEntropyLoss(), (x, y), steps=10, probes=2,
                        trace_matvecs=4, progress=False)


def test_a_rule_reads_the_studys_features_and_flags_on_its_threshold():
    lw = _table(4)
    value = layer_features.block_features(lw.table)["log_trace_per_param_hidden"]
    row = lw.table.iloc[1]
    assert value == pytest.approx(np.log10(abs(row["trace"]) / row["n_params"]))
    for rule in DIAGNOSTIC_RULES:
        hit = value < rule.threshold if rule.direction == "<" else value > rule.threshold
        assert bool(rule(lw.table)) == hit
        moved = layer_features.StudyRule(rule.flag, rule.feature, rule.direction, value + (1 if rule.direction == "<"
                                         else -1), rule.balanced_accuracy, rule.source)
        (block, message), = moved(lw.table)
        assert block is None and rule.flag in message and "balanced accuracy" in message
    assert set(lw.diagnostics) == {d for rule in DIAGNOSTIC_RULES for d in rule(lw.table)}


def test_rules_say_nothing_outside_the_family_they_were_learned_on():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 5, generator=g), torch.randint(0, 3, (64,), generator=g)
    one_hidden = hl.layerwise(mlp(5, (4,), 3, seed=0), nn.CrossEntropyLoss(), (x, y), steps=10, probes=2,
                              trace_matvecs=4, progress=False)
    assert len(one_hidden.table) == 2
    for rule in DIAGNOSTIC_RULES:
        always = layer_features.StudyRule(rule.flag, rule.feature, ">", -np.inf, rule.balanced_accuracy, rule.source)
        assert always(one_hidden.table) == []
