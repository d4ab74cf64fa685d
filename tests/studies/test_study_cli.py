"""``hesslens study`` through click's CliRunner, and the demo study (``examples/demo_study.py``, loaded
by path as a user's study is) with its numbers against a dense reference."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from torch.nn import functional as F

from hesslens.loading import import_user_module
from hesslens.studies import get, names, register, unregister
from hesslens.studies.cli import study
from hesslens.studies import RunContext

from conftest import concatenated_objective, reference_hessian

from _toy_study import STUDY as TOY

TOY_SPEC = "_toy_study:STUDY"  # tests/studies is on sys.path under pytest's default import mode

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "demo_study.py"
DEMO_SPEC = f"{EXAMPLE}:STUDY"  # what `hesslens study examples/demo_study.py:STUDY` names, from anywhere
demo = import_user_module(str(EXAMPLE))  # the same module the CLI loads (a file is imported once)
DemoConfig, _digits, build_model, run_demo = demo.DemoConfig, demo._digits, demo.build_model, demo.run_demo


def invoke(*args):
    return CliRunner().invoke(study, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    result = invoke(DEMO_SPEC, "--preset", "smoke", "--out", out)
    assert result.exit_code == 0, result.output
    return out, result


def test_demo_smoke_runs_and_resumes(demo_out):
    out, result = demo_out
    assert "4 runs (4 done); ran 4" in result.output
    df = pd.read_csv(out / "results.csv")
    assert len(df) == 4 and set(df["status"]) == {"done"} and sorted(set(df["lr"])) == [0.05, 0.5]
    assert (df["two_over_lr"] == 2 / df["lr"]).all()
    again = invoke(DEMO_SPEC, "--out", out)
    assert again.exit_code == 0 and "ran 0, skipped 4 already finished" in again.output
    assert "demo" not in names()  # a study loaded from a file is not registered


@pytest.fixture
def one_thread():
    """A 310-parameter model: one thread is fastest, and far faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_demo_lambda_max_matches_the_dense_hessian_of_the_saved_model(tmp_path, one_thread):
    config = DemoConfig(lr=0.5, seed=3, hidden=4, steps=20, n_train=100)
    record, series = run_demo(config, RunContext(study="demo", run_key="k", attempt=1, out=tmp_path, seed=3))
    assert [s for s, k, _ in series] == [0, 5, 10, 15, 20] and series[-1][2] == record["train_loss"]
    model = build_model(config)
    model.load_state_dict(torch.load(tmp_path / "runs" / "k-seed3" / "model.pt", weights_only=True))
    model = model.double()
    x, y, x_test, y_test = _digits(config.n_train, config.seed)
    assert len(x) == 100 and len(x_test) == 1797 - 100
    objective = concatenated_objective(F.cross_entropy, [(x.double(), y)])
    with torch.no_grad():
        assert abs(record["train_loss"] - float(objective(lambda inp: model(inp)))) < 1e-5
    exact = float(torch.linalg.eigvalsh(reference_hessian(model, objective))[-1])
    # Lanczos at tol 1e-5 on the float32 model against float64 eigvalsh: agreement to ~1e-5 relative.
    assert abs(record["lambda_max"] - exact) <= 1e-4 * abs(exact), (record["lambda_max"], exact)
    assert record["two_over_lr"] == 2 / config.lr and not record["diverged"]


def test_demo_divergence(tmp_path):
    record, series = run_demo(DemoConfig(lr=100.0, activation="relu", hidden=4, steps=30, n_train=100))
    assert record["diverged"] is True and record["diverged_at_step"] >= 1
    assert record["train_loss"] != record["train_loss"] or record["train_loss"] > 1e3 * series[0][2]


def test_status_and_report(demo_out):
    out, _ = demo_out
    result = invoke(DEMO_SPEC, "--status", "--out", out)
    assert result.exit_code == 0 and "4/4 finished (4 done)" in result.output and "preset smoke" in result.output
    result = invoke(DEMO_SPEC, "--report", "--out", out)
    assert result.exit_code == 0, result.output
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2  # sharpness vs η, and the loss curves
    md = (out / "report.md").read_text()
    assert "Sharpness λ_max against the learning rate" in md and md.count("| done |") == 4


def test_listing_and_errors(tmp_path):
    listing = invoke()
    assert listing.exit_code == 0
    assert [line.split()[0] for line in listing.output.splitlines()[:3]] == ["hesd-type", "layerwise", "sharpness"]
    assert "demo" not in names() and "examples/demo_study.py:STUDY" in listing.output  # the demo is an example
    unknown = invoke("nope", "--out", tmp_path)
    assert unknown.exit_code == 2 and "unknown study 'nope'; known studies: hesd-type, layerwise, sharpness" in unknown.output
    bad_preset = invoke(DEMO_SPEC, "--preset", "huge", "--out", tmp_path)
    assert bad_preset.exit_code == 2 and "no preset 'huge'; known presets: full, smoke" in bad_preset.output
    misuse = invoke(DEMO_SPEC, "--status", "--executor", "pool", "--out", tmp_path)
    assert misuse.exit_code == 2 and "--executor" in misuse.output
    assert not (tmp_path / "study.sqlite").exists()


def test_user_study_by_module_path_with_grid_file_failures_and_parquet(tmp_path):
    pytest.importorskip("pyarrow", reason="pyarrow is optional")
    grid = tmp_path / "grid.toml"
    grid.write_text('[mine]\nx = [1.0, 2.0]\n\n[[broken]]\nx = 1.0\nmode = "fail"\n\n[bad]\nx = "one"\n')
    ok = invoke(TOY_SPEC, "--grid", grid, "--preset", "mine", "--out", tmp_path, "--parquet")
    assert ok.exit_code == 0, ok.output
    assert len(pd.read_parquet(tmp_path / "results.parquet")) == 2
    failed = invoke(TOY_SPEC, "--grid", grid, "--preset", "broken", "--out", tmp_path)
    assert failed.exit_code == 1 and "RuntimeError: toy failure at x=1.0" in failed.output
    assert "rerun the same command" in failed.output
    invalid = invoke(TOY_SPEC, "--grid", grid, "--preset", "bad", "--out", tmp_path)
    assert invalid.exit_code == 2 and "field 'x' = 'one' is not a number" in invalid.output
    conn = sqlite3.connect(tmp_path / "study.sqlite")
    try:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 3  # the invalid preset added nothing
    finally:
        conn.close()


def test_demo_by_module_name_is_the_same_study(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE.parent))
    assert get("demo_study:STUDY") is get(DEMO_SPEC) is demo.STUDY


def test_user_study_load_errors_say_what_went_wrong(tmp_path):
    (tmp_path / "raises_study.py").write_text("raise ValueError('broken on purpose')\n")
    (tmp_path / "needs_study.py").write_text("import no_such_dependency_qq\n")
    (tmp_path / "plain_study.py").write_text("STUDY = 42\n")
    cases = {
        f"{tmp_path / 'missing.py'}:STUDY": ["no such file", "missing.py", "from study"],
        "no_such_module_qq.sub:STUDY": ["cannot import module 'no_such_module_qq.sub'", "from study"],
        f"{tmp_path / 'raises_study.py'}:STUDY": ["raises_study.py", "raised ValueError: broken on purpose"],
        f"{tmp_path / 'needs_study.py'}:STUDY": ["raised ModuleNotFoundError", "no_such_dependency_qq"],
        f"{tmp_path / 'plain_study.py'}:NOPE": ["has no attribute 'NOPE'", "from study"],
        f"{tmp_path / 'plain_study.py'}:STUDY": ["is a int, not a hesslens.studies.Study"],
    }
    for spec, needles in cases.items():
        result = invoke(spec, "--out", tmp_path / "out")
        assert result.exit_code == 2, (spec, result.output)
        assert result.output.startswith("Error: ") and "Traceback" not in result.output, result.output
        for needle in needles:
            assert needle in result.output, (spec, needle, result.output)
    assert not (tmp_path / "out").exists()


def test_registry_register_and_lookup():
    from dataclasses import replace

    mine = register(replace(TOY, name="toy-registered"))
    try:
        assert "toy-registered" in names() and get("toy-registered") is mine
        with pytest.raises(Exception, match="already registered"):
            register(replace(TOY, name="toy-registered", run=lambda c: {}))
    finally:
        unregister("toy-registered")
    assert "toy-registered" not in names()
