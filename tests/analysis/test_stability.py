"""edge_of_stability against planted trajectories whose summary is known by construction."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hesslens.analysis import edge_of_stability
from hesslens.errors import InvalidInputError


def test_hovering_trajectory_is_summarised_after_first_reach():
    """Sharpening to 2/η at step 30, then hovering: the summary reads only the points from step 30."""
    lr = 0.2  # 2/η = 10
    lam = [2.0, 4.0, 8.0, 10.5, 9.5, 11.0, 10.0]
    r = edge_of_stability(np.arange(7) * 10, lam, lr)
    after = np.array(lam[3:]) * lr / 2
    assert r.reached and r.first_step == 30 and r.points_after == 4 and r.threshold == 10
    assert r.ratio_median == pytest.approx(np.median(after)) and r.ratio_min == pytest.approx(after.min())
    assert r.ratio_max == pytest.approx(after.max()) and r.fraction_at_or_above == pytest.approx(3 / 4)
    assert "median" in r.line() and "from step 30" in r.line()


def test_last_point_alone_would_mislead():
    """The last point sits below 2/η, but most of the trajectory after first reach is above it."""
    r = edge_of_stability([0, 1, 2, 3, 4, 5], [1, 10.2, 11, 12, 11.5, 9.0], lr=0.2)
    assert r.ratio_median > 1 and r.fraction_at_or_above == pytest.approx(4 / 5)


def test_never_reached_has_no_ratios():
    r = edge_of_stability([1, 2, 3], [1.0, 2.0, 3.0], lr=0.1)
    assert not r.reached and r.points_after == 0 and math.isnan(r.ratio_median) and math.isnan(r.first_step)
    assert "never reached" in r.line()


def test_reach_below_one_counts_near_misses():
    r = edge_of_stability([1, 2, 3], [1.0, 9.5, 9.6], lr=0.2, reach=0.9)
    assert r.reached and r.first_step == 2 and r.fraction_at_or_above == 0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0.01, 100.0), min_size=1, max_size=40), st.floats(0.001, 1.0))
def test_ratios_are_those_of_the_points_after_first_reach(lam, lr):
    r = edge_of_stability(range(len(lam)), lam, lr)
    ratio = np.array(lam) * lr / 2
    hits = np.flatnonzero(ratio >= 1)
    assert r.reached == bool(hits.size)
    if hits.size:
        after = ratio[hits[0]:]
        assert r.points_after == after.size and r.ratio_min == pytest.approx(after.min())
        assert r.ratio_q25 <= r.ratio_median <= r.ratio_q75 and r.ratio_min <= r.ratio_q25


@pytest.mark.parametrize("kwargs, message", [
    (dict(steps=[0, 1], lambda_max=[1.0], lr=0.1), "differ in length"),
    (dict(steps=[], lambda_max=[], lr=0.1), "empty"),
    (dict(steps=[0, 0], lambda_max=[1.0, 2.0], lr=0.1), "strictly increasing"),
    (dict(steps=[0, 1], lambda_max=[1.0, float("nan")], lr=0.1), r"lambda_max has non-finite values at positions \[1\]"),
    (dict(steps=[0, 1], lambda_max=[1.0, 2.0], lr=0.0), "lr must be a finite number > 0"),
    (dict(steps=[0, 1], lambda_max=[1.0, 2.0], lr=True), "lr must be"),
    (dict(steps=[0, 1], lambda_max=[1.0, 2.0], lr=0.1, reach=3), "reach must be"),
])
def test_bad_input_is_named(kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        edge_of_stability(**kwargs)
