"""The runner in-process: resume, failures and retries, divergence, results.csv, Parquet, status, report."""

from __future__ import annotations

import dataclasses

import math
import os
from collections import Counter

import pandas as pd
import pytest

from hesslens.errors import HesslensError, InvalidInputError
from hesslens.studies import ReportContent, Store, render_report, run_key, run_study, status
from hesslens.studies import export as export_module

from _toy_study import REPORTED, STUDY, ToyConfig, log_lines


def grid(log, **axes):
    return {"log": str(log), **axes}


def executions(log) -> Counter:
    return Counter(k for k, _, _ in log_lines(log))


def test_runs_everything_then_resumes_without_rerunning(tmp_path):
    log, out = tmp_path / "log", tmp_path / "out"
    summary = run_study(STUDY, grid(log, x=[0.0, 1.0, 2.0]), out, progress=False, seeds=2)
    assert summary.counts["done"] == 6 and summary.executed == 6 and summary.ok
    assert (out / "study.sqlite").exists()
    df = pd.read_csv(out / "results.csv")
    assert len(df) == 6 and set(df["status"]) == {"done"}
    # Config columns, then record columns, then metadata; the record matches the run function's formula.
    assert list(df.columns[:7]) == ["run_key", "seed", "x", "mode", "sleep", "log", "tags"]
    assert (df["y"] == df["x"] ** 2 + df["seed"]).all()
    assert sorted(zip(df["run_key"], df["seed"])) == sorted((run_key(ToyConfig(x=x, log=str(log))), s)
                                                            for x in (0.0, 1.0, 2.0) for s in (0, 1))
    again = run_study(STUDY, grid(log, x=[0.0, 1.0, 2.0]), out, progress=False, seeds=2)
    assert again.executed == 0 and again.skipped == 6
    assert set(executions(log).values()) == {1}
    # A larger grid sharing configurations only runs the new ones.
    bigger = run_study(STUDY, grid(log, x=[0.0, 1.0, 2.0, 3.0]), out, progress=False, seeds=2)
    assert bigger.executed == 2 and bigger.skipped == 6
    assert len(executions(log)) == 8 and set(executions(log).values()) == {1}
    with Store(out / "study.sqlite") as store:
        series = store.series("toy")
    assert len(series) == 8 * 3  # three points per run, written with the run


def test_failed_run_is_recorded_does_not_stop_others_and_is_retried(tmp_path):
    log, out = tmp_path / "log", tmp_path / "out"
    spec = [grid(log, x=[1.0, 2.0]), grid(log, x=3.0, mode="fail_once"), grid(log, x=4.0, mode="fail"),
            grid(log, x=5.0)]
    first = run_study(STUDY, spec, out, progress=False)
    assert first.counts == {"pending": 0, "running": 0, "done": 3, "failed": 2, "diverged": 0}
    assert not first.ok
    errors = dict(first.failures)
    assert errors[f"{run_key(ToyConfig(x=4.0, mode='fail', log=str(log)))} seed 0"] == \
        "RuntimeError: toy failure at x=4.0"
    with Store(out / "study.sqlite") as store:
        failed = [r for r in store.runs("toy") if r["status"] == "failed"]
    assert all("Traceback (most recent call last)" in r["error"] and "run_toy" in r["error"] for r in failed)
    assert len(pd.read_csv(out / "results.csv")) == 3  # failed runs are not results

    second = run_study(STUDY, spec, out, progress=False)
    assert second.executed == 2 and second.counts["done"] == 4 and second.counts["failed"] == 1
    runs = {r["x"]: r for r in status(STUDY, out).runs.to_dict("records")}
    assert runs[3.0]["status"] == "done" and runs[3.0]["attempts"] == 2
    assert runs[4.0]["status"] == "failed" and runs[4.0]["attempts"] == 2
    key = lambda x, mode="ok": run_key(ToyConfig(x=x, mode=mode, log=str(log)))  # noqa: E731
    assert executions(log) == Counter({key(1.0): 1, key(2.0): 1, key(3.0, "fail_once"): 2, key(4.0, "fail"): 2,
                                       key(5.0): 1})


def test_divergence_is_recorded_not_crashed(tmp_path):
    log, out = tmp_path / "log", tmp_path / "out"
    spec = [grid(log, x=1.0), grid(log, x=2.0, mode=["nan_loss", "flag", "raise_diverged"])]
    summary = run_study(STUDY, spec, out, progress=False)
    assert summary.counts["diverged"] == 3 and summary.counts["done"] == 1 and summary.ok
    df = pd.read_csv(out / "results.csv").set_index("mode")
    assert df.loc["nan_loss", "status"] == "diverged" and math.isnan(df.loc["nan_loss", "loss"])
    assert df.loc["flag", "status"] == "diverged"
    assert df.loc["raise_diverged", "status"] == "diverged" and df.loc["raise_diverged", "step"] == 7
    assert run_study(STUDY, spec, out, progress=False).executed == 0  # diverged is final: not rerun


def test_loss_keys_select_what_counts_as_divergence(tmp_path):
    from dataclasses import replace

    relaxed = replace(STUDY, name="toy-relaxed", loss_keys=("y",))
    summary = run_study(relaxed, {"x": 1.0, "mode": "nan_loss"}, tmp_path, progress=False)
    assert summary.counts["done"] == 1  # 'loss' is NaN, but only 'y' is watched


def test_bad_record_fails_with_a_clear_message(tmp_path):
    summary = run_study(STUDY, {"x": 1.0, "mode": "bad_record"}, tmp_path, progress=False)
    assert summary.counts["failed"] == 1
    assert "record entry 'values' is a list" in summary.failures[0][1]


def test_results_csv_is_refreshed_after_every_run(tmp_path):
    out = tmp_path / "out"
    run_study(STUDY, {"x": [0.0, 1.0, 2.0, 3.0], "mode": "check_csv"}, out, progress=False)
    df = pd.read_csv(out / "results.csv")
    # Run i (in grid order, inline) saw the rows of the i runs before it: written as each finished.
    assert list(df["csv_rows_seen"]) == [-1, 1, 2, 3]
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]


def test_interrupt_hands_claimed_runs_back(tmp_path, monkeypatch):
    out = tmp_path / "out"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(export_module.Store, "finish", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_study(STUDY, {"x": [1.0, 2.0]}, out, progress=False)
    monkeypatch.undo()
    assert status(STUDY, out).counts["pending"] == 2
    assert run_study(STUDY, {"x": [1.0, 2.0]}, out, progress=False).counts["done"] == 2


def test_parquet_export_and_its_missing_dependency(tmp_path, monkeypatch):
    pytest.importorskip("pyarrow", reason="pyarrow is optional")
    out = tmp_path / "out"
    run_study(STUDY, {"x": [1.0, 2.0]}, out, progress=False, parquet=True)
    table = pd.read_parquet(out / "results.parquet")
    csv = pd.read_csv(out / "results.csv")
    assert list(table.columns) == list(csv.columns) and list(table["run_key"]) == list(csv["run_key"])
    assert sorted(table["y"]) == [1.0, 4.0]
    series = pd.read_parquet(out / "series.parquet")
    assert len(series) == 6 and list(series.columns) == ["run_key", "seed", "step", "key", "value"]

    real = export_module.importlib.util.find_spec
    monkeypatch.setattr(export_module.importlib.util, "find_spec",
                        lambda name, *a: None if name == "pyarrow" else real(name, *a))
    with pytest.raises(HesslensError, match="pip install pyarrow"):
        run_study(STUDY, {"x": [7.0]}, tmp_path / "other", progress=False, parquet=True)
    assert not (tmp_path / "other").exists()  # refused before anything ran


def test_status_without_database_and_with_runs(tmp_path):
    empty = status(STUDY, tmp_path / "nothing")
    assert empty.total == 0 and "no runs recorded" in str(empty)
    assert not (tmp_path / "nothing").exists()
    run_study(STUDY, [{"x": [1.0, 2.0]}, {"x": 3.0, "mode": "fail"}], tmp_path, progress=False)
    st = status(STUDY, tmp_path)
    assert st.counts["done"] == 2 and st.counts["failed"] == 1
    text = str(st)
    assert "2/3 finished" in text and "RuntimeError: toy failure at x=3.0" in text


def test_default_report_and_report_hook(tmp_path):
    with pytest.raises(InvalidInputError, match="run `hesslens study toy` first"):
        render_report(STUDY, tmp_path / "none")
    run_study(STUDY, [{"x": [1.0, 2.0, 3.0]}, {"x": 4.0, "mode": "fail"}], tmp_path, progress=False)
    files = render_report(STUDY, tmp_path)
    md, page = files.markdown.read_text(), files.html.read_text()
    assert [t for t, _ in files.figures] == ["metrics against x"]
    assert files.figures[0][1].read_bytes().startswith(b"\x89PNG")
    assert "![metrics against x](figures/metrics.png)" in md
    assert md.count("| done |") == 3 and "## Failed runs" in md and "toy failure at x=4.0" in md
    assert page.count("data:image/png;base64,") == 1 and page.count("<td>done</td>") == 3

    out = tmp_path / "hooked"
    run_study(REPORTED, "smoke", out, progress=False)
    files = render_report(REPORTED, out)
    assert [t for t, _ in files.figures] == ["y against x"]
    assert "![y against x](figures/figure_01.png)" in files.markdown.read_text()


def test_report_hook_adds_tables_and_notes(tmp_path):
    def hook(df, out):
        best = df.nlargest(1, "y")[["x", "y"]]
        return ReportContent(figures=[], tables={"Best run": best}, notes={"Best run": "largest y", "Aside": "a | b"})

    study = dataclasses.replace(REPORTED, name="toy-tables", report=hook)
    run_study(study, "smoke", tmp_path, progress=False)
    files = render_report(study, tmp_path)
    md, page = files.markdown.read_text(), files.html.read_text()
    assert files.figures == []
    # Sections come before the runs table, in the hook's order, the table holding the hook's row.
    assert md.index("## Best run") < md.index("## Aside") < md.index("## Results")
    assert "| x | y |\n|---|---|\n| 3 | 9 |\n\nlargest y" in md
    assert "<h2>Best run</h2>" in page and "<td class=\"num\">9</td>" in page and "<p>a | b</p>" in page
