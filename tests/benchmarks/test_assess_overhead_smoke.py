"""``python -m benchmarks.assess_overhead`` runs end to end (one small run), and its table says what it measured."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not (ROOT / "benchmarks" / "assess_overhead.py").exists(),
                                reason="benchmarks/ not present")


def _run(analysis_parts, hesd, figure):
    eig, tr, sd = analysis_parts
    return {"train": 2.0, "operator": 0.5, "extreme_eigenvalues": eig, "trace": tr, "spectral_density": sd,
            "analysis": eig + tr + sd, "hesd": hesd, "figure": figure, "total": 5.0}


def test_table_gives_medians_spreads_and_per_run_ratios():
    from benchmarks.assess_overhead import table

    runs = [_run((0.25, 0.125, 0.625), 0.01, 0.25), _run((0.5, 0.25, 1.25), 0.01, 0.5),
            _run((0.25, 0.25, 0.5), 0.04, 0.25)]
    text = table(runs)
    lines = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines()[2:]}
    analysis = [r["analysis"] for r in runs]
    assert lines["analysis without the HESD step (eigenvalues + trace + SLQ)"].endswith(
        f"| {statistics.median(analysis):.3g} s | {min(analysis):.3g} s – {max(analysis):.3g} s |")
    ratios = [r["hesd"] / r["analysis"] for r in runs]  # 1 %, 0.5 %, 4 %: the median of the ratios, not of times
    assert lines["overhead: HESD step / analysis"].endswith(
        f"| {100 * statistics.median(ratios):.3g} % | {100 * min(ratios):.3g} % – {100 * max(ratios):.3g} % |")
    both = [(r["hesd"] + r["figure"]) / r["analysis"] for r in runs]
    assert f"| {100 * statistics.median(both):.3g} % |" in lines["overhead: HESD step + figure / analysis"]
    assert text.splitlines()[0] == "| quantity | median of 3 | min – max |" and len(text.splitlines()) == 2 + 12


def test_the_command_runs_the_default_analysis_and_prints_the_table():
    proc = subprocess.run([sys.executable, "-m", "benchmarks.assess_overhead", "--runs", "1", "--warmup", "0",
                           "--steps", "8", "--probes", "2", "--trace-matvecs", "30"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MPLBACKEND": "Agg"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "--steps=8 --probes=2 --trace-matvecs=30" in out and "| quantity | median of 1 | min – max |" in out
    step = re.search(r"\| overhead: HESD step / analysis \| ([0-9.e+-]+) % \|", out)
    assert step is not None and float(step.group(1)) >= 0
    assert re.search(r"\| HESD figure: `hesd.png` drawn and saved \| [0-9.e-]+ s \|", out)
    assert "median HESD step overhead" in out
