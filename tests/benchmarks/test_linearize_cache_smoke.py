"""benchmarks.linearize_cache: the steps it reports exist and the table renders them."""

from __future__ import annotations

import sys

import pytest

from benchmarks import linearize_cache


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmRSS and VmHWM are Linux's")
def test_one_model_reports_every_step_and_a_growth_over_double_backward():
    row = linearize_cache.measure("mlp")
    steps = ["double_backward", "first_linearisation", "first_dropped", "first_trimmed", "second_linearisation"]
    assert all(row[f"{s}_rss"] > 0 and row[f"{s}_hwm"] >= row[f"{s}_rss"] - 1 for s in steps)
    assert row["saved_mb"] > 0
    assert row["first_linearisation_hwm"] >= row["double_backward_hwm"]  # the peak never falls
    assert row["replayed_nodes"] > 0 and row["writes_out_of_place"] >= 0
    text = linearize_cache.table({"mlp": row})
    assert text.count("\n") == 2 and text.splitlines()[-1].startswith("| mlp |")
