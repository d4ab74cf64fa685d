"""benchmarks.product_parity: every contender is timed in every round, and the table renders the ratio."""

from __future__ import annotations

import numpy as np

from benchmarks import product_parity


def test_one_model_times_every_contender_every_round_and_renders():
    row = product_parity.measure("mlp", rounds=3)
    seconds = row["seconds"]
    assert {"hesslens", "hesslens, 10 columns", "hesslens, float64 columns", "pyhessian_style"} <= set(seconds)
    assert all(len(v) == 3 and min(v) > 0 for v in seconds.values())
    line = product_parity.table({"mlp": row}).splitlines()[-1]
    assert line.startswith(f"| mlp | {row['engine']} |")
    peers = [np.asarray(seconds[k]) for k in ("pyhessian", "pyhessian_style") if k in seconds]
    ratio = float(np.median(np.min(peers, axis=0) / np.asarray(seconds["hesslens"])))
    assert f"| {ratio:.2f}× (" in line
