"""``python -m benchmarks.layerwise --quick`` runs end to end on the MLP, and its cross-checks hold.

One run with the peers as installed (hessian-eigenthings' part is checked only where it is importable)
and one with hessian-eigenthings made unimportable (``HESSLENS_BENCH_HIDE``), which must still time
both hesslens methods and mark the peer as unavailable. Settings are the quick preset's (200 samples,
6 steps × 2 probes per block, one thread): seconds, not a measurement.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not (ROOT / "benchmarks" / "layerwise.py").exists(), reason="benchmarks/ not present")


def _run(out: Path, *extra: str, env: dict | None = None) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.layerwise", "--quick", "--models", "mlp", "--threads", "1",
         "--out", str(out), *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"json": json.loads(out.read_text()), "stdout": proc.stdout, "md": out.with_suffix(".md").read_text()}


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> dict:
    return _run(tmp_path_factory.mktemp("layerwise") / "quick.json", "--repeats", "1")


def test_blocks_timings_and_product_counts(quick):
    r = quick["json"]["results"]["mlp"]
    assert [(b["name"], b["size"]) for b in r["blocks"]] == [("0", 4160), ("2", 4160), ("4", 650)]
    steps, probes = r["settings"]["steps"], r["settings"]["probes"]
    assert r["planned_matvecs"] == probes * sum(min(steps, b["size"]) for b in r["blocks"])
    for key in ("view", "loop"):
        m = r["methods"][key]
        assert m["matvecs"] == r["planned_matvecs"], (key, m)  # equal steps × probes per block
        assert m["first_seconds"] >= m["setup_seconds"] > 0
        assert len(m["repeats"]) == 1 and m["repeat_median"] > 0
        assert m["repeats"][0]["matvecs"] == r["planned_matvecs"]
    assert len(r["methods"]["loop"]["engines"]) == 3
    ratio = r["ratios"]["loop_repeat"]
    assert ratio["target"] == 2.0 and ratio["ratio"] == pytest.approx(
        r["methods"]["loop"]["repeat_median"] / r["methods"]["view"]["repeat_median"])
    assert ratio["met"] == (ratio["ratio"] >= 2.0)


def test_view_and_loop_compute_the_same_local_hessians(quick):
    checks = quick["json"]["results"]["mlp"]["checks"]
    # H_ii v through the padded view and through the block's own operator (float32 products)
    assert checks["summary"]["max_product_rel_diff_loop"] < 1e-5
    # block "0" starts at index 0: its rows of the whole operator's draw are the loop's own draw, so the
    # two densities are the same up to round-off; the other blocks' probes differ
    assert checks["summary"]["identical_probe_blocks"] == ["0"]
    assert checks["summary"]["max_nodes_rel_diff_identical_probes"] < 1e-5
    first = checks["blocks"][0]
    assert first["moments"]["view"]["trace"] == pytest.approx(first["moments"]["loop"]["trace"], rel=1e-5)
    assert "identical_probes" not in checks["blocks"][1]
    for row in checks["blocks"]:
        mv = row["moments"]["view"]
        assert mv["min_node"] <= mv["max_node"] and len(mv["trace_samples"]) == 2


def test_printed_tables(quick):
    out = quick["stdout"]
    assert "Command: `.venv/bin/python -m benchmarks.layerwise --quick --models mlp --threads 1" in out
    assert "## Summary" in out and "| mlp | 3 | 6 × 2 |" in out
    assert "| hesslens loop (one HessianOperator(params=block) per block) |" in out
    assert "| 0 ★ | 4,160 |" in out
    assert quick["md"].strip() == out.strip()


def test_eigenthings_per_block(quick):
    if importlib.util.find_spec("hessian_eigenthings") is None:
        pytest.skip("hessian-eigenthings is not installed (the optional `bench` extra)")
    r = quick["json"]["results"]["mlp"]
    m = r["methods"]["eigenthings"]
    assert "unavailable" not in m and "error" not in m, m
    assert m["matvecs"] == r["planned_matvecs"] and m["steps_per_block"] == [6, 6, 6]
    # its param_filter restricts its products to the block: the same H_ii v as hesslens's view
    assert r["checks"]["summary"]["max_product_rel_diff_eigenthings"] < 1e-5
    for row in r["checks"]["blocks"]:
        assert row["max_node_rel_diff_eigenthings"] < 0.5  # 6 Lanczos steps, other probes: roughly the same top
    assert "eigenthings-loop / view" in quick["stdout"]


def test_runs_without_the_peer(tmp_path):
    env = dict(os.environ, HESSLENS_BENCH_HIDE="hessian_eigenthings")
    run = _run(tmp_path / "hidden.json", "--repeats", "0", env=env)
    r = run["json"]["results"]["mlp"]
    assert "unavailable" in r["methods"]["eigenthings"]
    assert r["methods"]["view"]["matvecs"] == r["methods"]["loop"]["matvecs"] == r["planned_matvecs"]
    assert r["ratios"]["eigenthings_repeat"]["ratio"] is None and r["ratios"]["loop_first"]["ratio"] > 0
    assert "not installed" in run["stdout"]


def test_ticks_mark_the_issue_factors():
    from benchmarks.layerwise import _ratios

    results = {"view": {"repeat_median": 1.0, "first_seconds": 2.0},
               "loop": {"repeat_median": 2.5, "first_seconds": 3.0},
               "eigenthings": {"repeat_median": 2.9, "first_seconds": 6.0}}
    ratios = _ratios(results)
    assert ratios["loop_repeat"]["met"] and not ratios["loop_first"]["met"]  # 2.5× ≥ 2, 1.5× < 2
    assert not ratios["eigenthings_repeat"]["met"] and ratios["eigenthings_first"]["met"]  # 2.9× < 3, 3× ≥ 3
