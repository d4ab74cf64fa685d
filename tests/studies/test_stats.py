"""hesslens.studies.stats against SciPy, closed forms from tables, and simulated coverage.

The references are independent of the code under test: ``scipy.stats.ttest_1samp`` (its own interval
and one-sided p-values), Student-t critical values from printed tables, the closed-form t CDF for 3
degrees of freedom, Kendall's τ counted by hand, and coverage/size measured by seeded simulation.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sst

from hesslens.errors import InvalidInputError
from hesslens.studies.stats import (Interval, as_values, interaction_differences, kendall_tau, kendall_taus,
                                    mean_interval, paired_differences, tost)

finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False)
samples = st.lists(finite, min_size=2, max_size=12).filter(lambda v: np.ptp(v) > 1e-6)


# --- mean and t-interval -----------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(samples, st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_interval_matches_scipy_ttest(values, level):
    iv = mean_interval(values, level)
    ref = sst.ttest_1samp(values, 0.0).confidence_interval(level)
    assert iv.estimate == pytest.approx(np.mean(values), rel=1e-12, abs=1e-9)
    assert iv.low == pytest.approx(ref.low, rel=1e-9, abs=1e-9)
    assert iv.high == pytest.approx(ref.high, rel=1e-9, abs=1e-9)
    assert iv.n == len(values) and iv.level == level and iv.defined


def test_interval_against_printed_t_table():
    # 1..5: mean 3, s² = 10/4, se = √(2.5/5); t_{0.975,4} = 2.776 (any printed t-table).
    iv = mean_interval([1, 2, 3, 4, 5])
    half = 2.776 * math.sqrt(2.5 / 5)
    assert iv.estimate == 3.0
    assert iv.low == pytest.approx(3 - half, abs=2e-3) and iv.high == pytest.approx(3 + half, abs=2e-3)


@pytest.mark.parametrize("level,lo,hi", [(0.95, 0.93, 0.97), (0.5, 0.47, 0.53)])
def test_interval_coverage_by_simulation(level, lo, hi):
    # 2,000 normal samples of 5 seeds: the level-ℓ interval must cover the true mean ≈ ℓ of the time
    # (binomial sd ≈ 0.5 % at 95 %, 1.1 % at 50 %; the bands are ≥ 2.7 sd wide).
    rng = np.random.default_rng(12345)
    true_mean = 1.7
    draws = rng.normal(true_mean, 2.0, size=(2000, 5))
    covered = [(iv := mean_interval(row, level)).low <= true_mean <= iv.high for row in draws]
    assert lo <= np.mean(covered) <= hi


def test_interval_edge_cases():
    one = mean_interval([4.2])
    assert one.estimate == 4.2 and math.isnan(one.low) and math.isnan(one.high) and not one.defined
    assert one.n == 1
    flat = mean_interval([2.0, 2.0, 2.0])
    assert (flat.low, flat.estimate, flat.high) == (2.0, 2.0, 2.0)
    with pytest.raises(InvalidInputError, match="zero seeds"):
        mean_interval([])
    for bad in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(InvalidInputError, match="level"):
            mean_interval([1.0, 2.0], bad)


def test_interval_is_shift_equivariant_and_nested():
    x = np.array([0.3, 1.1, -0.4, 2.2, 0.9])
    a, b = mean_interval(x), mean_interval(x + 10.0)
    assert b.low == pytest.approx(a.low + 10) and b.high == pytest.approx(a.high + 10)
    n90, n95 = mean_interval(x, 0.9), mean_interval(x, 0.95)
    assert n95.low < n90.low < n90.estimate < n90.high < n95.high


def test_non_finite_values_are_refused_and_named():
    with pytest.raises(InvalidInputError, match=r"positions \[1, 3\]"):
        mean_interval([1.0, np.nan, 2.0, np.inf])
    with pytest.raises(InvalidInputError, match=r"labels \[7\]"):
        mean_interval(pd.Series([1.0, 2.0, np.nan], index=[3, 5, 7]))
    with pytest.raises(InvalidInputError, match="one-dimensional"):
        as_values(np.ones((2, 2)))
    with pytest.raises(InvalidInputError, match="numbers"):
        as_values(["a", "b"])


def test_interval_str_mentions_bounds_and_n():
    s = str(mean_interval([1.0, 2.0, 3.0]))
    assert "n = 3" in s and "95%" in s and "[" in s
    assert "undefined" in str(mean_interval([1.0]))
    assert isinstance(mean_interval([1.0, 2.0]), Interval)


# --- paired differences and interactions -------------------------------------------------------------

def test_paired_and_interaction_differences():
    a, b, c, d = [5.0, 6.0, 7.0], [1.0, 1.5, 3.0], [2.0, 2.0, 2.0], [1.0, 0.0, 2.5]
    np.testing.assert_array_equal(paired_differences(a, b), [4.0, 4.5, 4.0])
    np.testing.assert_array_equal(interaction_differences(a, b, c, d), [4.0 - 1.0, 4.5 - 2.0, 4.0 + 0.5])
    with pytest.raises(InvalidInputError, match="one value per seed"):
        paired_differences([1.0, 2.0], [1.0])
    with pytest.raises(InvalidInputError, match="arm b"):
        paired_differences([1.0, 2.0], [1.0, np.nan])


def test_pairing_removes_shared_seed_variance():
    # Seeds shift both arms by a large common amount: the paired interval is narrow, an unpaired
    # treatment of the same numbers would not exclude 0.
    rng = np.random.default_rng(7)
    base = rng.normal(0, 10, 8)
    a, b = base + 1.0 + rng.normal(0, 0.1, 8), base + rng.normal(0, 0.1, 8)
    paired = mean_interval(paired_differences(a, b))
    assert paired.low > 0.5 and paired.high < 1.5
    welch = sst.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert welch.low < 0 < welch.high


# --- Kendall τ ----------------------------------------------------------------------------------------

def test_kendall_tau_by_hand():
    # 1,2,3,4 vs 1,3,2,4: of 6 pairs, 5 concordant, 1 discordant → τ = 4/6.
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(2 / 3)
    # ties: x = 1,1,2 vs y = 1,2,3 → P = 2, Q = 0, one pair tied in x only → τ_b = 2/√(3·2).
    assert kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / math.sqrt(6))
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    np.testing.assert_allclose(kendall_taus([([1, 2, 3, 4], [1, 3, 2, 4]), ([1, 2], [2, 1])]), [2 / 3, -1.0])


def test_kendall_tau_refuses_undefined_cases():
    for x, y in (([1.0], [2.0]), ([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]), ([1.0, 2.0], [5.0, 5.0])):
        with pytest.raises(InvalidInputError, match="undefined"):
            kendall_tau(x, y)
    with pytest.raises(InvalidInputError, match="same length"):
        kendall_tau([1, 2, 3], [1, 2])
    with pytest.raises(InvalidInputError, match="non-finite"):
        kendall_tau([1, 2, np.nan], [1, 2, 3])


# --- TOST ---------------------------------------------------------------------------------------------

def _t3_cdf(t: float) -> float:
    """Closed-form CDF of Student's t with 3 degrees of freedom."""
    return 0.5 + (t / (math.sqrt(3) * (1 + t * t / 3)) + math.atan(t / math.sqrt(3))) / math.pi


def test_tost_by_hand():
    # 1,2,3,4: mean 2.5, se = √(5/3)/2; t_{0.95,3} = 2.353 so the 90 % interval is 2.5 ± 1.519.
    x = [1.0, 2.0, 3.0, 4.0]
    se = math.sqrt(5 / 3) / 2
    for m in (4.0, 4.1, 10.0):
        eq = tost(x, m)
        assert eq.p_lower == pytest.approx(1 - _t3_cdf((2.5 + m) / se), abs=1e-10)
        assert eq.p_upper == pytest.approx(_t3_cdf((2.5 - m) / se), abs=1e-10)
        assert eq.p == max(eq.p_lower, eq.p_upper)
        assert eq.interval.level == pytest.approx(0.90)
        assert eq.interval.high == pytest.approx(2.5 + 2.353 * se, abs=2e-3)
    assert not tost(x, 4.0).equivalent   # 90 % upper bound 4.02 > 4
    assert tost(x, 4.1).equivalent       # 4.02 < 4.1
    assert 0.05 < tost(x, 4.0).p_upper < 0.06 and tost(x, 4.1).p_upper < 0.05


@settings(max_examples=60, deadline=None)
@given(samples, st.floats(min_value=0.01, max_value=2e3))
def test_tost_matches_scipy_one_sided_tests_and_the_90_interval(values, margin):
    eq = tost(values, margin)
    p_l = sst.ttest_1samp(values, -margin, alternative="greater").pvalue
    p_u = sst.ttest_1samp(values, margin, alternative="less").pvalue
    assert eq.p_lower == pytest.approx(p_l, abs=1e-9) and eq.p_upper == pytest.approx(p_u, abs=1e-9)
    ci = eq.interval
    if min(abs(ci.low + margin), abs(ci.high - margin)) > 1e-9 * max(1.0, margin):  # off the boundary
        assert eq.equivalent == (-margin < ci.low and ci.high < margin)


def test_tost_size_and_power_by_simulation():
    # True mean exactly at the margin (H0 boundary) with a margin much wider than the standard error:
    # one test almost always rejects, so the size is ≈ α = 5 % (binomial sd 0.49 %, band ±1.5 %).
    rng = np.random.default_rng(2024)
    at_margin = rng.normal(3.0, 1.0, size=(2000, 10))
    size = np.mean([tost(row, 3.0).equivalent for row in at_margin])
    assert 0.035 <= size <= 0.065
    # True mean 0, margin 3 sd: equivalence is shown nearly always.
    at_zero = rng.normal(0.0, 1.0, size=(300, 10))
    assert np.mean([tost(row, 3.0).equivalent for row in at_zero]) > 0.99


def test_tost_edge_cases():
    assert tost([0.1, 0.1, 0.1], 1.0).equivalent          # zero spread inside the margin
    assert not tost([1.0, 1.0, 1.0], 1.0).equivalent      # zero spread on the margin
    assert not tost([2.0, 2.0], 1.0).equivalent
    one = tost([0.0], 1.0)
    assert not one.equivalent and math.isnan(one.p) and not one.interval.defined
    for bad in (0.0, -1.0, math.nan, math.inf, "1"):
        with pytest.raises(InvalidInputError, match="margin"):
            tost([0.0, 1.0], bad)
    with pytest.raises(InvalidInputError, match="alpha"):
        tost([0.0, 1.0], 1.0, alpha=0.5)
    with pytest.raises(InvalidInputError, match="non-finite"):
        tost([0.0, np.nan], 1.0)
