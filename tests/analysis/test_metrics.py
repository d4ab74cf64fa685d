"""hesslens.analysis.metrics: spectral metrics of a density against hand-computed values, NumPy formulas on
planted spectra (hypothesis), their invariances, the quadrature reading of SLQ densities, and edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hesslens.analysis import _stats, hesd
from hesslens.analysis.metrics import (DEFAULT_REL_TOL, Estimate, abs_stable_rank, condition, effective_rank,
                                       neg_mass, spectral_entropy, spectral_metrics, stable_rank)
from hesslens.errors import InvalidInputError
from hesslens.linalg.density import SpectralDensity


def exact(values):
    return SpectralDensity.from_spectrum(values)


def test_hand_computed_values():
    # eigenvalues 4, 1, −1, −0.25 (n = 4): P = 5, N = 1.25, tr = 3.75, tr|H| = 6.25
    d = exact([4.0, 1.0, -1.0, -0.25])
    assert neg_mass(d).value == pytest.approx(1.25 / 6.25, abs=1e-15)  # 0.2
    assert condition(d).value == pytest.approx(4 / 0.25, abs=1e-13)  # every |λ| > 1e-3 · 4 counts: 16
    assert condition(d, rel_tol=0.1).value == pytest.approx(4.0, abs=1e-14)  # 0.25 ≤ 0.4 is negligible now
    assert stable_rank(d).value == pytest.approx(3.75 / 4, abs=1e-15)
    assert abs_stable_rank(d).value == pytest.approx(6.25 / 4, abs=1e-15)
    # p = |λ| / 6.25 = 0.64, 0.16, 0.16, 0.04
    h = -(0.64 * math.log(0.64) + 2 * 0.16 * math.log(0.16) + 0.04 * math.log(0.04))
    assert effective_rank(d).value == pytest.approx(math.exp(h), rel=1e-14)
    assert spectral_entropy(d).value == pytest.approx(h / math.log(4), rel=1e-14)
    assert spectral_entropy(d, normalised=False).value == pytest.approx(h, rel=1e-14)
    # one run: no standard error, the value is the run's
    e = neg_mass(d)
    assert isinstance(e, Estimate) and math.isnan(e.stderr) and e.runs == (e.value,) and e.reason == ""
    assert float(e) == e.value and e.defined
    assert DEFAULT_REL_TOL == 1e-3
    assert set(spectral_metrics(d)) == {"neg_mass", "condition", "stable_rank", "stable_rank_abs", "effective_rank",
                                        "spectral_entropy"}


@pytest.mark.parametrize("n", [1, 2, 7])
@pytest.mark.parametrize("c", [0.3, 250.0])
def test_uniform_spectra(n, c):
    pos, neg = exact(np.full(n, c)), exact(np.full(n, -c))
    assert neg_mass(pos).value == 0.0 and neg_mass(neg).value == 1.0
    for d in (pos, neg):
        assert condition(d).value == 1.0
        assert abs_stable_rank(d).value == pytest.approx(n, rel=1e-14)
        assert effective_rank(d).value == pytest.approx(n, rel=1e-14)
        if n > 1:
            assert spectral_entropy(d).value == pytest.approx(1.0, rel=1e-14)
    assert stable_rank(pos).value == pytest.approx(n, rel=1e-14)
    s = stable_rank(neg)  # λ_max < 0: no rank to measure
    assert math.isnan(s.value) and "λ_max ≤ 0" in s.reason and not s.defined


def test_edge_cases():
    zero = exact(np.zeros(5))
    for f in (neg_mass, condition, abs_stable_rank, effective_rank, spectral_entropy):
        e = f(zero)
        assert math.isnan(e.value) and "every eigenvalue is zero" in e.reason
    assert "λ_max ≤ 0" in stable_rank(zero).reason
    one = exact([3.0])
    assert (neg_mass(one).value, condition(one).value, stable_rank(one).value, abs_stable_rank(one).value,
            effective_rank(one).value) == (0.0, 1.0, 1.0, 1.0, 1.0)
    assert math.isnan(spectral_entropy(one).value) and "log n = 0" in spectral_entropy(one).reason
    assert spectral_entropy(one, normalised=False).value == 0.0
    # a bare density without its dimension: the rank metrics need n and say so; the others do not
    bare = SpectralDensity([[3.0, -1.0]], [[0.5, 0.5]])
    assert neg_mass(bare).value == pytest.approx(0.25) and condition(bare).value == pytest.approx(3.0)
    for f in (stable_rank, abs_stable_rank, effective_rank, spectral_entropy):
        with pytest.raises(InvalidInputError, match="dimension"):
            f(bare)
    # negative-only: all mass negative, ranks of |H| still defined
    negative = exact([-1.0, -2.0, -4.0])
    assert neg_mass(negative).value == 1.0 and condition(negative).value == 4.0
    assert abs_stable_rank(negative).value == pytest.approx(7 / 4) and math.isnan(stable_rank(negative).value)
    # zeros below rel_tol are left out of the condition number, exactly zero ones with rel_tol = 0 too
    assert condition(exact([2.0, 1e-9, 0.0, 0.5])).value == pytest.approx(4.0)
    assert condition(exact([2.0, 1e-9, 0.0]), rel_tol=0.0).value == pytest.approx(2e9)


def test_several_runs_mean_stderr_and_undefined_runs():
    # run 0: nodes 2, −1 with weights 0.5 each; run 1: 1, 3 (0.25, 0.75); run 2: every live node is zero
    # (the weight-0 padding node 5 is not live)
    d = SpectralDensity([[2.0, -1.0], [1.0, 3.0], [0.0, 5.0]], [[0.5, 0.5], [0.25, 0.75], [1.0, 0.0]], dimension=4)
    m = neg_mass(d)
    assert m.runs[:2] == pytest.approx((0.5 / 1.5, 0.0)) and math.isnan(m.runs[2])
    assert m.value == pytest.approx(np.mean([1 / 3, 0.0]))
    assert m.stderr == pytest.approx(np.std([1 / 3, 0.0], ddof=1) / math.sqrt(2))
    assert m.reason == "1 of 3 probe runs: every eigenvalue is zero; left out of the mean"
    s = stable_rank(d)  # n Σ w θ / max θ per run: 4·0.5/2 = 1, 4·2.5/3
    assert s.runs[:2] == pytest.approx((1.0, 10 / 3))
    c = condition(d)
    assert c.runs[:2] == pytest.approx((2.0, 3.0))


def _naive_entropy(nodes, weights):
    """The entropy of the node masses p_k ∝ |θ_k| w_k (what effective_rank deliberately does not use)."""
    p = np.abs(nodes) * weights
    p = p[p > 0] / p.sum()
    return float(-(p * np.log(p)).sum())


def test_effective_rank_is_a_quadrature_functional():
    """Splitting a node into copies of the same total weight changes nothing; each node stands for n·w_k
    eigenvalues, so a two-node density of a flat spectrum of dimension 100 has effective rank 100."""
    flat = SpectralDensity([[2.0, 2.0 + 1e-300]], [[0.3, 0.7]], dimension=100)
    assert effective_rank(flat).value == pytest.approx(100.0, rel=1e-12)
    assert math.exp(_naive_entropy(flat.nodes[0], flat.weights[0])) < 2.0  # the node-mass entropy cannot exceed 2
    one = SpectralDensity([[1.0, -3.0, 0.5]], [[0.2, 0.5, 0.3]], dimension=50)
    split = SpectralDensity([[1.0, -3.0, -3.0, 0.5, 0.5]], [[0.2, 0.1, 0.4, 0.1, 0.2]], dimension=50)
    for f in (effective_rank, spectral_entropy, neg_mass, abs_stable_rank, stable_rank, condition):
        assert f(split).value == pytest.approx(f(one).value, rel=1e-13)


spectra = st.lists(st.floats(-50, 50, allow_nan=False).filter(lambda x: abs(x) > 1e-3), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None)
@given(spectra, st.floats(1e-2, 1e3))
def test_planted_spectra_match_numpy_and_their_invariances(values, scale):
    lam = np.array(values)
    n = len(lam)
    d = exact(lam)
    a = np.abs(lam)
    assert neg_mass(d).value == pytest.approx(a[lam < 0].sum() / a.sum(), rel=1e-12, abs=1e-15)
    assert condition(d).value == pytest.approx(a.max() / a[a > 1e-3 * a.max()].min(), rel=1e-12)
    if lam.max() > 0:
        assert stable_rank(d).value == pytest.approx(lam.sum() / lam.max(), rel=1e-10, abs=1e-10)
    assert abs_stable_rank(d).value == pytest.approx(a.sum() / a.max(), rel=1e-12)
    p = a / a.sum()
    h = float(-(p * np.log(p)).sum())
    assert effective_rank(d).value == pytest.approx(math.exp(h), rel=1e-10)
    if n > 1:
        assert spectral_entropy(d).value == pytest.approx(h / math.log(n), rel=1e-10, abs=1e-12)
    # 1 ≤ tr|H|/max|λ| ≤ effective rank ≤ n
    low, rank = abs_stable_rank(d).value, effective_rank(d).value
    assert 1 - 1e-12 <= low <= rank * (1 + 1e-12) and rank <= n * (1 + 1e-12)
    # invariances: every metric under positive scaling; all but neg_mass and stable_rank under −1 as well
    up, flipped = exact(lam * scale), exact(-lam * scale)
    for f in (neg_mass, condition, stable_rank, abs_stable_rank, effective_rank, spectral_entropy):
        x, y = f(d).value, f(up).value
        assert (math.isnan(x) and math.isnan(y)) or y == pytest.approx(x, rel=1e-9, abs=1e-12)
    for f in (condition, abs_stable_rank, effective_rank, spectral_entropy):
        x, y = f(d).value, f(flipped).value
        assert (math.isnan(x) and math.isnan(y)) or y == pytest.approx(x, rel=1e-9, abs=1e-12)
    assert neg_mass(flipped).value == pytest.approx(1 - neg_mass(d).value, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(1, 12), st.integers(12, 500), st.integers(0, 2**32 - 1))
def test_slq_like_densities_stay_in_their_ranges(probes, steps, n, seed):
    """Any (nodes, weights) rows: neg_mass ∈ [0, 1], condition ≥ 1, abs_stable_rank ≤ effective_rank ≤ n,
    normalised entropy ≤ 1, run by run."""
    rng = np.random.default_rng(seed)
    nodes = rng.standard_normal((probes, steps)) * 10.0 ** rng.uniform(-3, 3, (probes, steps))
    weights = rng.dirichlet(np.ones(steps), size=probes)
    d = SpectralDensity(nodes, weights, dimension=n)
    m = spectral_metrics(d)
    assert all(0 <= x <= 1 for x in m["neg_mass"].runs) and all(x >= 1 for x in m["condition"].runs)
    for low, rank in zip(m["stable_rank_abs"].runs, m["effective_rank"].runs):
        assert low <= rank * (1 + 1e-12) and rank <= n * (1 + 1e-12)
    assert all(x <= 1 + 1e-12 for x in m["spectral_entropy"].runs)
    assert m["neg_mass"].value == pytest.approx(np.mean(m["neg_mass"].runs))


def test_bad_inputs():
    d = exact([1.0, 2.0])
    for f in (neg_mass, condition, stable_rank, abs_stable_rank, effective_rank, spectral_entropy, spectral_metrics):
        with pytest.raises(InvalidInputError, match="SpectralDensity"):
            f(np.array([1.0, 2.0]))
    for bad in (-0.1, 1.0, True, "0.1", float("nan")):
        with pytest.raises(InvalidInputError, match="rel_tol"):
            condition(d, rel_tol=bad)


def test_the_mean_and_standard_error_helper_is_shared():
    assert hesd._mean_se is _stats._mean_se
    mean, se = _stats._mean_se(np.array([1.0, 2.0, 4.0]))
    assert mean == pytest.approx(7 / 3) and se == pytest.approx(np.std([1, 2, 4], ddof=1) / math.sqrt(3))
    assert math.isnan(_stats._mean_se(np.array([3.0]))[1]) and all(map(math.isnan, _stats._mean_se(np.array([]))))
