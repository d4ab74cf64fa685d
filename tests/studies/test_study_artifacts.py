"""Per-run artifacts: arrays, DataFrames and dicts stored with the record (inline and in pool workers),
read back for report hooks, exported as files, and never stored by a run that did not finish."""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from hesslens.errors import InvalidInputError
from hesslens.studies import ReportContent, RunContext, Store, render_report, run_key, run_study
from hesslens.studies.artifacts import decode, encode

from _toy_study import STUDY, ToyConfig


def expected(x: float, seed: int) -> dict:
    return {"density": np.linspace(0.0, x, 5) + seed,
            "layers": pd.DataFrame({"layer": ["fc1", "fc2"], "lambda_max": [x, x + seed + 0.5], "params": [10, 20],
                                    "frozen": [False, True]}),
            "summary": {"x": x, "seed": seed, "nested": {"values": [1, 2]}}}


def check_run(found: dict, x: float, seed: int) -> None:
    want = expected(x, seed)
    assert sorted(found) == ["density", "layers", "summary"]
    np.testing.assert_array_equal(found["density"], want["density"])
    assert found["density"].dtype == np.float64
    pd.testing.assert_frame_equal(found["layers"], want["layers"], check_dtype=False)
    assert found["layers"]["params"].dtype.kind == "i" and found["layers"]["frozen"].dtype == bool
    summary = dict(found["summary"])
    assert math.isnan(summary.pop("nan")) and summary == want["summary"]


def artifact_count(out) -> int:
    conn = sqlite3.connect(out / "study.sqlite")
    try:
        return conn.execute("SELECT COUNT(*) FROM artifacts").fetchone()[0]
    finally:
        conn.close()


@pytest.mark.parametrize("executor, workers", [("inline", None), ("pool", 2)])
def test_artifacts_round_trip_and_are_exported(tmp_path, executor, workers):
    out = tmp_path / "out"
    summary = run_study(STUDY, {"x": [1.0, 2.0], "mode": "artifacts"}, out, seeds=2, executor=executor,
                        workers=workers, progress=False)
    assert summary.ok and summary.total == 4
    with Store(out / "study.sqlite") as store:
        for x in (1.0, 2.0):
            key = run_key(ToyConfig(x=x, mode="artifacts"))
            for seed in (0, 1):
                check_run(store.artifacts("toy", key, seed), x, seed)
        assert store.artifacts("toy", "no-such-run", 0) == {}
    # Exported with the results: one folder per (configuration, seed), one file per artifact.
    df = pd.read_csv(out / "results.csv")
    folders = sorted(p.name for p in (out / "artifacts").iterdir())
    assert folders == sorted(f"{k}-seed{s}" for k, s in zip(df["run_key"], df["seed"]))
    for k, s, x in zip(df["run_key"], df["seed"], df["x"]):
        folder = out / "artifacts" / f"{k}-seed{s}"
        assert sorted(p.name for p in folder.iterdir()) == ["density.npy", "layers.csv", "summary.json"]
        want = expected(x, s)
        np.testing.assert_array_equal(np.load(folder / "density.npy"), want["density"])
        pd.testing.assert_frame_equal(pd.read_csv(folder / "layers.csv"), want["layers"])
        assert json.loads((folder / "summary.json").read_text())["nested"] == {"values": [1, 2]}


def test_a_run_that_fails_or_dies_after_saving_stores_and_exports_nothing(tmp_path):
    out = tmp_path / "out"
    first = run_study(STUDY, [{"x": 1.0, "mode": "artifacts_then_fail"}, {"x": 2.0, "mode": "artifacts_then_exit"}],
                      out, executor="pool", workers=1, progress=False)
    assert first.counts["failed"] == 2
    assert artifact_count(out) == 0 and not (out / "artifacts").exists()


def test_an_interrupted_run_leaves_no_artifact_and_resumes_whole(tmp_path):
    out = tmp_path / "out"
    grid = [{"x": 1.0, "mode": "interrupt_once"}, {"x": 3.0, "mode": "artifacts"}]  # the second never starts
    with pytest.raises(KeyboardInterrupt):
        run_study(STUDY, grid, out, progress=False)
    with Store(out / "study.sqlite") as store:
        assert [r["status"] for r in store.runs("toy")] == ["pending", "pending"]  # handed back, nothing kept
    assert artifact_count(out) == 0 and not (out / "artifacts").exists()
    again = run_study(STUDY, grid, out, progress=False)
    assert again.ok and again.executed == 2
    with Store(out / "study.sqlite") as store:
        check_run(store.artifacts("toy", run_key(ToyConfig(x=1.0, mode="interrupt_once")), 0), 1.0, 0)
    assert artifact_count(out) == 6 and len(list((out / "artifacts").iterdir())) == 2


def test_a_retried_run_replaces_its_artifacts(tmp_path):
    with Store(tmp_path / "db.sqlite") as store:
        store.add_runs("s", None, [("k", 1, "{}")])
        store.claim("s", "k", 1)
        store.finish("s", "k", "done", seed=1, artifacts=[encode("a", np.arange(3)), encode("b", {"v": 1})])
        store.finish("s", "k", "done", seed=1, artifacts=[encode("a", np.arange(4))])
        found = store.artifacts("s", "k", 1)
        assert list(found) == ["a"] and found["a"].tolist() == [0, 1, 2, 3]
        store.finish("s", "k", "failed", seed=1, artifacts=[encode("a", np.arange(5))], error="boom")
        assert store.artifacts("s", "k", 1) == {}


def test_unstorable_artifacts_fail_the_run_with_a_clear_error(tmp_path):
    summary = run_study(STUDY, {"x": 1.0, "mode": "bad_artifact"}, tmp_path, progress=False)
    assert summary.counts["failed"] == 1
    assert "artifact 'values' is a list" in summary.failures[0][1]
    ctx = RunContext(study="s", run_key="k", attempt=1, out=tmp_path)
    for name, obj, needle in (("../up", np.zeros(2), "artifact name '../up' is not allowed"),
                              ("objs", np.array([object()]), "cannot be stored without pickling"),
                              ("d", {"f": open}, "not JSON-serialisable"),
                              ("t", 3.0, "an artifact is a NumPy array, a pandas DataFrame or a JSON-able dict")):
        with pytest.raises(InvalidInputError, match=needle):
            ctx.save_artifact(name, obj)
    assert ctx.saved_artifacts() == []


def test_a_torch_tensor_is_saved_as_an_array():
    import torch

    a = encode("w", torch.arange(6, dtype=torch.float32).reshape(2, 3))
    assert a.kind == "array" and decode(a.kind, a.data).tolist() == [[0, 1, 2], [3, 4, 5]]


def report_with_artifacts(df, out, series, artifacts):
    rows = []
    for _, r in df.sort_values(["x", "seed"]).iterrows():
        layers = artifacts(r["run_key"], r["seed"])["layers"]
        rows.append({"x": r["x"], "seed": r["seed"], "top_layer_lambda": float(layers["lambda_max"].max())})
    return ReportContent(tables={"From the artifacts": pd.DataFrame(rows)})


def test_a_report_hook_reads_the_artifacts(tmp_path):
    study = replace(STUDY, name="toy-artifacts", report=report_with_artifacts)
    run_study(study, {"x": [1.0, 2.0], "mode": "artifacts"}, tmp_path, seeds=2, progress=False)
    md = render_report(study, tmp_path).markdown.read_text()
    assert "## From the artifacts" in md
    for x, s in ((1.0, 0), (1.0, 1), (2.0, 0), (2.0, 1)):
        assert f"| {x:g} | {s} | {x + s + 0.5:g} |" in md


def test_a_dataframe_keeps_its_dtypes_index_and_exact_floats():
    df = pd.DataFrame({"n": [1, 2], "f": [0.1 + 0.2, np.nan], "s": ["a", None], "b": [True, False],
                       "t": pd.to_datetime(["2026-01-01", "2026-02-03 04:05"], format="ISO8601"),
                       "i": pd.array([1, None], dtype="Int64"), "c": pd.Categorical(["u", "v"])},
                      index=pd.Index([10, 20], name="step"))
    back = decode("table", encode("t", df).data)
    pd.testing.assert_frame_equal(back, df)
    assert back["f"].iloc[0] == 0.1 + 0.2  # bit for bit
    with pytest.raises(InvalidInputError, match="unique string column names"):
        encode("t", pd.DataFrame([[1, 2]], columns=["a", "a"]))
    with pytest.raises(InvalidInputError, match="reset_index"):
        encode("t", df.set_index("s", append=True))
    with pytest.raises(InvalidInputError, match="column 'o' holds a list"):
        encode("t", pd.DataFrame({"o": [[1], [2]]}))
