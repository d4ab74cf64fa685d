"""analyze_operator and write_report against an independent float64 reference (torch.func.hessian)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import hesslens as hl
from hesslens.report import AnalysisSettings, analyze_operator, load_summary, write_report
from hesslens.report.html import fmt

from ._cases import tiny_batches, tiny_model, tiny_spectrum

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_summary():
    op = hl.HessianOperator(tiny_model(), nn.CrossEntropyLoss(), tiny_batches())
    return op, analyze_operator(op, AnalysisSettings(seed=4, probes=6, trace_matvecs=30), progress=False)


def test_extreme_eigenvalues_match_the_exact_spectrum(tiny_summary):
    op, s = tiny_summary
    exact = tiny_spectrum()
    scale = np.abs(exact).max()
    assert abs(s.lambda_max["value"] - exact[-1]) <= 1e-6 * scale
    assert abs(s.lambda_min["value"] - exact[0]) <= 1e-6 * scale
    assert s.lambda_max["converged"] and s.lambda_min["converged"]
    assert s.lambda_min["value"] <= s.lambda_max["value"]


def test_trace_within_its_standard_error(tiny_summary):
    _, s = tiny_summary
    exact = tiny_spectrum().sum()
    assert s.trace["method"] == "hutch++" and s.trace["matvecs"] == 30
    assert abs(s.trace["estimate"] - exact) <= 4 * s.trace["stderr"] + 1e-10 * np.abs(tiny_spectrum()).max()


def test_density_moments_and_step_cap(tiny_summary):
    op, s = tiny_summary
    sd = s.spectral_density
    n = len(tiny_spectrum())
    assert op.n == n < 80
    # a Krylov space has at most n dimensions: steps are capped, the request is recorded
    assert s.settings["steps"] == n and s.settings["steps_requested"] == 80
    assert sd.weights.shape == (6, n)
    np.testing.assert_allclose(sd.weights.sum(axis=1), 1.0, atol=1e-12)
    for p in (1, 2):
        exact = float((tiny_spectrum() ** p).mean())
        assert abs(sd.moment(p) - exact) <= 4 * sd.moment_stderr(p) + 1e-12
    lo, hi = sd.support
    assert tiny_spectrum()[0] - 1e-8 <= lo and hi <= tiny_spectrum()[-1] + 1e-8


def test_summary_records_engine_settings_and_model(tiny_summary):
    op, s = tiny_summary
    assert s.engine["name"] == op.engine and s.engine["reason"] == op.engine_reason
    assert s.settings["seed"] == 4 and s.settings["probes"] == 6 and s.settings["mode"] == "eval"
    assert s.model["analysed_parameters"] == op.n and s.data["samples"] == 30 and s.data["batches"] == 2
    assert set(s.timings) >= {"extreme_eigenvalues", "trace", "spectral_density"}
    assert s.versions["hesslens"] == hl.__version__ and s.versions["torch"] == torch.__version__


def test_engine_checks_and_reduction_reach_the_summary_and_the_page(tiny_summary, tmp_path):
    """Every candidate's check against double backward is recorded, and the HTML page shows it."""
    op, s = tiny_summary
    labels = [c["label"] for c in s.engine["checks"]]
    assert labels == [c.label for c in op.engine_report.checks] and op.engine in labels
    assert s.engine["tolerance"] == op.engine_report.tolerance
    chosen = [c for c in s.engine["checks"] if c["status"] == "chosen"]
    assert len(chosen) == 1 and chosen[0]["relative_error"] <= s.engine["tolerance"]
    assert s.data["reduction"] == "mean" and s.data["reduction_source"] == "loss_fn.reduction"
    files = write_report(s, tmp_path / "r")
    page = files.report_html.read_text()
    assert "Product engine" in page and all(label in page for label in labels)
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["engine"]["checks"] == s.engine["checks"]


def test_seeded_runs_agree_and_the_seed_matters():
    op = hl.HessianOperator(tiny_model(), nn.CrossEntropyLoss(), tiny_batches())
    a, b, c = (analyze_operator(op, AnalysisSettings(seed=seed, probes=3, steps=10, trace_matvecs=12), progress=False)
               for seed in (1, 1, 2))
    assert a.trace["estimate"] == b.trace["estimate"] and a.density["nodes"] == b.density["nodes"]
    assert a.density["nodes"] != c.density["nodes"]


def test_the_analysis_leaves_the_model_unchanged(tmp_path):
    model = tiny_model().train()
    model[0].weight.grad = torch.full_like(model[0].weight, 0.5)
    model[2].bias.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    op = hl.HessianOperator(model, nn.CrossEntropyLoss(), tiny_batches())
    write_report(analyze_operator(op, AnalysisSettings(probes=2, steps=5, trace_matvecs=12), progress=False), tmp_path)
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(model[0].weight.grad, torch.full_like(model[0].weight, 0.5)) and model[2].weight.grad is None
    assert not model[2].bias.requires_grad and model[0].weight.requires_grad
    assert torch.equal(torch.get_rng_state(), rng)


def test_write_report_files(tiny_summary, tmp_path):
    _, s = tiny_summary
    files = write_report(s, tmp_path / "nested" / "out")
    assert files.density_png.read_bytes().startswith(PNG_SIGNATURE)
    assert files.hesd_png == files.folder / "hesd.png" and files.hesd_png.read_bytes().startswith(PNG_SIGNATURE)
    loaded = load_summary(files.summary_json)
    assert loaded.lambda_max == s.lambda_max and loaded.trace == s.trace
    assert loaded.timings["total"] >= loaded.timings["report"] > 0
    page = files.report_html.read_text(encoding="utf-8")
    for number in (s.lambda_max["value"], s.lambda_min["value"], s.trace["estimate"]):
        assert fmt(number) in page
    json.loads(files.summary_json.read_text())  # strict JSON


def test_write_report_refuses_a_file_as_folder(tiny_summary, tmp_path):
    target = tmp_path / "taken"
    target.write_text("x")
    with pytest.raises(hl.InvalidInputError, match="not a directory"):
        write_report(tiny_summary[1], target)


def test_settings_are_validated():
    with pytest.raises(hl.InvalidInputError, match="steps and probes"):
        AnalysisSettings(probes=0)
    with pytest.raises(hl.InvalidInputError, match="tol"):
        AnalysisSettings(tol=0.0)


# -- k and which: hesslens.eigenvalues's values, in its order; both ends always reported ---------------
FAST = dict(probes=2, steps=5, trace_matvecs=12)


@pytest.mark.parametrize("k, which", [(3, "both"), (2, "largest"), (2, "smallest")])
def test_k_and_which_give_the_apis_values_in_its_order(k, which):
    op = hl.HessianOperator(tiny_model(), nn.CrossEntropyLoss(), tiny_batches())
    s = analyze_operator(op, AnalysisSettings(k=k, which=which, **FAST), progress=False)
    exact = tiny_spectrum()
    scale = np.abs(exact).max()
    expected = {"both": [*exact[:k], *exact[::-1][:k]], "largest": exact[::-1][:k], "smallest": exact[:k]}[which]
    values = s.eigen["values"]
    np.testing.assert_allclose([v["value"] for v in values], expected, atol=1e-6 * scale)
    assert [v["value"] for v in values] == hl.eigenvalues(op, k=k, which=which).values.tolist()
    ends = {"both": ["smallest"] * k + ["largest"] * k, "largest": ["largest"] * k, "smallest": ["smallest"] * k}
    assert [v["end"] for v in values] == ends[which] and [v["rank"] for v in values][:k] == list(range(1, k + 1))
    assert all(v["converged"] and v["residual"] >= 0 for v in values)
    # both ends are always in the summary: the one which leaves out comes from a k=1 run
    assert abs(s.lambda_max["value"] - exact[-1]) <= 1e-6 * scale
    assert abs(s.lambda_min["value"] - exact[0]) <= 1e-6 * scale
    assert [(r["k"], r["which"]) for r in s.eigen["runs"]] == \
        ([(k, "both")] if which == "both" else [(k, which), (1, "smallest" if which == "largest" else "largest")])
    assert s.eigen["matvecs"] == sum(r["matvecs"] for r in s.eigen["runs"])
    assert s.settings["k"] == k and s.settings["which"] == which
    assert s.eigen["k"] == k and s.eigen["which"] == which and str(k) in s.eigen["order"]


def test_eigen_order_in_words():
    from hesslens.report.analysis import eigen_order

    assert eigen_order(1, "both") == "λ_min, then λ_max"
    assert eigen_order(2, "both") == "the 2 smallest, ascending (λ_min first), then the 2 largest, descending (λ_max first)"
    assert eigen_order(3, "largest") == "the 3 largest, descending (λ_max first)"
    assert eigen_order(1, "smallest") == "λ_min"


def test_a_parameter_selection_is_recorded(tmp_path):
    model = tiny_model()
    op = hl.HessianOperator(model, nn.CrossEntropyLoss(), tiny_batches(), params="2.*")
    s = analyze_operator(op, AnalysisSettings(k=2, **FAST), extra_settings={"params": ["2.*"]}, progress=False)
    assert s.model["selected_parameters"] == ["2.weight", "2.bias"] and s.model["analysed_parameters"] == 15
    assert s.settings["params"] == ["2.*"]
    loaded = load_summary(write_report(s, tmp_path / "r").summary_json)
    assert loaded.eigen == json.loads(json.dumps(s.eigen)) and loaded.model == s.model
    # all parameters: no selection recorded
    full = analyze_operator(hl.HessianOperator(model, nn.CrossEntropyLoss(), tiny_batches()),
                            AnalysisSettings(**FAST), progress=False)
    assert "selected_parameters" not in full.model


@pytest.mark.parametrize("kwargs, match", [({"k": 0}, "k must be"), ({"k": 1.5}, "k must be"),
                                           ({"which": "top"}, "which must be one of largest, smallest, both")])
def test_k_and_which_are_validated(kwargs, match):
    with pytest.raises(hl.InvalidInputError, match=match):
        AnalysisSettings(**kwargs)
