"""Trace at equal accuracy in the benchmark (``benchmarks.measure``, step 7, and its tables in ``benchmarks.run``).

* the reference trace of the smoke MLP is exact: it matches the trace of torch's own Hessian;
* the sweep picks the first product count whose RMS relative error over the seeds meets the target
  (planted errors), says "not reached" when none does, and stops at its time budget;
* the model table has the new column and the summary the equal-accuracy row with its target mark.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not (ROOT / "benchmarks" / "measure.py").exists(), reason="benchmarks/ not present")
sys.path.insert(0, str(ROOT))

from benchmarks import measure, run, zoo  # noqa: E402
from benchmarks.peers import Hesslens, Library  # noqa: E402


# ---------------------------------------------------------------------------------------------
def _torch_trace(case: zoo.Case) -> float:
    """tr H of the case's mean loss in float64, from torch.func alone: the diagonal of the Hessian
    (forward-over-reverse, vmapped over blocks of identity columns), summed."""
    model = copy.deepcopy(case.model).double()
    names = [k for k, p in model.named_parameters() if p.requires_grad]
    params = [p.detach() for k, p in model.named_parameters() if p.requires_grad]
    sizes = [p.numel() for p in params]
    theta = torch.cat([p.reshape(-1) for p in params])
    x, y = case.inputs.double(), case.targets

    def loss(flat: torch.Tensor) -> torch.Tensor:
        parts = {k: t.view_as(p) for k, t, p in zip(names, torch.split(flat, sizes), params)}
        return case.loss_fn(torch.func.functional_call(model, parts, (x,)), y)

    grad = torch.func.grad(loss)

    def hvp(v: torch.Tensor) -> torch.Tensor:
        return torch.func.jvp(grad, (theta,), (v,))[1]

    n, total, chunk = theta.numel(), 0.0, 512
    for start in range(0, n, chunk):
        idx = torch.arange(start, min(n, start + chunk))
        eye = torch.zeros(len(idx), n, dtype=torch.float64)
        eye[torch.arange(len(idx)), idx] = 1.0
        total += float(torch.func.vmap(hvp)(eye)[torch.arange(len(idx)), idx].sum())
    return total


@pytest.fixture(scope="module")
def smoke_mlp():
    case = zoo.build("mlp", **run.PRESETS["smoke"]["mlp"]["model_kwargs"])
    lib = Hesslens()
    lib.setup(case)
    return case, lib, lib.reference_trace()  # the default threshold: 8,970 parameters are traced exactly


def test_reference_trace_of_the_smoke_mlp_is_torchs_exact_trace(smoke_mlp):
    case, lib, ref = smoke_mlp
    assert ref["exact"] and ref["stderr"] == 0.0 and ref["products"] == case.num_params
    exact = _torch_trace(case)
    # hesslens's products run in the model's float32 (sums in float64), torch's here in float64:
    # they agree to ~1e-6 relative or better (a block of 256 columns holds ~3% of the trace on average)
    assert ref["value"] == pytest.approx(exact, rel=1e-5, abs=0)


def test_reference_trace_above_the_threshold_is_a_hutchpp_estimate_with_its_stderr(smoke_mlp):
    case, lib, ref = smoke_mlp
    exact = ref["value"]
    est = lib.reference_trace(exact_max_params=case.num_params - 1, matvecs=120, seed=3)
    assert not est["exact"] and est["products"] == 120 and est["seed"] == 3
    assert 0 < est["stderr"] < 0.2 * abs(exact)
    assert abs(est["value"] - exact) < 5 * est["stderr"]
    assert est["value"] != exact


# ---------------------------------------------------------------------------------------------
REF = 2.0


class Planted(Library):
    """A trace 'library' whose relative error at (products, seed) is planted."""

    key = label = "planted"
    trace_method = "planted"

    def __init__(self, errors: dict[int, list[float]], fail_at: int | None = None):
        self.errors, self.fail_at, self.calls = errors, fail_at, []

    def trace(self, num_matvecs: int, seed: int = 0) -> float:
        self.calls.append((num_matvecs, seed))
        if num_matvecs == self.fail_at:
            raise RuntimeError("planted failure")
        return REF * (1 + self.errors[num_matvecs][seed])


GRID = [6, 12, 24, 48, 96]
ERRORS = {
    6: [0.1, -0.1, 0.1, 0.1],
    12: [0.03, 0.0, 0.0, 0.0],  # mean |error| 0.0075 would pass; RMS 0.015 does not
    24: [0.012, -0.012, 0.012, -0.012],  # mean signed error 0 would pass; RMS 0.012 does not
    48: [0.009, -0.009, 0.009, 0.009],  # RMS 0.009: the first to meet 0.01
    96: [0.0, 0.0, 0.0, 0.0],
}


def test_sweep_reports_the_first_count_whose_rms_error_meets_the_target():
    lib = Planted(ERRORS)
    r = measure._trace_sweep(lib, REF, 0.01, GRID, seeds=4, budget_seconds=1e9)
    assert r["reached"] and r["products"] == 48
    assert r["rms_rel_error"] == pytest.approx(0.009)
    assert [t["products"] for t in r["tried"]] == [6, 12, 24, 48]
    assert [t["rms_rel_error"] for t in r["tried"][1:3]] == [pytest.approx(0.015), pytest.approx(0.012)]
    assert lib.calls == [(m, s) for m in (6, 12, 24, 48) for s in range(4)]  # seeds 0..3 at each count; 96 never run
    last = r["tried"][-1]
    assert r["seconds"] == pytest.approx(sum(last["seconds_each"]) / 4)  # the mean time of one run at 48
    assert last["values"] == [REF * (1 + e) for e in ERRORS[48]]
    assert r["rtol"] == 0.01 and r["seeds"] == 4 and r["reference"] == REF and r["method"] == "planted"


def test_sweep_reports_not_reached_when_no_count_meets_the_target():
    lib = Planted({m: [0.02, -0.02, 0.02, -0.02] for m in GRID})
    r = measure._trace_sweep(lib, REF, 0.01, GRID, seeds=4, budget_seconds=1e9)
    assert not r["reached"] and r["stopped"] == "grid exhausted" and "products" not in r
    assert [t["products"] for t in r["tried"]] == GRID
    cell = run._trace_accuracy({"trace_accuracy": r})
    assert cell == "not reached (RMS err 0.02 at 96 products; grid exhausted)"


def test_sweep_records_a_failing_count_and_stops():
    lib = Planted(ERRORS, fail_at=24)
    r = measure._trace_sweep(lib, REF, 0.01, GRID, seeds=4, budget_seconds=1e9)
    assert not r["reached"] and r["stopped"] == "error"
    assert r["tried"][-1] == {"products": 24, "error": "RuntimeError: planted failure"}
    assert run._trace_accuracy({"trace_accuracy": r}).startswith("fails at 24 products (RuntimeError")


@pytest.mark.parametrize(("budget", "counts"), [(5.0, [6]), (8.0, [6, 12]), (1e9, [6, 12, 24, 48])])
def test_sweep_skips_a_count_predicted_to_pass_its_budget(monkeypatch, budget, counts):
    """One run of m products 'takes' 0.1·m s: with 4 seeds the counts cost 2.4, 4.8, 9.6, … s."""
    lib = Planted(ERRORS)

    def timed(fn):
        value = fn()
        return 0.1 * lib.calls[-1][0], value

    monkeypatch.setattr(measure, "_timed", timed)
    r = measure._trace_sweep(lib, REF, 0.01, GRID, seeds=4, budget_seconds=budget)
    assert [t["products"] for t in r["tried"]] == counts
    assert r["reached"] == (counts[-1] == 48)
    if not r["reached"]:
        assert r["stopped"] == f"time budget ({budget:g} s)"


def test_small_counts_get_more_seeds_to_spend_the_level_products():
    assert [measure.trace_seeds_at(m, 4, 96) for m in GRID] == [16, 8, 4, 4, 4]
    assert [measure.trace_seeds_at(m, 4, 100) for m in GRID] == [17, 9, 5, 4, 4]  # at least 100 products
    assert [measure.trace_seeds_at(m, 4) for m in GRID] == [4] * 5
    # a count passing on its first 4 seeds but not on all 8 it runs does not count
    errors = {6: [0.1] * 16, 12: [0.0] * 4 + [0.05] * 4, 24: [0.005] * 4}
    lib = Planted(errors)
    r = measure._trace_sweep(lib, REF, 0.01, [6, 12, 24], seeds=4, budget_seconds=1e9, level_matvecs=96)
    assert [(t["products"], t["seeds"], len(t["values"])) for t in r["tried"]] == [(6, 16, 16), (12, 8, 8), (24, 4, 4)]
    assert r["reached"] and r["products"] == 24 and r["level_matvecs"] == 96
    assert r["tried"][1]["rms_rel_error"] == pytest.approx(0.05 / 2**0.5)


def test_trace_grid_doubles_up_to_the_cap_or_is_given():
    assert measure.trace_grid({"trace_max_matvecs": 100}) == [6, 12, 24, 48, 96]
    assert measure.trace_grid({"trace_max_matvecs": 96}) == [6, 12, 24, 48, 96]
    assert measure.trace_grid({"trace_grid": [9, 30]}) == [9, 30]
    for preset in run.PRESETS.values():  # curvlinops' Hutch++ takes multiples of 3 only
        for settings in preset.values():
            assert all(m % 3 == 0 for m in measure.trace_grid(settings))


# ---------------------------------------------------------------------------------------------
def _row(library: str, accuracy: dict | None, **extra) -> dict:
    r = {"library": library, "label": library, "setup_seconds": 0.1, "grad_seconds": 0.01,
         "products": {"1": {"seconds_per_column": 0.02, "grad_equivalents": 2.0}},
         "slq": {"seconds": 1.0, "note": "", "steps": 8, "probes": 2}, "trace": {"seconds": 0.3, "method": "Hutch++"},
         "peak_rss_mb": 500.0, "loadavg_max": 0.5, "check": {"vHv": 1.0}, **extra}
    if accuracy is not None:
        r["trace_accuracy"] = {"rtol": 0.01, "seeds": 4, "method": "Hutch++", "reference": REF, **accuracy}
    return r


def _reached(seconds: float, products: int) -> dict:
    return {"reached": True, "seconds": seconds, "products": products, "rms_rel_error": 0.008,
            "tried": [{"products": products, "rms_rel_error": 0.008, "seconds": seconds}]}


def _rows(peer_seconds: float) -> list[dict]:
    return [
        _row("hesslens", _reached(0.5, 48), engine="double_backward+loop",
             trace_reference={"value": 0.8819682269, "exact": True, "stderr": 0.0, "products": 8970}),
        _row("curvlinops", _reached(peer_seconds, 96)),
        _row("pyhessian", {"reached": False, "stopped": "grid exhausted",
                           "tried": [{"products": 768, "rms_rel_error": 0.02, "seconds": 3.0}]}),
        {"library": "eigenthings", "label": "hessian-eigenthings", "unavailable": "not installed"},
        _row("broken", None, setup_error="RuntimeError: no"),
    ]


SETTINGS = {"steps": 8, "probes": 2, "trace_matvecs": 9, "trace_rtol": 0.01, "trace_seeds": 4,
            "trace_max_matvecs": 96}


def test_model_table_has_the_trace_to_accuracy_column():
    text = run.model_table("mlp", _rows(1.2), SETTINGS)
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    header = lines[0].split(" | ")
    assert "trace to 1% RMS error: time / products" in header
    col = header.index("trace to 1% RMS error: time / products")
    assert header[col - 1] == "trace, 9 products"  # beside the equal-products column
    cells = {ln.split(" | ")[0][2:]: ln.split(" | ") for ln in lines[2:]}
    assert cells["hesslens"][col] == "500 ms / 48 (Hutch++)"
    assert cells["curvlinops"][col] == "1.2 s / 96 (Hutch++)"
    assert cells["pyhessian"][col] == "not reached (RMS err 0.02 at 768 products; grid exhausted)"
    assert all(ln.count("|") == lines[0].count("|") for ln in lines)  # every row has every column
    assert "reference trace = 0.8819682269 (exact: Σ (H e_i)_i over 8,970 identity columns)" in text
    assert "trace to 1%: products × seeds 6×4, 12×4, 24×4, 48×4, 96×4." in text
    more = run.model_table("mlp", _rows(1.2), {**SETTINGS, "trace_level_matvecs": 48})
    assert "products × seeds 6×8, 12×4, 24×4, 48×4, 96×4." in more
    # without a target the table is as before: no such column
    plain = run.model_table("mlp", _rows(1.2), {"steps": 8, "probes": 2, "trace_matvecs": 9})
    plain_header = next(ln for ln in plain.splitlines() if ln.startswith("| library"))
    assert "RMS error" not in plain and plain_header.count("|") == 11


def test_reference_note_flags_an_estimate_not_well_below_the_target():
    ok = run._trace_reference({"value": 40.0, "exact": False, "stderr": 0.2, "products": 1500, "seed": 12345}, 0.05)
    assert "an estimate itself" in ok and "standard error 0.2 = 0.5% of it" in ok and "NOT" not in ok
    bad = run._trace_reference({"value": 40.0, "exact": False, "stderr": 1.0, "products": 300, "seed": 12345}, 0.05)
    assert "NOT well below the 5% target" in bad


@pytest.mark.parametrize(("peer_seconds", "mark"), [(1.2, "2.40× | ≥ 1× ✔"), (0.4, "0.80× | ≥ 1× ✘")])
def test_summary_has_the_equal_accuracy_row_with_its_mark(peer_seconds, mark):
    text = run.summary_table({"mlp": _rows(peer_seconds)}, {"mlp": SETTINGS})
    (row,) = [ln for ln in text.splitlines() if "trace time to 1% (equal accuracy)" in ln]
    assert row.startswith("| mlp | trace time to 1% (equal accuracy) | 500 ms | curvlinops |") and row.endswith(f"{mark} |")
    (products,) = [ln for ln in text.splitlines() if "trace products to 1%" in ln]
    assert "| 48 | curvlinops | 96 | 2.00× |" in products
    assert any("trace time (equal products)" in ln for ln in text.splitlines())  # the equal-products row stays
    assert "equal accuracy" not in run.summary_table({"mlp": [_row("hesslens", None)]}, {"mlp": {}})
