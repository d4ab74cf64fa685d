"""The benchmark harness runs end to end on a machine without the peer libraries.

``python -m benchmarks.run --preset smoke`` on the MLP, with the three peers made unimportable
(``HESSLENS_BENCH_HIDE``), must still produce hesslens's and the PyHessian-style loop's rows, mark
the peers as unavailable, and the two rows that ran must describe the same Hessian.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PEER_MODULES = "hessian_eigenthings,curvlinops,pyhessian"

pytestmark = pytest.mark.skipif(not (ROOT / "benchmarks" / "run.py").exists(), reason="benchmarks/ not present")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "smoke.json"
    env = dict(os.environ, HESSLENS_BENCH_HIDE=PEER_MODULES)
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--preset", "smoke", "--models", "mlp", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {"json": json.loads(out.read_text()), "stdout": proc.stdout}


def test_peers_are_optional(smoke):
    rows = {r["library"]: r for r in smoke["json"]["results"]["mlp"]}
    for peer in ("eigenthings", "curvlinops", "pyhessian"):
        assert "unavailable" in rows[peer], rows[peer]
    for mine in ("hesslens", "pyhessian_style"):
        assert "setup_seconds" in rows[mine], rows[mine]
    assert "## Summary" in smoke["stdout"] and "| hesslens |" in smoke["stdout"]


def test_rows_measure_the_same_hessian(smoke):
    rows = {r["library"]: r for r in smoke["json"]["results"]["mlp"]}
    hl, loop = rows["hesslens"], rows["pyhessian_style"]
    # vᵀHv from hesslens's engine and from a plain kept-graph double backward (float32 products)
    assert hl["check"]["vHv"] == pytest.approx(loop["check"]["vHv"], rel=1e-4)
    settings = smoke["json"]["settings"]["mlp"]
    assert hl["slq"]["matvecs"] == settings["steps"] * settings["probes"]
    # Ritz values lie inside the spectrum: no SLQ node above the converged λ_max
    ref = hl["lambda_reference"]["value"]
    assert hl["lambda_reference"]["converged"]
    for r in (hl, loop):
        assert r["slq"]["max_node"] <= ref * (1 + 1e-5)
    # the λ_max sweep ends within its tolerance of the reference, and eigsh on the same operator too
    for key in ("lambda_max", "lambda_max_eigsh"):
        lm = hl[key]
        assert lm["reached"], lm
        assert abs(lm["value"] - ref) <= settings["lambda_rtol"] * abs(ref)


def test_compare_prints_hesslens_rows_of_two_runs(smoke, tmp_path):
    """benchmarks.compare reads two runs' JSON; a run against itself gives ratios of exactly 1."""
    from benchmarks.compare import table

    path = tmp_path / "run.json"
    path.write_text(json.dumps(smoke["json"]))
    text = table(path, path, ("a", "b"))
    row = next(line for line in text.splitlines() if line.startswith("| mlp |"))
    hl = {r["library"]: r for r in smoke["json"]["results"]["mlp"]}["hesslens"]
    assert row.count("1.00×") == 2 and hl["engine"] in row


def test_trace_to_accuracy_runs_against_hesslens_reference(smoke):
    """hesslens computes the reference trace, run.py passes it on, and every row with a trace
    estimator sweeps to the target; the table and the summary show the equal-accuracy column and row."""
    from benchmarks.measure import trace_seeds_at

    rows = {r["library"]: r for r in smoke["json"]["results"]["mlp"]}
    settings = smoke["json"]["settings"]["mlp"]
    hl = rows["hesslens"]
    ref = hl["trace_reference"]
    assert not ref["exact"] and ref["products"] == settings["trace_reference_matvecs"]  # the smoke preset's estimate
    assert 0 < ref["stderr"] < abs(ref["value"])
    assert settings["trace_ref"] == ref["value"]  # handed on to the other libraries
    acc = hl["trace_accuracy"]
    assert acc["reference"] == ref["value"] and acc["rtol"] == settings["trace_rtol"]
    grid = [t["products"] for t in acc["tried"]]
    assert grid == [6, 12, 24, 48][: len(grid)]
    for t in acc["tried"]:  # more seeds at small counts, to spend trace_level_matvecs products there
        seeds = trace_seeds_at(t["products"], settings["trace_seeds"], settings["trace_level_matvecs"])
        assert len(t["values"]) == t["seeds"] == seeds >= settings["trace_seeds"]
        rel = [(v - ref["value"]) / abs(ref["value"]) for v in t["values"]]
        assert t["rms_rel_error"] == pytest.approx((sum(e * e for e in rel) / len(rel)) ** 0.5)
    assert acc["tried"][0]["seeds"] > settings["trace_seeds"]
    if acc["reached"]:  # the first count meeting the target, none before it
        assert acc["products"] == grid[-1] and acc["rms_rel_error"] <= settings["trace_rtol"]
        assert all(t["rms_rel_error"] > settings["trace_rtol"] for t in acc["tried"][:-1])
    assert "trace_accuracy" not in rows["pyhessian_style"]  # no trace estimator there
    out = smoke["stdout"]
    assert "trace to 5% RMS error: time / products" in out and "| mlp | trace time to 5% (equal accuracy) |" in out
    assert "reference trace = " in out and "an estimate itself" in out and "NOT well below" not in out
