"""`hesslens analyze`: the default model end to end (a real subprocess), the --model/--checkpoint/--data
path against a torch.func.hessian reference, and the errors a user meets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import hesslens as hl
from hesslens.cli import cli
from hesslens.defaults import default_problem
from hesslens.report import SCHEMA, load_summary
from hesslens.report.html import fmt

from conftest import concatenated_objective, reference_hessian

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FAST = ["--steps", "12", "--probes", "3", "--trace-matvecs", "30", "--quiet"]


# -- the embedded default, through the installed console script ------------------------------------
@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("default") / "report"
    script = Path(sys.executable).with_name("hesslens")
    proc = subprocess.run([str(script), "analyze", "--out", str(out), "--steps", "20", "--probes", "3"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return out, proc


@pytest.fixture(scope="module")
def default_reference():
    """The default problem rebuilt in this process (training is deterministic) and its exact spectrum."""
    problem = default_problem()
    op = hl.HessianOperator(problem.model, problem.loss_fn, problem.data)
    return problem, hl.exact_spectrum(op)


def test_default_summary_schema_and_consistency(default_run):
    out, _ = default_run
    d = json.loads((out / "summary.json").read_text())
    assert d["schema"] == SCHEMA
    for key in ("lambda_max", "lambda_min", "trace", "density", "settings", "engine", "timings", "model", "data"):
        assert key in d
    s = load_summary(out)
    assert s.lambda_min["value"] <= s.lambda_max["value"]
    assert s.lambda_max["converged"] and s.lambda_min["converged"]
    assert np.isfinite(s.trace["estimate"]) and s.trace["stderr"] >= 0
    sd = s.spectral_density
    assert sd.weights.shape == (3, 20)
    np.testing.assert_allclose(sd.weights.sum(axis=1), 1.0, atol=1e-12)
    assert s.settings | {"steps": 20, "probes": 3, "seed": 0, "mode": "eval", "loss": "cross_entropy"} == s.settings
    assert s.engine["name"] and s.timings["total"] > 0 and s.model["test_accuracy"] > 0.9


def test_analyze_under_torchrun_matches_one_process(default_run, tmp_path):
    """Two ranks on loopback (gloo), each analysing its half of the default data: rank 0 writes the one
    report, and its numbers are the single-process run's to rounding."""
    out = tmp_path / "report"
    torchrun = Path(sys.executable).with_name("torchrun")
    proc = subprocess.run([str(torchrun), "--standalone", "--nproc-per-node", "2", "--no-python",
                           str(Path(sys.executable).with_name("hesslens")), "analyze", "--out", str(out),
                           "--steps", "20", "--probes", "3"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("report.html") == 1  # one summary, printed by rank 0
    one, two = load_summary(default_run[0]), load_summary(out)
    assert two.settings["world_size"] == 2 and two.data["shards"] == [[719, 1], [719, 1]]
    assert two.data["samples"] == one.data["samples"] == 1438
    for a, b in [(one.lambda_max, two.lambda_max), (one.lambda_min, two.lambda_min)]:
        assert b["value"] == pytest.approx(a["value"], rel=1e-5)
    assert two.trace["estimate"] == pytest.approx(one.trace["estimate"], rel=1e-5)
    assert two.data["loss_value"] == pytest.approx(one.data["loss_value"], rel=1e-6)
    np.testing.assert_allclose(two.spectral_density.nodes, one.spectral_density.nodes, rtol=1e-4, atol=1e-6)
    assert [r["block"] for r in two.layerwise["table"]] == [r["block"] for r in one.layerwise["table"]]


def test_default_lambdas_match_the_exact_spectrum_of_the_rebuilt_model(default_run, default_reference):
    out, _ = default_run
    problem, exact = default_reference
    s = load_summary(out)
    assert s.model["analysed_parameters"] == len(exact) == sum(p.numel() for p in problem.model.parameters())
    assert abs(s.lambda_max["value"] - exact[-1]) <= 1e-4 * abs(exact[-1])
    assert abs(s.lambda_min["value"] - exact[0]) <= 1e-4 * abs(exact[-1])
    # the trace estimate is consistent with the exact trace
    assert abs(s.trace["estimate"] - exact.sum()) <= 4 * s.trace["stderr"] + 1e-8 * abs(exact.sum())
    # the saved checkpoint is the model that was analysed
    saved = torch.load(out / "model.pt", weights_only=True)
    for name, value in problem.model.state_dict().items():
        torch.testing.assert_close(saved[name], value, rtol=1e-10, atol=1e-12)


def test_default_figure_html_and_printed_table(default_run):
    out, proc = default_run
    s = load_summary(out)
    assert (out / "density.png").read_bytes().startswith(PNG_SIGNATURE)
    assert (out / "hesd.png").read_bytes().startswith(PNG_SIGNATURE)
    assert (out / "layerwise.png").read_bytes().startswith(PNG_SIGNATURE)
    assert sorted(p.name for p in out.iterdir()) == ["density.png", "hesd.png", "layerwise.png", "model.pt",
                                                     "report.html", "summary.json"]
    page = (out / "report.html").read_text(encoding="utf-8")
    for number in (s.lambda_max["value"], s.lambda_min["value"], s.trace["estimate"]):
        assert fmt(number) in page
    assert s.engine["name"] in page and "data:image/png;base64," in page
    for word in ("lambda_max", "lambda_min", "trace", "layerwise", "engine", str(out / "report.html")):
        assert word in proc.stdout
    assert "Traceback" not in proc.stderr


def test_default_layerwise_table_is_that_of_the_rebuilt_model(default_run, default_reference):
    """The default report's layer-wise table: the blocks of the analysed model (0 and 2, weight and bias
    together), timed, in the settings; exact blocks agree with the dense Hessian's diagonal blocks."""
    out, proc = default_run
    problem, _ = default_reference
    s = load_summary(out)
    lw = s.layerwise
    assert s.settings["layerwise"] is True and s.timings["layerwise"] > 0
    assert [(r["block"], r["type"], r["n_params"]) for r in lw["table"]] == [("0", "Linear", 1040), ("2", "Linear", 170)]
    assert lw["settings"]["seed"] == 0 and lw["settings"]["steps"] <= 20 and lw["settings"]["probes"] <= 3
    op = hl.HessianOperator(problem.model, problem.loss_fn, problem.data)
    dense, view = op.dense(), hl.blocks(op)
    assert lw["ranges"] == [[list(r) for r in ranges] for ranges in view.ranges]
    for row, name, ((a, b),) in zip(lw["table"], view.names, view.ranges):
        assert row["block"] == name
        exact = torch.linalg.eigvalsh(dense[a:b, a:b])  # the diagonal block H_ii of the dense Hessian
        scale = float(exact.abs().max())
        assert abs(row["lambda_max"] - float(exact[-1])) <= 1e-3 * scale
        assert abs(row["trace"] - float(exact.sum())) <= 4 * row["trace_stderr"] + 1e-8 * scale
    assert len([ln for ln in proc.stdout.splitlines() if ln.strip().startswith("layerwise")]) == 1


def test_reanalysing_the_saved_checkpoint_gives_the_same_numbers(default_run, tmp_path):
    out, _ = default_run
    first = load_summary(out)
    args = ["analyze", "--out", str(tmp_path), "--model", "hesslens.defaults:build_model",
            "--checkpoint", str(out / "model.pt"), "--data", "hesslens.defaults:analysis_data",
            "--steps", "20", "--probes", "3", "--quiet"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    again = load_summary(tmp_path)
    assert again.lambda_max["value"] == pytest.approx(first.lambda_max["value"], rel=1e-8)
    assert again.trace["estimate"] == pytest.approx(first.trace["estimate"], rel=1e-8)
    np.testing.assert_allclose(again.spectral_density.nodes, first.spectral_density.nodes, rtol=1e-6, atol=1e-10)


# -- the user's own model ---------------------------------------------------------------------------
USER_MODULE = '''
import torch
from torch import nn


def make():
    return nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double()


def batches():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(30, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (30,), generator=g)
    return [(x[:18], y[:18]), (x[18:], y[18:])]


def regression():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(25, 5, generator=g, dtype=torch.float64)
    return x, torch.randn(25, 3, generator=g, dtype=torch.float64)


def with_nan():
    x, y = batches()[0]
    x = x.clone()
    x[3, 2] = float("nan")
    return x, y


def not_a_model():
    return 42


MODEL = make().train()
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A fresh user module in tmp_path (unique name: no stale sys.modules entry)."""
    name = f"hl_user_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


@pytest.fixture
def checkpoint(tmp_path, user_module):
    """A state_dict with weights unlike any fresh initialisation (so ignoring it would show)."""
    mod = __import__(user_module)
    model = mod.make()
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(1.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)
    return path, model


def _exact(model: nn.Module, loss_fn: nn.Module, batches) -> np.ndarray:
    return torch.linalg.eigvalsh(reference_hessian(model, concatenated_objective(loss_fn, batches))).numpy()


def test_user_model_checkpoint_and_data(tmp_path, user_module, checkpoint):
    path, model = checkpoint
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["analyze", "--out", str(out), "--model", f"{user_module}:make",
                                      "--checkpoint", str(path), "--data", f"{user_module}:batches", *FAST])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(out / "report.html")  # --quiet: only the report path
    s = load_summary(out)
    exact = _exact(model, nn.CrossEntropyLoss(), __import__(user_module).batches())
    scale = np.abs(exact).max()
    assert abs(s.lambda_max["value"] - exact[-1]) <= 1e-6 * scale
    assert abs(s.lambda_min["value"] - exact[0]) <= 1e-6 * scale
    assert abs(s.trace["estimate"] - exact.sum()) <= 4 * s.trace["stderr"] + 1e-10 * scale
    assert s.data["samples"] == 30 and s.data["batches"] == 2 and s.model["checkpoint"] == str(path)
    assert not (out / "model.pt").exists()


def test_user_model_with_mse_loss(tmp_path, user_module, checkpoint):
    path, model = checkpoint
    result = CliRunner().invoke(cli, ["analyze", "--out", str(tmp_path / "o"), "--model", f"{user_module}:make",
                                      "--checkpoint", str(path), "--data", f"{user_module}:regression",
                                      "--loss", "mse", *FAST])
    assert result.exit_code == 0, result.output
    s = load_summary(tmp_path / "o")
    exact = _exact(model, nn.MSELoss(), [__import__(user_module).regression()])
    assert abs(s.lambda_max["value"] - exact[-1]) <= 1e-6 * np.abs(exact).max()
    assert s.settings["loss"] == "mse"
    # The engine fallback MSE forces is one plain note, not a UserWarning with a source line.
    assert "note: the linearize engine is not used for this model" in result.stderr
    assert "UserWarning" not in result.stderr and "engines.py" not in result.stderr


def test_user_module_object_is_left_unchanged(tmp_path, user_module):
    mod = __import__(user_module)
    before = {k: v.clone() for k, v in mod.MODEL.state_dict().items()}
    result = CliRunner().invoke(cli, ["analyze", "--out", str(tmp_path / "o"), "--model", f"{user_module}:MODEL",
                                      "--data", f"{user_module}:batches", *FAST])
    assert result.exit_code == 0, result.output
    assert mod.MODEL.training
    assert all(torch.equal(before[k], v) for k, v in mod.MODEL.state_dict().items())
    assert all(p.grad is None for p in mod.MODEL.parameters())


def test_model_given_as_a_file_path(tmp_path, user_module):
    file = tmp_path / f"{user_module}.py"
    result = CliRunner().invoke(cli, ["analyze", "--out", str(tmp_path / "o"), "--model", f"{file}:make",
                                      "--data", f"{file}:batches", *FAST])
    assert result.exit_code == 0, result.output


# -- errors ------------------------------------------------------------------------------------------
def _fails(args: list[str], *needles: str, code: int = 2) -> str:
    result = CliRunner().invoke(cli, ["analyze", *args])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and not isinstance(result.exception, (TypeError, AttributeError))
    for needle in needles:
        assert needle in result.output, result.output
    return result.output


def test_model_without_data_is_a_usage_error(user_module):
    _fails(["--model", f"{user_module}:make"], "--data")


@pytest.mark.parametrize("option", ["--data", "--checkpoint"])
def test_data_or_checkpoint_without_model_is_a_usage_error(option, tmp_path):
    (tmp_path / "w.pt").write_bytes(b"")
    value = str(tmp_path / "w.pt") if option == "--checkpoint" else "x:y"
    _fails([option, value], option, "--model")


def test_loss_without_model_is_a_usage_error():
    _fails(["--loss", "mse"], "--loss")


def test_unimportable_module_is_named():
    _fails(["--model", "no_such_module_qq:make", "--data", "no_such_module_qq:data"], "no_such_module_qq", "--model")


def test_missing_attribute_is_named(user_module):
    _fails(["--model", f"{user_module}:nope", "--data", f"{user_module}:batches"], "'nope'", user_module)


def test_spec_without_colon(user_module):
    _fails(["--model", user_module, "--data", f"{user_module}:batches"], "module:attribute")


def test_missing_file_is_named(tmp_path):
    missing = tmp_path / "nowhere.py"
    _fails(["--model", f"{missing}:make", "--data", f"{missing}:batches"], "no such file", "nowhere.py", "--model")


def test_missing_dotted_attribute_says_which_part(user_module):
    _fails(["--model", f"{user_module}:MODEL.nope", "--data", f"{user_module}:batches"],
           "'MODEL.nope'", "'MODEL' has no attribute 'nope'")


@pytest.mark.parametrize("as_file", [False, True], ids=["module", "file"])
def test_an_import_that_raises_inside_the_users_module_is_named(tmp_path, monkeypatch, as_file):
    name = f"hl_broken_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text("x = 1\nraise ZeroDivisionError('boom in user code')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = str(tmp_path / f"{name}.py") if as_file else name
    output = _fails(["--model", f"{module}:make", "--data", f"{module}:batches"],
                    "--model", f"importing '{module}'", "raised ZeroDivisionError: boom in user code")
    assert "cannot import module" not in output and name not in sys.modules  # a failed import leaves nothing


def test_a_missing_dependency_of_the_users_module_is_not_a_missing_module(tmp_path, monkeypatch):
    name = f"hl_needs_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text("import no_such_dependency_qq\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    output = _fails(["--model", f"{name}:make", "--data", f"{name}:batches"],
                    f"importing '{name}'", "raised ModuleNotFoundError", "'no_such_dependency_qq'")
    assert "cannot import module" not in output


def test_loader_imports_a_file_once_and_its_functions_pickle(tmp_path):
    import pickle

    from hesslens.loading import ObjectLoadError, import_user_module, load_object

    name = f"hl_file_{uuid.uuid4().hex[:10]}"
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / f"{name}_helper.py").write_text("VALUE = 7\n")
    (tmp_path / "sub" / f"{name}.py").write_text(f"from {name}_helper import VALUE\n\ndef f():\n    return VALUE\n")
    file = tmp_path / "sub" / f"{name}.py"
    try:
        f = load_object(f"{file}:f")
        assert f() == 7  # its folder is on sys.path: neighbours import
        assert load_object(f"{file}:f") is f and import_user_module(str(file)) is sys.modules[name]
        assert pickle.loads(pickle.dumps(f)) is f  # by reference, as the pool and Ray executors need
        for spec, kind in [("no_colon", "spec"), (f"{file}:", "spec"), (f"{tmp_path}/x.py:f", "not_found"),
                           ("no_such_module_qq:f", "not_found"), (f"{file}:g", "attribute")]:
            with pytest.raises(ObjectLoadError) as info:
                load_object(spec, "--thing")
            assert info.value.kind == kind and "--thing" in str(info.value)
    finally:
        sys.modules.pop(name, None)
        sys.modules.pop(f"{name}_helper", None)
        while str(tmp_path / "sub") in sys.path:
            sys.path.remove(str(tmp_path / "sub"))


def test_factory_must_return_a_module(user_module):
    _fails(["--model", f"{user_module}:not_a_model", "--data", f"{user_module}:batches"], "int", "nn.Module")


def test_checkpoint_that_does_not_fit(tmp_path, user_module):
    torch.save({"weight": torch.zeros(2)}, tmp_path / "bad.pt")
    _fails(["--model", f"{user_module}:make", "--checkpoint", str(tmp_path / "bad.pt"),
            "--data", f"{user_module}:batches"], "--checkpoint", "bad.pt")


def test_hesslens_errors_are_one_line_with_status_2(user_module, tmp_path):
    output = _fails(["--out", str(tmp_path / "o"), "--model", f"{user_module}:make", "--data", f"{user_module}:with_nan",
                     "--quiet"], "NaN", "batch 0")
    assert len(output.strip().splitlines()) == 1 and output.startswith("Error: ")


@pytest.mark.filterwarnings("ignore:Using a target size")
def test_model_data_and_loss_that_do_not_fit_are_one_line(user_module, tmp_path):
    # class labels with --loss mse: the loss cannot be evaluated; the message names what was combined
    output = _fails(["--out", str(tmp_path / "o"), "--model", f"{user_module}:make", "--data", f"{user_module}:batches",
                     "--loss", "mse", "--quiet"], "mse loss", f"{user_module}:make", "HESSLENS_TRACEBACK", code=1)
    assert len(output.strip().splitlines()) == 1


def test_summary_records_the_command_that_repeats_it(tmp_path, user_module):
    out = tmp_path / "o"
    args = ["--model", f"{user_module}:make", "--data", f"{user_module}:batches", "--seed", "3", *FAST]
    assert CliRunner().invoke(cli, ["analyze", "--out", str(out), *args]).exit_code == 0
    command = load_summary(out).settings["command"]
    assert command.startswith("hesslens analyze --model") and "--seed 3" in command and "--steps 12" in command


def test_layerwise_table_equals_hl_layerwise_on_the_same_model_and_data(tmp_path, user_module, checkpoint):
    """--layerwise (the default): summary.json's table is hl.layerwise of the analysed model on the analysis
    data with the settings it records; layerwise.png is in the folder and the page has the section."""
    path, model = checkpoint
    out = tmp_path / "o"
    args = ["analyze", "--out", str(out), "--model", f"{user_module}:make", "--checkpoint", str(path),
            "--data", f"{user_module}:batches", *[a for a in FAST if a != "--quiet"]]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    s = load_summary(out)
    assert s.settings["layerwise"] is True and s.settings["command"].endswith("--layerwise")
    lw = s.layerwise
    options = {k: lw["settings"][k] for k in ("steps", "probes", "seed", "trace_matvecs", "exact_below", "tol")}
    assert (options["steps"], options["probes"], options["seed"], options["trace_matvecs"]) == (12, 3, 0, 30)
    op = hl.HessianOperator(model, nn.CrossEntropyLoss(), __import__(user_module).batches())
    direct = hl.layerwise(op, **options, progress=False).table
    assert [r["block"] for r in lw["table"]] == direct["block"].tolist() == ["0", "2"]
    for column in ("n_params", "exact", "hesd_type", "warnings", "parameters"):
        assert [r[column] for r in lw["table"]] == direct[column].tolist()
    for column in ("lambda_max", "lambda_min", "trace", "neg_mass", "condition", "effective_rank", "kh"):
        np.testing.assert_allclose([r[column] for r in lw["table"]], direct[column], rtol=1e-7, atol=1e-12)
    assert (out / "layerwise.png").read_bytes().startswith(PNG_SIGNATURE)
    assert "Layer-wise (local) Hessians" in (out / "report.html").read_text(encoding="utf-8")
    (line,) = [ln for ln in result.output.splitlines() if ln.strip().startswith("layerwise")]
    assert "2 blocks (2 exact)" in line


def test_no_layerwise_omits_the_table_and_its_figure(tmp_path, user_module):
    out = tmp_path / "o"
    args = ["analyze", "--out", str(out), "--model", f"{user_module}:make", "--data", f"{user_module}:batches",
            "--no-layerwise", *[a for a in FAST if a != "--quiet"]]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    s = load_summary(out)
    assert s.layerwise == {} and s.settings["layerwise"] is False and "layerwise" not in s.timings
    assert s.settings["command"].endswith("--no-layerwise")
    assert "layerwise" not in json.loads((out / "summary.json").read_text())
    assert sorted(_files(out)) == ["density.png", "hesd.png", "report.html", "summary.json"]
    assert "Layer-wise (local) Hessians" not in (out / "report.html").read_text(encoding="utf-8")
    assert not [ln for ln in result.output.splitlines() if ln.strip().startswith("layerwise")]
    # the same folder takes a report with the table again, and then without it again: no stale figure
    assert CliRunner().invoke(cli, [a for a in args if a != "--no-layerwise"]).exit_code == 0
    assert "layerwise.png" in _files(out)
    assert CliRunner().invoke(cli, args).exit_code == 0
    assert "layerwise.png" not in _files(out)


def test_version_and_help():
    runner = CliRunner()
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0 and hl.__version__ in result.output
    result = runner.invoke(cli, ["analyze", "--help"])
    for option in ("--out", "--model", "--checkpoint", "--data", "--loss", "--mode", "--steps", "--probes",
                   "--seed", "--tol", "--layerwise / --no-layerwise", "--quiet"):
        assert option in result.output
    assert "layerwise.png" in result.output


# -- bad values and the report folder: refused before any computation, the old report kept ------------
@pytest.fixture
def no_computation(monkeypatch):
    """Fail the test if the analysis (training the default model, or the analysis proper) starts."""
    import hesslens.defaults
    import hesslens.report

    def started(*args, **kwargs):
        raise AssertionError("the computation started")

    monkeypatch.setattr(hesslens.defaults, "default_problem", started)
    monkeypatch.setattr(hesslens.report, "analyze_operator", started)


@pytest.mark.parametrize("option, value, needle", [
    ("--seed", "1e23", "'1e23' is not a valid integer"),
    ("--seed", str(10**23), "not in the range 0<=x<=9223372036854775807"),
    ("--seed", "-1", "not in the range"),
    ("--tol", "inf", "inf is not in the range 0<x<1"),
    ("--tol", "nan", "'nan' is not a finite number"),
    ("--tol", "0", "not in the range 0<x<1"),
    ("--tol", "1", "not in the range 0<x<1"),
    ("--steps", "0", "not in the range x>=1"),
    ("--probes", "-3", "not in the range x>=1"),
    ("--trace-matvecs", "5", "not in the range x>=6"),
])
def test_bad_values_are_usage_errors_naming_the_option(option, value, needle, tmp_path, no_computation):
    output = _fails(["--out", str(tmp_path / "r"), option, value], f"Invalid value for '{option}'", needle)
    assert not (tmp_path / "r").exists()
    assert "Usage:" in output


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_symlink_inside_out_is_refused_and_the_outside_file_untouched(tmp_path, no_computation):
    (tmp_path / "outside").mkdir()
    victim = tmp_path / "outside" / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "r"
    out.mkdir()
    (out / "summary.json").symlink_to(Path("..") / "outside" / "victim.txt")
    output = _fails(["--out", str(out)], "Invalid value for '--out'", "summary.json' is a symbolic link",
                    "../outside/victim.txt")
    assert len([line for line in output.splitlines() if line]) == 3  # usage, hint and the one-line reason
    assert victim.read_text() == "precious" and (out / "summary.json").is_symlink()


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc, where nobody may create folders")
def test_unwritable_out_fails_before_computing(no_computation):
    _fails(["--out", "/proc/hesslens-report"], "Invalid value for '--out'",
           "cannot write report folder '/proc/hesslens-report'")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_fails_before_computing(tmp_path, no_computation):
    out = tmp_path / "r"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    out.chmod(0o555)
    try:
        _fails(["--out", str(out)], "Invalid value for '--out'", "cannot write report folder")
    finally:
        out.chmod(0o755)
    assert _files(out) == {"summary.json": b"{}"}


def test_out_holding_other_files_is_refused_not_emptied(tmp_path, no_computation, monkeypatch):
    out = tmp_path / "r"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    _fails(["--out", str(out)], "'--out'", "not part of a hesslens report (thesis.tex)", "new or empty folder")
    assert _files(out) == {"thesis.tex": b"years of work"}
    monkeypatch.chdir(out)
    _fails(["--out", "."], "'--out'", "current directory")


@pytest.mark.parametrize("fault", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_fault_while_writing_leaves_the_previous_report_whole(fault, tmp_path, user_module, monkeypatch):
    out = tmp_path / "r"
    args = ["analyze", "--out", str(out), "--model", f"{user_module}:make", "--data", f"{user_module}:batches", *FAST]
    assert CliRunner().invoke(cli, args).exit_code == 0
    (out / "model.pt").write_bytes(b"a model from an earlier default run")
    before = _files(out)

    import hesslens.report.analysis as analysis_module

    def truncated_png(density, path, **kwargs):
        Path(path).write_bytes(PNG_SIGNATURE)  # the first bytes of a figure, then the fault
        raise fault

    monkeypatch.setattr(analysis_module, "save_density_png", truncated_png)
    result = CliRunner().invoke(cli, [*args, "--seed", "5"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    if isinstance(fault, OSError):
        assert result.exit_code == 2 and "No space left on device" in result.output
        assert "the previous report, if any, is unchanged" in result.output
    assert _files(out) == before
    assert not [p.name for p in tmp_path.iterdir() if "hesslens-" in p.name]

    monkeypatch.undo()
    assert CliRunner().invoke(cli, [*args, "--seed", "5"]).exit_code == 0
    # The new report replaced the old one as a whole: no stale model.pt beside it.
    assert sorted(_files(out)) == ["density.png", "hesd.png", "layerwise.png", "report.html", "summary.json"]
    assert load_summary(out).settings["seed"] == 5


def test_memory_budget_option(tmp_path, user_module, monkeypatch):
    """--memory-budget is validated up front and becomes the budget every algorithm reads."""
    from hesslens import memory

    # The option sets the variable in this (the CLI's) process: monkeypatch records its absence now and
    # restores that after the test, so no later test runs under a 1 KiB budget.
    monkeypatch.setenv(memory.ENV_VAR, "64G")
    _fails(["--out", str(tmp_path / "o"), "--memory-budget", "lots"], "--memory-budget", "is not a size")
    args = ["--out", str(tmp_path / "o"), "--model", f"{user_module}:make", "--data", f"{user_module}:batches",
            "--memory-budget", "1K", *FAST]
    result = CliRunner().invoke(cli, ["analyze", *args])
    assert result.exit_code != 0 and "above the memory budget of" in result.output and "1K" in result.output
    assert "Traceback" not in result.output and os.environ[memory.ENV_VAR] == "1K"


# -- --params, --k, --which: the Python API's params=, k and which, recorded and explained --------------
def test_params_takes_several_patterns_after_one_flag():
    from hesslens.cli_inputs import spread_params

    assert spread_params(["--params", "a", "b", "--k", "2", "-q"]) == \
        ["--params", "a", "--params", "b", "--k", "2", "-q"]
    assert spread_params(["--params=a", "b", "--params", "c"]) == ["--params=a", "--params", "b", "--params", "c"]
    assert spread_params(["--k", "2", "--", "x", "y"]) == ["--k", "2", "--", "x", "y"]
    assert spread_params(["--params"]) == ["--params"]  # click then says it needs a value


def _user_args(user_module: str, checkpoint: Path, *more: str) -> list[str]:
    return ["--model", f"{user_module}:make", "--checkpoint", str(checkpoint), "--data", f"{user_module}:batches",
            *more, *FAST]


def test_which_both_matches_hesslens_eigenvalues_and_the_exact_hessian(tmp_path, user_module, checkpoint):
    """--params '2.*' --k 3 --which both: the values of hesslens.eigenvalues on the same model and
    params, in its order (3 smallest ascending, then 3 largest descending), against a dense reference."""
    out = tmp_path / "o"
    path, model = checkpoint
    result = CliRunner().invoke(cli, ["analyze", "--out", str(out), *_user_args(user_module, path, "--params", "2.*",
                                                                                 "--k", "3", "--which", "both")])
    assert result.exit_code == 0, result.output
    s = load_summary(out)
    mod = __import__(user_module)
    names = ["2.weight", "2.bias"]
    api = hl.eigenvalues(hl.HessianOperator(model, nn.CrossEntropyLoss(), mod.batches(), params="2.*"),
                         k=3, which="both")
    got = [v["value"] for v in s.eigen["values"]]
    np.testing.assert_allclose(got, api.values, rtol=1e-8, atol=1e-12)
    exact = torch.linalg.eigvalsh(reference_hessian(
        model, concatenated_objective(nn.CrossEntropyLoss(), mod.batches()), names)).numpy()
    scale = np.abs(exact).max()
    np.testing.assert_allclose(got, [*exact[:3], *exact[::-1][:3]], atol=1e-8 * scale)
    assert [(v["end"], v["rank"]) for v in s.eigen["values"]] == \
        [("smallest", 1), ("smallest", 2), ("smallest", 3), ("largest", 1), ("largest", 2), ("largest", 3)]
    assert s.lambda_min["value"] == got[0] and s.lambda_max["value"] == got[3]
    assert s.eigen["order"] == "the 3 smallest, ascending (λ_min first), then the 3 largest, descending (λ_max first)"
    # recorded: settings (summary.json and the page's settings table), the selection, the command
    assert s.settings["params"] == ["2.*"] and s.settings["k"] == 3 and s.settings["which"] == "both"
    assert s.model["selected_parameters"] == names and s.model["analysed_parameters"] == len(exact) == 15
    assert "--params '2.*' --k 3 --which both" in s.settings["command"]
    page = (out / "report.html").read_text(encoding="utf-8")
    for row in ("<th>params</th><td>2.*</td>", '<th>k</th><td class="num">3</td>', "<th>which</th><td>both</td>",
                "Requested eigenvalues", "the 3 smallest, ascending (λ_min first), then the 3 largest"):
        assert row in page, row


def test_which_largest_lists_the_k_largest_and_still_reports_lambda_min(tmp_path, user_module, checkpoint):
    out = tmp_path / "o"
    path, model = checkpoint
    args = _user_args(user_module, path, "--params", "0.weight", "2.bias", "--k", "2", "--which", "largest")
    result = CliRunner().invoke(cli, ["analyze", "--out", str(out), *[a for a in args if a != "--quiet"]])
    assert result.exit_code == 0, result.output
    s = load_summary(out)
    mod = __import__(user_module)
    names = ["0.weight", "2.bias"]
    exact = torch.linalg.eigvalsh(reference_hessian(
        model, concatenated_objective(nn.CrossEntropyLoss(), mod.batches()), names)).numpy()
    scale = np.abs(exact).max()
    np.testing.assert_allclose([v["value"] for v in s.eigen["values"]], exact[::-1][:2], atol=1e-8 * scale)
    assert abs(s.lambda_min["value"] - exact[0]) <= 1e-6 * scale  # from the second, k=1 "smallest" run
    assert [r["which"] for r in s.eigen["runs"]] == ["largest", "smallest"]
    assert s.eigen["matvecs"] == sum(r["matvecs"] for r in s.eigen["runs"])
    assert s.settings["params"] == names and s.model["selected_parameters"] == names
    # the printed table says the order of the values it prints
    assert "k=2, which=largest, in this order: the 2 largest, descending (lambda_max first)" in result.output
    assert "largest #1" in result.output and "largest #2" in result.output and "smallest #1" not in result.output
    assert "params     0.weight, 2.bias" in result.output


def test_the_recorded_command_repeats_the_selection(tmp_path, user_module, checkpoint):
    import shlex

    first = tmp_path / "a"
    args = _user_args(user_module, checkpoint[0], "--params", "2.*", "0.bias", "--k", "2", "--which", "smallest")
    assert CliRunner().invoke(cli, ["analyze", "--out", str(first), *args]).exit_code == 0
    command = load_summary(first).settings["command"]
    again = tmp_path / "b"
    repeated = [*shlex.split(command)[1:], "--out", str(again), "--quiet"]
    result = CliRunner().invoke(cli, repeated)
    assert result.exit_code == 0, result.output
    a, b = load_summary(first), load_summary(again)
    assert a.settings == b.settings and a.eigen["values"] == b.eigen["values"]
    assert a.settings["params"] == ["2.*", "0.bias"] and a.model["selected_parameters"] == ["0.bias", "2.weight",
                                                                                              "2.bias"]


def test_default_options_keep_the_old_analysis(tmp_path, user_module, checkpoint):
    out = tmp_path / "o"
    assert CliRunner().invoke(cli, ["analyze", "--out", str(out), *_user_args(user_module, checkpoint[0])]).exit_code == 0
    s = load_summary(out)
    assert s.settings["params"] is None and s.settings["k"] == 1 and s.settings["which"] == "both"
    assert "selected_parameters" not in s.model and len(s.eigen["runs"]) == 1
    assert [v["value"] for v in s.eigen["values"]] == [s.lambda_min["value"], s.lambda_max["value"]]


@pytest.mark.parametrize("args, option, needles", [
    (["--params", "3.*"], "--params", ["'3.*' matches no parameter", "0.weight (4, 5)", "2.bias (3,)",
                                       "fnmatch"]),
    (["--params", "2.*", "fc.weight"], "--params", ["'fc.weight' matches no parameter"]),
    (["--params", "2.bias", "--k", "2"], "--k", ["2 is too large", "--which both", "n=3", "use --k 1 or less"]),
    (["--params", "2.bias", "--k", "3", "--which", "largest"], "--k",
     ["3 is too large", "(2.bias) span n=3", "k < n", "use --k 2 or less"]),
    (["--k", "20"], "--k", ["n=39", "use --k 19 or less"]),
    (["--k", "0"], "--k", ["not in the range x>=1"]),
    (["--which", "top"], "--which", ["'top' is not one of", "'largest'", "'smallest'", "'both'"]),
])
def test_bad_selection_is_a_usage_error_naming_the_option(args, option, needles, tmp_path, user_module,
                                                          monkeypatch):
    import hesslens.report

    monkeypatch.setattr(hesslens.report, "analyze_operator", lambda *a, **k: pytest.fail("the analysis started"))
    output = _fails(["--out", str(tmp_path / "r"), "--model", f"{user_module}:make", "--data",
                     f"{user_module}:batches", *args], f"Invalid value for '{option}'", *needles)
    assert "Usage:" in output and not (tmp_path / "r").exists()


def test_default_model_refuses_a_bad_selection_before_training(tmp_path, no_computation):
    output = _fails(["--out", str(tmp_path / "r"), "--params", "fc.*"], "Invalid value for '--params'",
                    "'fc.*' matches no parameter", "0.weight (16, 64)", "2.weight (10, 16)", "2.bias (10,)")
    assert "Traceback" not in output
    _fails(["--out", str(tmp_path / "r"), "--params", "2.bias", "--k", "6"], "Invalid value for '--k'",
           "n=10", "use --k 5 or less")
    assert not (tmp_path / "r").exists()
