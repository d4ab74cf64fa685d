"""hesslens.assess and hesslens.compare: type first, criteria only where valid, ranking and correlations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

import hesslens as hl
from hesslens.errors import InvalidInputError
from hesslens.linalg.density import SpectralDensity


def exact(values):
    return SpectralDensity.from_spectrum(values)


def test_mp_density_gets_applicable_criteria_and_a_verdict_to_act_on():
    a = hl.assess(exact([4.0, 1.0, -1.0, -0.25]), label="m")
    assert a.hesd_type.kind == "MP" and a.applicable and a.warnings == ()
    assert a.criteria.re == pytest.approx(0.25) and a.criteria.kh == pytest.approx(0.5)
    assert "criteria apply" in a.verdict and "re = 0.25" in a.verdict and a.label == "m"


def test_mn_density_gets_no_criteria_and_says_why():
    a = hl.assess(exact([0.5, -2.0, -3.0]))
    assert a.hesd_type.kind == "MN" and a.criteria is None and not a.applicable
    assert "do not apply" in a.verdict


def test_qs_density_gets_criteria_flagged_unreliable():
    lam = np.array([1.3, 0.4, -0.05]) * 1e-6
    a = hl.assess(exact(lam))
    assert a.hesd_type.kind == "QS" and a.criteria is not None and not a.applicable
    assert "unreliable" in a.verdict and any("unreliable" in w for w in a.warnings)
    # relative to a reference checkpoint too
    b = hl.assess(exact(lam * 1e3), reference=exact(lam * 1e6))
    assert b.hesd_type.kind == "QS"


def test_weak_type_and_undefined_criteria_are_warned():
    weak = hl.assess(exact([1.0, -0.9]))
    assert weak.hesd_type.kind == "MP" and any("weakly" in w for w in weak.warnings)
    # two MP runs and one run without a positive node (its weight-0 node does not count): C > 0
    mixed = SpectralDensity(np.array([[2.0, -0.1], [2.0, -0.1], [-0.5, 1.0]]),
                            np.array([[0.5, 0.5], [0.5, 0.5], [1.0, 0.0]]))
    a = hl.assess(mixed, margin=0.0)
    assert a.hesd_type.kind == "MP" and a.criteria.undefined == 1
    assert any("no positive" in w for w in a.warnings)


def test_assess_a_model_leaves_it_as_it_was_and_matches_the_density_route():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)).double()
    x, y = torch.randn(40, 5, dtype=torch.float64), torch.randint(0, 3, (40,))
    before = [p.detach().clone() for p in model.parameters()]
    model.train()
    a = hl.assess(model, torch.nn.CrossEntropyLoss(), (x, y), steps=30, probes=4, seed=2, progress=False)
    assert model.training and all(torch.equal(p, q) for p, q in zip(model.parameters(), before))
    op = hl.HessianOperator(model, torch.nn.CrossEntropyLoss(), (x, y))
    again = hl.assess(hl.spectral_density(op, steps=30, probes=4, seed=2, progress=False))
    assert a.hesd_type.balance == pytest.approx(again.hesd_type.balance, rel=1e-10)
    assert a.density.probes == 4


@pytest.mark.parametrize("call,match", [
    (lambda: hl.assess(torch.nn.Linear(2, 1)), "needs loss_fn and data"),
    (lambda: hl.assess(exact([1.0, -1.0]), torch.nn.MSELoss()), "needs no loss_fn"),
    (lambda: hl.compare([]), "non-empty"),
    (lambda: hl.compare([object()]), "Assessments"),
    (lambda: hl.compare([hl.assess(exact([1.0, -0.1]))], accuracies=[0.5, 0.6]), "2 values for 1"),
    (lambda: hl.compare([hl.assess(exact([1.0, -0.1]))], accuracies=[float("nan")]), "finite"),
])
def test_bad_input_is_refused(call, match):
    with pytest.raises(InvalidInputError, match=match):
        call()


def test_compare_ranks_by_kh_and_correlates_over_applicable_assessments_only():
    spectra = {"a": [4.0, 1.0, -0.1], "b": [4.0, 1.0, -1.0], "c": [4.0, 1.0, -2.0], "d": [4.0, 0.5, -0.3, -0.01],
               "mn": [0.1, -3.0, -4.0]}
    acc = {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.85, "mn": 0.99}
    items = [hl.assess(exact(v), label=k) for k, v in spectra.items()]
    cmp = hl.compare(items, accuracies=[acc[k] for k in spectra])
    t = cmp.table
    applicable = t[t["applicable"]]
    assert list(applicable["kh"]) == sorted(applicable["kh"]) and list(applicable["rank"]) == [1, 2, 3, 4]
    assert t.iloc[-1]["label"] == "mn" and t.iloc[-1]["type"] == "MN" and math.isnan(t.iloc[-1]["kh"])
    assert "mn" in cmp.note
    ok = applicable
    for crit in ("re", "kh"):
        row = cmp.correlations.set_index("criterion").loc[crit]
        k = stats.kendalltau(ok[crit], ok["accuracy"])
        s = stats.spearmanr(ok[crit], ok["accuracy"])
        assert row["runs"] == 4
        assert row["kendall_tau"] == pytest.approx(k.statistic) and row["kendall_p"] == pytest.approx(k.pvalue)
        assert row["spearman_rho"] == pytest.approx(s.statistic) and row["spearman_p"] == pytest.approx(s.pvalue)
    # planted: a larger negative part, lower accuracy — Kh falls as accuracy rises
    assert cmp.correlations.set_index("criterion").loc["kh", "kendall_tau"] < 0


def test_compare_without_accuracies_or_with_too_few_applicable():
    items = [hl.assess(exact([2.0, -0.5]), label="x"), hl.assess(exact([0.1, -5.0]), label="y")]
    assert hl.compare(items).correlations.empty
    few = hl.compare(items, accuracies=[0.7, 0.8])
    assert few.correlations["kendall_tau"].isna().all() and "≥ 3" in few.note
