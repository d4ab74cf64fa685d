"""hesslens.analysis.hesd: re, Kh and the HESD type against hand-computed values, exact spectra,
planted spectra (hypothesis) and SLQ on small operators and a small trained model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hesslens as hl
from hesslens.errors import InvalidInputError
from hesslens.linalg.density import SpectralDensity


def exact(values):
    return SpectralDensity.from_spectrum(values)


def test_hand_computed_values():
    # eigenvalues 4, 1, −1, −0.25, weight 1/4 each:
    # re = |−1/4| = 0.25; Kh = (√(1/4) + √(1/16)) / (√1 + √(1/4)) = 0.75 / 1.5 = 0.5;
    # P = 5/4, N = 5/16, C = (P − N)/(P + N) = (15/16)/(25/16) = 0.6
    d = exact([4.0, 1.0, -1.0, -0.25])
    c = hl.hesd_criteria(d)
    assert c.re == pytest.approx(0.25, abs=1e-15) and c.kh == pytest.approx(0.5, abs=1e-15)
    assert c.undefined == 0 and c.defined and c.reason == ""
    t = hl.hesd_type(d)
    assert (t.kind, t.decisive) == ("MP", True) and t.balance == pytest.approx(0.6, abs=1e-15)
    assert t.scale == 4.0 and "C = +0.600" in t.reason
    # n = 1: Kh is the ratio of the negative and positive first moments, N/P = 0.25
    assert hl.hesd_criteria(d, n=1.0).kh == pytest.approx(0.25, abs=1e-15)


spectra = st.lists(st.floats(-50, 50, allow_nan=False).filter(lambda x: abs(x) > 1e-3), min_size=2, max_size=30)


@settings(max_examples=60, deadline=None)
@given(spectra, st.floats(0.05, 0.95), st.floats(1e-2, 1e3))
def test_planted_spectra_match_the_formulas_and_their_invariances(values, n, scale):
    lam = np.array(values)
    d = exact(lam)
    pos, neg = lam[lam > 0], lam[lam < 0]
    w = 1.0 / len(lam)
    crit = hl.hesd_criteria(d, n=n)
    if len(pos) == 0:
        assert not crit.defined and crit.undefined == 1 and "undefined" in crit.reason
    else:
        assert crit.re == pytest.approx(abs(lam.min() / lam.max()), rel=1e-12)
        expected_kh = np.sum((np.abs(neg) * w) ** n) / np.sum((pos * w) ** n)
        assert crit.kh == pytest.approx(expected_kh, rel=1e-12, abs=1e-300)
        # both are invariant under a positive rescaling of the spectrum
        scaled = hl.hesd_criteria(exact(lam * scale), n=n)
        assert scaled.re == pytest.approx(crit.re, rel=1e-9) and scaled.kh == pytest.approx(crit.kh, rel=1e-9)
    t = hl.hesd_type(d, qs_floor=0.0)
    c = (pos.sum() - np.abs(neg).sum()) / np.abs(lam).sum()
    assert t.balance == pytest.approx(c, rel=1e-12, abs=1e-12)
    assert t.kind == ("MP" if c >= 0 else "MN") and t.decisive == (abs(c) >= 0.2)
    flipped = hl.hesd_type(exact(-lam), qs_floor=0.0)
    assert flipped.balance == pytest.approx(-c, rel=1e-12, abs=1e-12)
    if abs(c) > 1e-9:
        assert flipped.kind != t.kind


def test_zero_nodes_and_padding_are_left_out():
    base = exact([3.0, 0.5, -0.2])
    with_zeros = exact([3.0, 0.5, 0.0, -0.2, 0.0])
    for key in ("re", "kh"):
        assert getattr(hl.hesd_criteria(with_zeros), key) == pytest.approx(getattr(hl.hesd_criteria(base), key))
    # nodes within zero_tol count as zero
    tiny = exact([3.0, 0.5, -1e-9, -0.2])
    assert hl.hesd_criteria(tiny, zero_tol=1e-6).re == pytest.approx(hl.hesd_criteria(base).re)
    # a weight-0 padding node never enters
    padded = SpectralDensity(np.array([[3.0, 0.5, -0.2, -100.0]]), np.array([[0.4, 0.3, 0.3, 0.0]]))
    assert hl.hesd_criteria(padded).re == pytest.approx(0.2 / 3.0)


def test_runs_without_a_positive_node_are_reported_not_divided_by():
    two = SpectralDensity(np.array([[2.0, -1.0], [-3.0, -1.0]]), np.array([[0.5, 0.5], [0.5, 0.5]]))
    c = hl.hesd_criteria(two)
    assert c.undefined == 1 and math.isnan(c.re_runs[1]) and math.isnan(c.kh_runs[1])
    assert c.re == pytest.approx(0.5) and c.kh == pytest.approx(1.0 / math.sqrt(2.0))
    assert "1 of 2" in c.reason and "left out" in c.reason
    none = hl.hesd_criteria(exact([-2.0, -1.0]))
    assert math.isnan(none.re) and math.isnan(none.kh) and not none.defined and "undefined" in none.reason
    assert hl.hesd_type(exact([-2.0, -1.0])).kind == "MN"


def test_quasi_singular_by_absolute_floor_and_by_reference():
    lam = np.array([1.3, 0.4, 0.1, -0.05])
    assert hl.hesd_type(exact(lam)).kind == "MP"
    collapsed = exact(lam * 1e-5)  # the balance C is unchanged: only the scale collapsed
    t = hl.hesd_type(collapsed)
    assert t.kind == "QS" and "below the floor" in t.reason
    assert t.balance == pytest.approx(hl.hesd_type(exact(lam)).balance)
    mid = exact(lam * 1e-3)  # above the default floor, yet 1/1000 of the reference's scale
    assert hl.hesd_type(mid).kind == "MP"
    r = hl.hesd_type(mid, reference=exact(lam))
    assert r.kind == "QS" and r.reference_scale == pytest.approx(1.3) and "reference" in r.reason
    assert hl.hesd_type(mid, reference=1.3, qs_relative=1e-4).kind == "MP"
    assert hl.hesd_type(exact([0.0, 0.0])).kind == "QS"


def test_weak_balance_is_reported_as_not_decisive():
    t = hl.hesd_type(exact([1.0, -0.9]))
    assert t.kind == "MP" and not t.decisive and "weakly" in t.reason
    assert hl.hesd_type(exact([1.0, -0.9]), margin=0.0).decisive


@pytest.mark.parametrize("call,match", [
    (lambda: hl.hesd_criteria(np.array([1.0, 2.0])), "SpectralDensity"),
    (lambda: hl.hesd_criteria(exact([1.0, -1.0]), n=0), "n must be"),
    (lambda: hl.hesd_criteria(exact([1.0, -1.0]), n=-0.5), "n must be"),
    (lambda: hl.hesd_criteria(exact([1.0, -1.0]), n=float("nan")), "n must be"),
    (lambda: hl.hesd_criteria(exact([1.0, -1.0]), zero_tol=-1), "zero_tol"),
    (lambda: hl.hesd_type(exact([1.0, -1.0]), margin=1.5), "margin"),
    (lambda: hl.hesd_type(exact([1.0, -1.0]), qs_floor=-1), "qs_floor"),
    (lambda: hl.hesd_type(exact([1.0, -1.0]), reference=0.0), "reference"),
    (lambda: hl.hesd_type(exact([1.0, -1.0]), reference="big"), "SpectralDensity"),
])
def test_bad_input_is_refused_naming_it(call, match):
    with pytest.raises(InvalidInputError, match=match):
        call()


def test_slq_with_full_steps_finds_the_exact_extremes_of_a_diagonal_operator():
    lam = np.array([5.0, 2.0, 0.7, 0.1, -0.3, -1.2, 3.3, -0.05])
    A = torch.diag(torch.tensor(lam, dtype=torch.float64))
    sd = hl.spectral_density(A, steps=len(lam), probes=6, seed=3, progress=False)
    crit, ref = hl.hesd_criteria(sd), hl.hesd_criteria(exact(lam))
    # every probe's nodes are the eigenvalues (distinct, every probe component non-zero): re per run is exact
    np.testing.assert_allclose(crit.re_runs, ref.re, rtol=1e-9)
    assert hl.hesd_type(sd).kind == hl.hesd_type(exact(lam)).kind == "MP"


def test_slq_type_agrees_with_the_exact_spectrum_on_a_trained_model():
    data = hl.datasets.load("digits", seed=0)
    from hesslens.models import mlp

    model = mlp(64, (12,), 10, seed=0)
    hl.train(model, data, "sgd", batch_size=64, lr=0.1, epochs=5, seed=1, progress=False)
    x, y = torch.as_tensor(data.x_train[:256]), torch.as_tensor(data.y_train[:256])
    op = hl.HessianOperator(model, torch.nn.CrossEntropyLoss(), (x, y))
    eigs = hl.exact_spectrum(op)
    sd = hl.spectral_density(op, steps=80, probes=8, seed=0, progress=False)
    t_exact, t_slq = hl.hesd_type(exact(eigs)), hl.hesd_type(sd)
    assert t_exact.kind == t_slq.kind == "MP" and t_exact.decisive
    # the balance estimates tr(H)/tr|H|: SLQ's mean is within a few standard errors of the exact value
    assert abs(t_slq.balance - t_exact.balance) < max(4 * t_slq.balance_stderr, 0.05)
    # (exact) eigenvalues of both signs: the criteria are defined and re ≤ 1 after ordinary training
    c = hl.hesd_criteria(exact(eigs))
    assert c.defined and 0 < c.re < 1
