"""hl.HessianOperator on peer cases (cases after curvlinops' test suite, see _peer_cases.py), every
product engine against a float64 double-backward reference.

The contract, for every case × engine: the operator's products agree with the reference to
round-off, **or** the constructor refuses with a hesslens error that names the engine and the
reason (a model with mse_loss refuses linearize; an engine whose products disagree with double
backward is refused with ``EngineRefusedError``). ``engine="auto"`` must always agree. Products are
also repeated: a cached engine whose second product differs from its first is wrong.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hesslens as hl
import hesslens.errors
from hesslens.errors import HesslensError

from _operator_cases import manual_batchnorm_twin
from _peer_cases import (BUILDERS, CASE_ENGINES, DT, ENGINES, SinWithWrongJvp, build, concat_objective,
                         double_backward_hessian, get_case, time_major_ce)
from conftest import assert_close64, reference_hessian, weighted_objective

from hesslens.errors import EngineRefusedError

LOOP_COLUMNS = 6  # loop engines push one column at a time: a few random columns decide, a dense matrix is slow


def _columns(n: int, k: int, seed: int) -> torch.Tensor:
    return torch.randn(n, k, generator=torch.Generator().manual_seed(seed), dtype=DT)


def _table():
    for case_name in BUILDERS:
        for engine in CASE_ENGINES[case_name]:
            yield pytest.param(case_name, engine, id=f"{case_name}-{engine}")


def _operator_or_refusal(case_name: str, engine: str):
    """The case's operator, or None after checking that the refusal is a proper one."""
    case, built = get_case(case_name), build(case_name, engine)
    if built.error is None:
        return built.op
    err = built.error
    if engine == "auto" or not isinstance(err, HesslensError):
        raise err  # auto must always give a verified engine; anything else is a crash, not a refusal
    message = str(err)
    name = engine.split("+")[0]
    if case.uses_mse and name == "linearize":
        assert "linearize" in message and "mse_loss" in message, message
        return None
    assert isinstance(err, EngineRefusedError), f"{type(err).__name__}: {message}"
    assert engine in message, f"the refusal does not name engine {engine!r}: {message}"
    return None


@pytest.mark.parametrize("case_name, engine", list(_table()))
def test_products_match_double_backward(case_name: str, engine: str) -> None:
    case = get_case(case_name)
    op = _operator_or_refusal(case_name, engine)
    if op is None:
        return
    assert op.param_names == case.names
    assert op.shape == (case.n, case.n)
    if engine == "auto":
        assert op.engine in ENGINES[1:]
    else:
        assert op.engine == engine
    if engine.endswith("+loop"):
        v = _columns(case.n, LOOP_COLUMNS, seed=1)
        assert_close64(op @ v, case.hessian @ v, tol=case.tol)
    else:
        dense = op.dense()
        assert dense.dtype == torch.float64
        assert_close64(dense, case.hessian, tol=case.tol)


@pytest.mark.parametrize("case_name, engine", list(_table()))
def test_repeated_products_agree(case_name: str, engine: str) -> None:
    """Three products with the same columns: identical to round-off, and right (the linearize defect
    was a first product right and the second and third different)."""
    case = get_case(case_name)
    op = _operator_or_refusal(case_name, engine)
    if op is None:
        return
    v = _columns(case.n, 2, seed=2)
    first, second, third = op @ v, op @ v, op @ v
    scale = max(1.0, float(first.abs().max()))
    round_off = 1e-12 if op.dtype == torch.float64 else 1e-5
    for again in (second, third):
        assert float((again - first).abs().max()) <= round_off * scale
    assert_close64(third, case.hessian @ v, tol=case.tol)


#: Cases on which every engine has always agreed with the reference (torch 2.13): a refusal there
#: would be an engine check that is too strict, which the either-or contract above lets through.
NEVER_REFUSED = ("mlp-tanh-ce-mean", "cnn", "seq-ce-mean", "bn-train", "layernorm", "transformer-tied", "unused-linear",
                 "float32")


@pytest.mark.parametrize("case_name", NEVER_REFUSED)
def test_sound_engines_are_not_refused(case_name: str) -> None:
    for engine in CASE_ENGINES[case_name]:
        built = build(case_name, engine)
        assert built.error is None, f"{engine}: {type(built.error).__name__}: {built.error}"


# -- the references are right and not degenerate -------------------------------------------------


def test_reference_matches_closed_form() -> None:
    """Linear least squares with MSE(mean): H = (2/N) X̃ᵀX̃, X̃ = [X, 1]."""
    case = get_case("lstsq")
    assert_close64(case.hessian, case.extra["closed_form"], tol=1e-13)
    assert torch.linalg.matrix_norm(case.extra["closed_form"]) > 0.1


@pytest.mark.parametrize("case_name", ["mlp-tanh-ce-mean", "cnn", "mlp-tanh-bce-mean"])
def test_reference_agrees_with_forward_over_reverse(case_name: str) -> None:
    """Double backward and torch.func.hessian (forward-over-reverse, tests/conftest.py) agree where
    the latter is known to be right."""
    case = get_case(case_name)
    loss_fn, batches = case.kwargs["loss_fn"], case.kwargs["data"]
    other = reference_hessian(case.model, concat_objective(loss_fn, batches), case.names)
    assert_close64(case.hessian, other, tol=1e-12)


def test_batchnorm_train_reference() -> None:
    """The train-mode reference (nn.BatchNorm1d in train mode, by double backward) equals that of a
    BatchNorm written out in elementary operations with batch statistics; normalising the two
    batches as one gives a different matrix, so the case discriminates."""
    case = get_case("bn-train")
    twin = manual_batchnorm_twin(case.model, batch_stats=True)
    manual = double_backward_hessian(twin, case.extra["objective"], case.names)
    assert_close64(case.hessian, manual, tol=1e-12)
    assert float((case.extra["pooled"] - case.hessian).abs().max()) > 1e-3
    assert float((get_case("bn-eval").hessian - case.hessian).abs().max()) > 1e-3


def test_references_are_not_degenerate() -> None:
    """Every reference is symmetric, non-zero, with non-zero entries off the diagonal and, where θ
    spans several tensors, non-zero blocks between different parameter tensors."""
    for name in BUILDERS:
        case = get_case(name)
        h = case.hessian
        scale = float(h.abs().max())
        assert scale > 1e-3, name
        assert_close64(h, h.T, tol=1e-12)
        off = h - torch.diag(torch.diagonal(h))
        assert float(off.abs().max()) > 1e-4 * scale, name
        named = dict(case.model.named_parameters())
        sizes = [named[n].numel() for n in case.names]
        if len(sizes) > 1:
            mask = torch.block_diag(*[torch.ones(s, s) for s in sizes]).bool()
            assert float(h[~mask].abs().max()) > 1e-4 * scale, name


def test_batch_weights_are_sizes() -> None:
    """Batches of 5 and 3 weighted 1/2 each (or by the leading dimension T of time-major inputs) give
    another matrix, far outside the tolerance: the table's agreement rules those weightings out."""
    case = get_case("mlp-tanh-ce-mean")
    batches, ce = case.kwargs["data"], nn.CrossEntropyLoss()
    uniform = weighted_objective(lambda call, b: ce(call(b[0]), b[1]), batches, [0.5, 0.5])
    assert float((double_backward_hessian(case.model, uniform, case.names) - case.hessian).abs().max()) > 1e-3

    gru = get_case("gru-time-major-int")
    batches = gru.kwargs["data"]
    assert [b[0].shape[1] for b in batches] == [1, 5] and all(b[0].shape[0] == 3 for b in batches)
    by_leading_dim = weighted_objective(lambda call, b: time_major_ce(call(b[0]), b[1]), batches, [0.5, 0.5])
    wrong = double_backward_hessian(gru.model, by_leading_dim, gru.names)
    assert float((wrong - gru.hessian).abs().max()) > 1e-3
    right = weighted_objective(lambda call, b: time_major_ce(call(b[0]), b[1]), batches, [1 / 6, 5 / 6])
    assert_close64(double_backward_hessian(gru.model, right, gru.names), gru.hessian, tol=1e-12)


def test_sum_is_total_over_samples() -> None:
    """reduction='sum' is the Hessian of the total: N × the mean's, batches weighted 1."""
    mean, total = get_case("fn-ce-mean-probed"), get_case("fn-ce-sum-declared")
    assert_close64(total.hessian, 8 * mean.hessian, tol=1e-12)


# -- parameters --------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", CASE_ENGINES["unused-linear"])
def test_unused_linear_rows_and_columns_are_exactly_zero(engine: str) -> None:
    case = get_case("unused-linear")
    block = case.extra["unused"]
    assert torch.count_nonzero(case.hessian[block]) == 0 and torch.count_nonzero(case.hessian[:, block]) == 0
    op = _operator_or_refusal("unused-linear", engine)
    if op is None:
        return
    assert op.blocks["unused.weight"] == slice(20, 26) and op.blocks["unused.bias"] == slice(26, 28)
    v = _columns(case.n, 4, seed=3)
    assert torch.count_nonzero((op @ v)[block]) == 0  # its rows
    only_unused = torch.zeros_like(v)
    only_unused[block] = v[block]
    assert torch.count_nonzero(op @ only_unused) == 0  # its columns


def test_frozen_parameters_excluded_and_selectable() -> None:
    case = get_case("frozen")
    op = build("frozen", "double_backward+vmap").op
    assert op.param_names == ["0.bias", "2.weight"]
    assert case.model[0].weight.requires_grad is False  # left as found
    # Selecting a frozen tensor explicitly is honoured: the Hessian over it is that of the function.
    explicit = hl.HessianOperator(case.model, case.kwargs["loss_fn"], case.kwargs["data"], params=["0.weight"],
                                  engine="double_backward+vmap")
    expected = double_backward_hessian(case.model, concat_objective(case.kwargs["loss_fn"], case.kwargs["data"]),
                                       ["0.weight"])
    assert_close64(explicit.dense(), expected)
    assert case.model[0].weight.requires_grad is False


def test_tied_embedding_is_one_parameter() -> None:
    case = get_case("transformer-tied")
    op = build("transformer-tied", "double_backward+vmap").op
    assert op.param_names[0] == "embed.weight" and "out.weight" not in op.param_names
    assert case.model.out.weight is case.model.embed.weight


# -- reductions, batch dimensions, tuple inputs, the engine report ----------------------------------------------------------------------


@pytest.mark.parametrize("case_name", [n for n in BUILDERS if n.startswith(("fn-", "mlp-"))])
def test_reduction_attribute(case_name: str) -> None:
    """op.reduction: the declared reduction, the loss module's, or the probed one of a plain function."""
    case = get_case(case_name)
    op = _operator_or_refusal(case_name, "double_backward+vmap")
    assert op.reduction == case.reduction


def test_reduction_argument_is_checked() -> None:
    case = get_case("fn-ce-sum-declared")
    with pytest.raises(HesslensError, match="reduction"):
        hl.HessianOperator(case.model, case.kwargs["loss_fn"], case.kwargs["data"], reduction="average")


def test_single_batch_with_tuple_inputs_is_one_batch() -> None:
    op = _operator_or_refusal("tuple-inputs", "double_backward+vmap")
    assert op.data.sizes == (6,)


@pytest.mark.parametrize("case_name", ["gru-time-major-int", "gru-time-major-pair", "gru-time-major-nested"])
def test_batch_dim_sizes(case_name: str) -> None:
    op = _operator_or_refusal(case_name, "double_backward+vmap")
    assert op.data.sizes == (1, 5)


def _report_checks(op) -> list:
    report = op.engine_report
    assert report is not None
    assert report.engine == op.engine
    return list(report.checks)


@pytest.mark.parametrize("case_name", ["mlp-tanh-ce-mean", "mlp-tanh-bce-mean", "lstm-tagger", "gru-tagger",
                                       "mlp-relu-mse-mean", "wrong-jvp"])
def test_engine_report_of_auto(case_name: str) -> None:
    """Every engine auto considered was checked against double backward: the chosen one agreed,
    each of the others is recorded as verified or refused with its reason."""
    op = _operator_or_refusal(case_name, "auto")
    checks = _report_checks(op)
    tolerance = op.engine_report.tolerance
    labels = [c.label for c in checks]
    assert op.engine in labels
    assert set(labels) <= set(ENGINES[1:])
    for c in checks:
        assert c.status in ("chosen", "verified", "refused", "unavailable"), c
        if c.status in ("refused", "unavailable"):
            assert c.reason, c
        else:  # used or usable only after agreeing with double backward
            assert c.relative_error is not None and c.relative_error <= tolerance, c
        if c.label == op.engine:
            assert c.status == "chosen"
    if case_name == "mlp-relu-mse-mean":
        assert all(c.status == "unavailable" and "mse_loss" in c.reason for c in checks if c.label.startswith("linearize"))
    if case_name == "wrong-jvp":  # forward-over-reverse is wrong by O(1) here: linearize cannot pass
        assert op.engine.startswith("double_backward")
        lin = [c for c in checks if c.label.startswith("linearize")]
        assert lin and all(c.status in ("refused", "unavailable") for c in lin)


@pytest.mark.parametrize("engine", ["linearize+vmap", "linearize+loop"])
def test_requested_engine_that_disagrees_is_refused(engine: str) -> None:
    """linearize (forward-over-reverse by construction) cannot reproduce a model whose jvp is wrong:
    asked for by name it is refused with EngineRefusedError naming the engine, not a wrong matrix.
    (Streaming may instead fall back to double backward; the table checks it agrees or refuses.)"""
    case = get_case("wrong-jvp")
    with pytest.raises(EngineRefusedError, match=engine.replace("+", r"\+")):
        hl.HessianOperator(case.model, engine=engine, **case.kwargs)


def test_wrong_jvp_case_is_wrong_only_forward_mode() -> None:
    """The planted defect: torch.func.hessian (forward-over-reverse) of the case is O(1) off,
    double backward is not (so the refusals above are deserved)."""
    case = get_case("wrong-jvp")
    fwd = reference_hessian(case.model, concat_objective(case.kwargs["loss_fn"], case.kwargs["data"]), case.names)
    assert float((fwd - case.hessian).abs().max()) > 1e-2 * float(case.hessian.abs().max())
    x = torch.linspace(-1, 1, 5, dtype=DT, requires_grad=True)
    (g,) = torch.autograd.grad(SinWithWrongJvp.apply(x).sum(), x, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), x)
    assert_close64(gg, -torch.sin(x.detach()), tol=1e-14)


def test_float32_operator_runs_in_float32() -> None:
    case = get_case("float32")
    op = build("float32", "double_backward+vmap").op
    assert op.dtype == torch.float32
    # The float32 model against the float64 reference: agreement to float32 round-off only, and far
    # from a float64-level match (the comparison really is across precisions).
    err = float((op.dense() - case.hessian).abs().max())
    assert err <= case.tol * max(1.0, float(case.hessian.abs().max()))
    assert err > 1e-12
