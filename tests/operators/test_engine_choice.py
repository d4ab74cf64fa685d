"""When the engine of ``engine="auto"`` is chosen, and for how many products.

The choice waits for the first product and weighs the work the first estimator announces
(``HessianOperator.expect``); a linearisation is built only where its estimated build costs less than
the double-backward products it would replace.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import hesslens as hl
from hesslens.linalg.eigen import restart_plan
from hesslens.operators import choice, gradient_profile, linearize
from hesslens.operators.trial import REFINE_RATIO, start_trial
from hesslens.report import AnalysisSettings, analyze_operator

DT = torch.float64


def _problem(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).to(DT)
    return model, nn.CrossEntropyLoss(), (torch.randn(30, 4, generator=g, dtype=DT), torch.randint(0, 3, (30,), generator=g))


def test_the_choice_waits_for_the_first_estimator_and_weighs_its_announced_work():
    model, loss_fn, data = _problem()
    op = hl.HessianOperator(model, loss_fn, data)
    assert not op._slot.chosen  # nothing built or timed yet
    sd = hl.spectral_density(op, steps=12, probes=3, seed=0)
    assert op.expected_matvecs == 3 * 12 and op._slot.chosen
    hl.trace(op, num_matvecs=30)  # a later announcement changes nothing: the engine is chosen
    assert op.expected_matvecs == 36
    # the same numbers as an operator whose choice was made at construction (double backward here)
    eager = hl.HessianOperator(model, loss_fn, data, engine=op.engine)
    again = hl.spectral_density(eager, steps=12, probes=3, seed=0)
    torch.testing.assert_close(torch.tensor(sd.nodes), torch.tensor(again.nodes), rtol=1e-10, atol=1e-12)


def test_eigenvalues_announce_one_basis_and_a_given_count_wins():
    model, loss_fn, data = _problem()
    op = hl.HessianOperator(model, loss_fn, data)
    hl.eigenvalues(op, k=1, which="largest")
    n = sum(p.numel() for p in model.parameters())
    assert op.expected_matvecs == min(restart_plan(n, 1, "largest", 1e-6, None, None, None).m, n)
    told = hl.HessianOperator(model, loss_fn, data, expected_matvecs=5000)
    assert told._slot.chosen  # told how many: chosen at construction, as before
    hl.eigenvalues(told, k=1)
    assert told.expected_matvecs == 5000


def test_engine_properties_choose_when_asked():
    model, loss_fn, data = _problem()
    op = hl.HessianOperator(model, loss_fn, data)
    assert op.engine in choice.PREFERENCE and op.expected_matvecs == 1000  # no announcement: the default
    assert op.setup_seconds > 0 and op.engine_report.engine == op.engine


def _count_linearize_builds(monkeypatch) -> list[int]:
    """A list that grows by one at every LinearizeEngine built from now on (the test's monkeypatch)."""
    built: list[int] = []
    original = choice.LinearizeEngine.__init__

    def counting(self, *args, **kwargs):
        built.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(choice.LinearizeEngine, "__init__", counting)
    return built


def test_a_linearisation_that_cannot_pay_off_is_not_built(monkeypatch):
    model, loss_fn, data = _problem()
    built = _count_linearize_builds(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a skipped linearisation is not a refusal: no warning
        op = hl.HessianOperator(model, loss_fn, data, expected_matvecs=10)
    assert not built
    skipped = [c for c in op.engine_report.checks if c.label.startswith("linearize")]
    assert [c.status for c in skipped] == ["skipped", "skipped"]
    assert "would cost more than it can save over 10 products" in skipped[0].reason
    # with a build estimated as free it is built, verified and timed like any candidate
    monkeypatch.setattr(gradient_profile, "LINEARIZE_SECONDS_PER_NODE", 0.0)
    monkeypatch.setattr(gradient_profile, "LINEARIZE_FIRST_USE_SECONDS", 0.0)
    op = hl.HessianOperator(model, loss_fn, data, expected_matvecs=10)
    assert built and {c.status for c in op.engine_report.checks if c.label.startswith("linearize")} <= {"verified", "chosen"}


def test_a_linearisation_whose_cache_would_be_large_is_not_built(monkeypatch):
    model, loss_fn, data = _problem()
    built = _count_linearize_builds(monkeypatch)
    monkeypatch.setattr(gradient_profile, "LINEARIZE_SECONDS_PER_NODE", 0.0)  # the build would pay for itself
    monkeypatch.setattr(gradient_profile, "LINEARIZE_FIRST_USE_SECONDS", 0.0)
    profile = hl.HessianOperator(model, loss_fn, data, engine="double_backward")._gradient_profile
    assert profile.linearize_cache_estimate(3) == 3 * gradient_profile.LINEARIZE_CACHE_FACTOR * profile.saved_bytes > 0
    # a limit just below this model's estimate: skipped, recorded, and no warning (not a refusal)
    monkeypatch.setattr(choice, "LINEARIZE_MAX_CACHE_BYTES", profile.linearize_cache_estimate() - 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        op = hl.HessianOperator(model, loss_fn, data, expected_matvecs=10_000)
    assert not built and op.engine.startswith("double_backward")
    skipped = [c for c in op.engine_report.checks if c.label.startswith("linearize")]
    assert [c.status for c in skipped] == ["skipped", "skipped"] and "would exceed" in skipped[0].reason
    # a memory budget that leaves no room beside the double-backward cache skips it too
    monkeypatch.setattr(choice, "LINEARIZE_MAX_CACHE_BYTES", 2**40)
    tight = hl.HessianOperator(model, loss_fn, data, expected_matvecs=10_000, cache_budget=op._cache_bytes + 1)
    assert not built and "would exceed" in tight.engine_report.checks[-1].reason
    # with room for it, it is built and verified like any candidate
    roomy = hl.HessianOperator(model, loss_fn, data, expected_matvecs=10_000)
    assert built and {c.status for c in roomy.engine_report.checks if c.label.startswith("linearize")} <= {"verified", "chosen"}


def test_caches_the_trial_dropped_are_given_back(monkeypatch):
    from hesslens.operators import engine_slot

    model, loss_fn, data = _problem()
    trims: list[int] = []
    monkeypatch.setattr(engine_slot.memory, "release_freed_memory", lambda: trims.append(1) or True)
    hl.HessianOperator(model, loss_fn, data, expected_matvecs=10)  # nothing built beside double backward
    hl.HessianOperator(model, loss_fn, data, engine="double_backward")
    assert not trims
    built = _count_linearize_builds(monkeypatch)
    monkeypatch.setattr(gradient_profile, "LINEARIZE_SECONDS_PER_NODE", 0.0)
    monkeypatch.setattr(gradient_profile, "LINEARIZE_FIRST_USE_SECONDS", 0.0)
    op = hl.HessianOperator(model, loss_fn, data, expected_matvecs=10)
    assert built and set(op.engine_report.build_seconds) == {"double_backward", "linearize"} and trims == [1]
    # several batches: the trial's one-batch engines are dropped for one over all of them
    monkeypatch.setattr(gradient_profile, "LINEARIZE_SECONDS_PER_NODE", 1e9)
    x, y = data
    hl.HessianOperator(model, loss_fn, [(x[:15], y[:15]), (x[15:], y[15:])], expected_matvecs=10)
    assert trims == [1, 1]


def test_a_chosen_vmap_is_held_to_the_width_it_was_timed_at(monkeypatch):
    model, loss_fn, data = _problem()
    monkeypatch.setattr(choice, "PREFERENCE", ("double_backward+vmap", "double_backward+loop"))
    monkeypatch.setattr(choice, "SPEED_MARGIN", 1e9)  # every verified candidate ties: the preference decides
    op = hl.HessianOperator(model, loss_fn, data, expected_matvecs=10)
    assert op.engine == "double_backward+vmap" and op.engine_report.columns == 4 and op.max_columns == 4
    v = torch.randn(op.shape[0], 10, dtype=DT, generator=torch.Generator().manual_seed(1))
    loop = hl.HessianOperator(model, loss_fn, data, engine="double_backward+loop")
    assert loop.max_columns > 4  # the engine asked for is not held
    torch.testing.assert_close(op.torch_matmat(v), loop.torch_matmat(v), rtol=1e-12, atol=1e-12)
    assert hl.HessianOperator(model, loss_fn, data, expected_matvecs=10, max_columns=3).max_columns == 3


def test_the_estimate_grows_with_the_gradient(monkeypatch):
    model, loss_fn, (x, y) = _problem()
    small = hl.HessianOperator(model, loss_fn, (x, y))._gradient_profile
    deep = nn.Sequential(*[m for _ in range(4) for m in (nn.Linear(4, 4), nn.Tanh())], nn.Linear(4, 3)).to(DT)
    large = hl.HessianOperator(deep, loss_fn, (x, y))._gradient_profile
    # a Linear is two nodes (addmm, the weight's transpose), a Tanh one, cross-entropy two (log-softmax, NLL)
    assert (small.nodes, large.nodes) == (2 * 2 + 1 + 2, 5 * 2 + 4 + 2)
    per_node = gradient_profile.LINEARIZE_SECONDS_PER_NODE * large.nodes
    # the first linearisation in a process also warms torch's tracing stack (whether an earlier test traced
    # one depends on the order of the tests): both cases, set here
    monkeypatch.setattr(linearize, "traces_started", 1)
    assert large.linearize_estimate() == pytest.approx(per_node)
    monkeypatch.setattr(linearize, "traces_started", 0)
    assert large.linearize_estimate() == pytest.approx(gradient_profile.LINEARIZE_FIRST_USE_SECONDS + per_node)
    # and a linearisation built in the process clears it
    hl.HessianOperator(model, loss_fn, (x, y), engine="linearize+loop").engine  # noqa: B018
    assert linearize.traces_started == 1 and large.linearize_estimate() == pytest.approx(per_node)
    assert "TanhBackward0" in small.ops and "MseLossBackward0" not in small.ops


def test_a_linearisation_is_assumed_to_save_less_without_a_convolution():
    model, loss_fn, (x, y) = _problem()
    dense = hl.HessianOperator(model, loss_fn, (x, y))._gradient_profile
    conv = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(2 * (x.shape[1] - 2), 3)).to(DT)
    convolved = hl.HessianOperator(conv, loss_fn, (x[:, None, :], y))._gradient_profile
    assert choice.best_linearize_ratio(dense.ops) == choice.LINEARIZE_BEST_RATIO_WITHOUT_CONVOLUTION
    assert choice.best_linearize_ratio(convolved.ops) == choice.LINEARIZE_BEST_RATIO
    assert choice.LINEARIZE_BEST_RATIO < choice.LINEARIZE_BEST_RATIO_WITHOUT_CONVOLUTION < 1


def test_an_analysis_announces_all_its_products_before_the_first():
    model, loss_fn, data = _problem()
    op = hl.HessianOperator(model, loss_fn, data)
    settings = AnalysisSettings(steps=10, probes=2, trace_matvecs=30, layerwise=False)
    analyze_operator(op, settings, progress=False)
    basis = min(restart_plan(op.n, 1, "both", settings.tol, None, None, None).m, op.n)
    assert op.expected_matvecs == 2 * basis + 30 + 2 * 10


def test_products_of_one_column_do_not_try_vmap():
    model, loss_fn, data = _problem()
    op = hl.HessianOperator(model, loss_fn, data)
    hl.eigenvalues(op, k=1, which="largest")  # blocks of one column
    labels = [c.label for c in op.engine_report.checks]
    assert len(labels) == len(set(labels))  # one record per candidate
    status = {c.label: c for c in op.engine_report.checks}
    assert status["double_backward+vmap"].status == "skipped" and "one column" in status["double_backward+vmap"].reason
    assert status["linearize+vmap"].status == "skipped"
    assert op.engine_report.columns == 1
    wide = hl.HessianOperator(model, loss_fn, data)
    hl.spectral_density(wide, steps=8, probes=3)  # three probes at once
    assert wide.engine_report.columns == 3
    assert {c.label for c in wide.engine_report.checks if c.status != "skipped"} >= {"double_backward+vmap"}


def test_one_column_products_with_nothing_else_to_choose_take_the_reference_untimed(monkeypatch):
    """No vmap (one column) and no linearisation (it could not pay off even at the reference's first,
    slowest rate): double backward's loop is the only candidate, and no timing repeats are spent on it."""
    model, loss_fn, data = _problem()
    timed = []
    check = choice.Trial.check
    monkeypatch.setattr(choice.Trial, "check", lambda self, engine, **kw: timed.append(engine.label) or check(self, engine, **kw))
    op = hl.HessianOperator(model, loss_fn, data)
    hl.eigenvalues(op, k=1, which="largest")
    status = {c.label: c for c in op.engine_report.checks}
    assert timed == [] and op.engine == "double_backward+loop"
    assert status["double_backward+loop"].status == "chosen" and "only candidate" in status["double_backward+loop"].reason
    assert status["double_backward+vmap"].status == status["linearize+vmap"].status == "skipped"
    # where a linearisation could pay off, the reference is timed before it is weighed against one
    many = hl.HessianOperator(model, loss_fn, data)
    many.expect(10**7, 1)
    assert many.engine and timed[0] == "double_backward+loop" and any(t.startswith("linearize") for t in timed)


def _count_reference_calls(monkeypatch) -> list[int]:
    """The column count of every double-backward product call, from here on."""
    widths = []
    hvp = choice.DoubleBackwardEngine.hvp
    monkeypatch.setattr(choice.DoubleBackwardEngine, "hvp",
                        lambda self, tangents: widths.append(tangents[0].shape[0]) or hvp(self, tangents))
    return widths


def test_the_only_candidates_trial_product_is_the_first_products_answer(monkeypatch):
    """Where the reference is the only candidate and is kept as built, its trial run on the asking
    product's column is that product: one call per product, and the answer is H v to the last digit."""
    model, loss_fn, data = _problem()
    dense = hl.HessianOperator(model, loss_fn, data).dense()
    widths = _count_reference_calls(monkeypatch)
    op = hl.HessianOperator(model, loss_fn, data)
    op.expect(5, columns=1)
    v = torch.randn(op.n, 1, dtype=DT, generator=torch.Generator().manual_seed(3))
    hv = op @ v
    assert "only candidate" in op.engine_report.checks[0].reason
    assert widths == [1] and op.matvecs == 1
    assert torch.allclose(hv, dense @ v, rtol=1e-12, atol=1e-14)
    w = torch.randn(op.n, 1, dtype=DT, generator=torch.Generator().manual_seed(4))
    assert torch.allclose(op @ w, dense @ w, rtol=1e-12, atol=1e-14) and widths == [1, 1] and op.matvecs == 2
    # with two batches the kept engine is rebuilt over both: the trial's product (first batch) is not reused
    x, y = data
    two = hl.HessianOperator(model, loss_fn, [(x[:12], y[:12]), (x[12:], y[12:])])
    two.expect(5, columns=1)
    assert torch.allclose(two @ v, dense @ v, rtol=1e-12, atol=1e-14)


def test_candidates_are_compared_on_seeded_columns_not_the_callers(monkeypatch):
    """A first product's columns may be degenerate (here zero): where candidates are weighed, the trial
    moves to its seeded columns before any is checked against the reference."""
    model, loss_fn, data = _problem()
    op = hl.HessianOperator(model, loss_fn, data, engine="double_backward")
    params, batch = op._primal, op._engine.batches[0]
    zero = tuple(torch.zeros(2, *p.shape, dtype=DT) for p in params)
    trial, reference, _ = start_trial(op._loss, params, batch, 2, zero)
    assert trial.caller_columns and all(float(r.abs().max()) == 0 for r in trial.reference)
    seeded = trial.seeded(reference)
    own, _, _ = start_trial(op._loss, params, batch, 2)
    assert not seeded.caller_columns and not own.caller_columns
    for a, b in zip(seeded.tangents + seeded.reference, own.tangents + own.reference):
        assert torch.equal(a, b)
    # columns of another width than the trial's are not taken
    assert not start_trial(op._loss, params, batch, 1, zero)[0].caller_columns
    # through the operator: a zero first product with a linearisation worth weighing still verifies it
    checked = []
    check = choice.Trial.check
    monkeypatch.setattr(choice.Trial, "check",
                        lambda self, engine, **kw: checked.append(self.caller_columns) or check(self, engine, **kw))
    many = hl.HessianOperator(model, loss_fn, data)
    many.expect(10**7, 1)
    assert float((many @ torch.zeros(many.n, 1, dtype=DT)).abs().max()) == 0
    assert checked and not any(checked)
    assert any(c.label.startswith("linearize") and c.status in ("verified", "chosen") for c in many.engine_report.checks)


def test_after_a_comparison_the_kept_reference_loop_answers_the_first_product_too(monkeypatch):
    """Two columns, vmap weighed against the loop (the loop wins every tie here): the trial's run on the
    asking columns is that product's answer, and no engine call follows the choice for it."""
    from hesslens.operators import engine_slot

    model, loss_fn, data = _problem()
    dense = hl.HessianOperator(model, loss_fn, data).dense()
    monkeypatch.setattr(choice, "SPEED_MARGIN", 1e9)  # the first verified engine in PREFERENCE is kept
    widths = _count_reference_calls(monkeypatch)
    at_choice = []
    chooser = engine_slot.choose_engine
    monkeypatch.setattr(engine_slot, "choose_engine", lambda *a, **kw: (chooser(*a, **kw), at_choice.append(len(widths)))[0])
    op = hl.HessianOperator(model, loss_fn, data)
    op.expect(10, columns=2)
    v = torch.randn(op.n, 2, dtype=DT, generator=torch.Generator().manual_seed(5))
    hv = op @ v
    assert op.engine == "double_backward+loop"
    assert any(c.label == "double_backward+vmap" and c.status == "verified" for c in op.engine_report.checks)
    assert at_choice == [len(widths)] and op.matvecs == 2
    assert torch.allclose(hv, dense @ v, rtol=1e-12, atol=1e-14)


def test_a_streaming_choice_never_multiplies_the_callers_columns(monkeypatch):
    model, loss_fn, data = _problem()
    dense = hl.HessianOperator(model, loss_fn, data).dense()
    firsts = []
    starter = choice.start_trial
    monkeypatch.setattr(choice, "start_trial", lambda *a, **kw: firsts.append(a[4] if len(a) > 4 else kw.get("first"))
                        or starter(*a, **kw))
    op = hl.HessianOperator(model, loss_fn, data, cache_budget=1)
    op.expect(5, columns=1)
    v = torch.randn(op.n, 1, dtype=DT, generator=torch.Generator().manual_seed(6))
    hv = op @ v
    assert op.engine.startswith("streaming") and firsts == [None]
    assert torch.allclose(hv, dense @ v, rtol=1e-10, atol=1e-12)


def test_one_column_with_an_unavailable_linearisation_records_each_candidate_once():
    model, _, (x, _) = _problem()
    y = torch.randn(len(x), 3, dtype=DT, generator=torch.Generator().manual_seed(2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # linearize is unavailable with mse_loss: a warning says so
        op = hl.HessianOperator(model, nn.MSELoss(), (x, y))
        hl.eigenvalues(op, k=1, which="largest")
    labels = [c.label for c in op.engine_report.checks]
    assert len(labels) == len(set(labels))
    status = {c.label: c.status for c in op.engine_report.checks}
    assert status["linearize+vmap"] == status["linearize+loop"] == "unavailable"
    assert status["double_backward+vmap"] == "skipped"


def test_one_column_products_of_a_vmap_engine_take_the_verified_loop(monkeypatch):
    from hesslens.operators import engines

    model, loss_fn, data = _problem()
    op = hl.HessianOperator(model, loss_fn, data, engine="double_backward+vmap")
    assert op._engine.loop_for_one_column  # double backward's loop is the reference itself
    batched = []
    original_grad, original_loop = torch.autograd.grad, engines.vector_jacobian

    def recording(*args, **kwargs):
        batched.append(kwargs.get("is_grads_batched", False))
        return original_grad(*args, **kwargs)

    monkeypatch.setattr(engines.torch.autograd, "grad", recording)  # vmap's batched backward
    monkeypatch.setattr(engines, "vector_jacobian", lambda *a: batched.append(False) or original_loop(*a))  # one column
    n = sum(p.numel() for p in model.parameters())
    v = torch.randn(n, 3, dtype=DT, generator=torch.Generator().manual_seed(1))
    one, three = op.torch_matmat(v[:, :1]), op.torch_matmat(v)
    assert batched == [False, True]  # one column: the loop; three: vmap's batched backward
    torch.testing.assert_close(one, three[:, :1], rtol=1e-12, atol=1e-14)
    # a linearisation whose loop mode was not verified keeps vmap for one column too
    lin = hl.HessianOperator(model, loss_fn, data, engine="linearize+vmap")
    assert lin.engine == "linearize+vmap" and not lin._engine.loop_for_one_column
    torch.testing.assert_close(lin.torch_matmat(v[:, :1]), one, rtol=1e-10, atol=1e-12)


def test_the_auto_choice_lets_a_vmap_engine_take_the_loop_only_where_the_loop_was_verified(monkeypatch):
    model, loss_fn, data = _problem()
    monkeypatch.setattr(choice, "PREFERENCE", ("double_backward+vmap", "double_backward+loop",
                                               "linearize+vmap", "linearize+loop"))
    monkeypatch.setattr(choice, "SPEED_MARGIN", 1e9)  # the first verified label in PREFERENCE wins
    op = hl.HessianOperator(model, loss_fn, data, expected_matvecs=10)
    assert op.engine == "double_backward+vmap" and op._engine.loop_for_one_column


def test_on_a_slow_model_each_candidate_is_timed_at_its_best_measured_rate(monkeypatch):
    """The reference's first call is the first product of all (one-time costs in it): its one-column
    repeat counts too, as for every candidate, so the comparison is not tilted towards later ones."""
    model, loss_fn, data = _problem()
    op = hl.HessianOperator(model, loss_fn, data, engine="double_backward")
    params, batch = op._primal, op._engine.batches[0]
    trial, reference, _ = start_trial(op._loss, params, batch, 2)
    clock = iter([0.0, 0.5, 1.0, 1.1])  # first call 0.5 s for 2 columns, the repeat 0.1 s for 1

    monkeypatch.setattr(choice.time, "perf_counter", lambda: next(clock))
    trial.slow = True
    check, per_column = trial.check(reference)
    assert check.status == "verified" and per_column == pytest.approx(0.1)
    clock = iter([0.0, 0.2, 1.0, 1.5])  # a candidate whose repeat is the slower: its first call counts
    candidate = choice.DoubleBackwardEngine(op._loss, params, [batch], (1.0,), use_vmap=True)
    widths = []
    hvp = candidate.hvp
    monkeypatch.setattr(candidate, "hvp", lambda tangents: widths.append(tangents[0].shape[0]) or hvp(tangents))
    check, per_column = trial.check(candidate)
    assert check.status == "verified" and per_column == pytest.approx(0.1)
    # vmapped, it repeats at the trial's width: one column would time what its loop costs, not its batching
    assert widths == [2, 2]
    # beyond REFINE_RATIO × the best on its first call: not called again, and not verified (it cannot be chosen)
    clock = iter([0.0, 2 * 0.1 * REFINE_RATIO * 1.05])
    widths.clear()
    check, per_column = trial.check(candidate, best=0.1)
    assert check.status == "skipped" and widths == [2] and "not timed further" in check.reason
    assert per_column == pytest.approx(0.1 * REFINE_RATIO * 1.05) and check.relative_error <= trial.tolerance
    clock = iter([0.0, 2 * 0.1 * REFINE_RATIO * 0.95, 1.0, 1.2])  # within reach: repeated, and verified
    widths.clear()
    assert trial.check(candidate, best=0.1)[0].status == "verified" and widths == [2, 2]


def test_a_loop_repeats_on_one_column_and_a_clearly_slower_candidate_once(monkeypatch):
    """On a fast model a looping engine's two repeats are of one column (in use it multiplies one column
    at a time: its rate is per column); a candidate whose first repeat is beyond REFINE_RATIO × the best
    rate so far gets no second repeat, and is still checked on two calls."""
    model, loss_fn, data = _problem()
    op = hl.HessianOperator(model, loss_fn, data, engine="double_backward")
    params, batch = op._primal, op._engine.batches[0]
    trial, _, _ = start_trial(op._loss, params, batch, 2)
    assert not trial.slow and 1.2 < REFINE_RATIO < 1.4  # the rates below sit either side of it
    candidate = choice.DoubleBackwardEngine(op._loss, params, [batch], (1.0,), use_vmap=False)
    widths = []
    hvp = candidate.hvp
    monkeypatch.setattr(candidate, "hvp", lambda tangents: widths.append(tangents[0].shape[0]) or hvp(tangents))

    def run(ticks, **kw):
        clock = iter(ticks)
        monkeypatch.setattr(choice.time, "perf_counter", lambda: next(clock))
        widths.clear()
        return trial.check(candidate, **kw)

    check, per_column = run([0.0, 0.02, 1.0, 1.010, 2.0, 2.008])  # 2 columns in 20 ms, then 10 and 8 ms for 1
    assert check.status == "verified" and widths == [2, 1, 1] and per_column == pytest.approx(0.008)
    check, per_column = run([0.0, 0.02, 1.0, 1.014], best=0.01)  # 1.4× the best: not refined
    assert check.status == "verified" and widths == [2, 1] and per_column == pytest.approx(0.014)
    check, per_column = run([0.0, 0.02, 1.0, 1.012, 2.0, 2.011], best=0.01)  # within reach: refined
    assert widths == [2, 1, 1] and per_column == pytest.approx(0.011)
