"""HessianOperator products and dense matrices against exact float64 references, for every engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import hesslens as hl
from hesslens.operators.engines import ENGINES

from _operator_cases import BUILDERS, DT, _classification, _mlp, get_case, get_operator
from conftest import (_flat_function, assert_close64, concatenated_objective, reference_gradient, reference_hessian,
                      size_weights, weighted_objective)

ENGINE_NAMES = ("linearize", "double_backward", "streaming", "auto")



def _columns(n: int, k: int, seed: int) -> torch.Tensor:
    return torch.randn(n, k, generator=torch.Generator().manual_seed(seed), dtype=DT)


#: linearize (a traced linearisation per batch) and auto (which times four variants first) cost about
#: a second per case; the selection variants differ only in which parameters θ spans, so those run on
#: the cheap engines, with one of them ("params-mixed") and every other case on all four.
CHEAP_ONLY = {"params-names", "params-glob", "params-module", "params-tensors"}


def _table():
    for case_name in BUILDERS:
        for engine in ENGINE_NAMES:
            if case_name in CHEAP_ONLY and engine in ("linearize", "auto"):
                continue
            yield pytest.param(case_name, engine, id=f"{case_name}-{engine}")


@pytest.mark.parametrize("case_name, engine", list(_table()))
def test_products_and_dense_match_reference(case_name: str, engine: str) -> None:
    case = get_case(case_name)
    if engine == "linearize" and case.uses_mse:
        with pytest.raises(hl.EngineRefusedError, match="linearize.*mse_loss"):
            hl.HessianOperator(case.model, engine=engine, **case.kwargs)
        return
    op = get_operator(case_name, engine)
    assert op.param_names == case.names
    assert op.shape == (case.n, case.n)
    if engine == "auto":
        assert op.engine.split("+")[0] in ENGINES and op.engine_timings
        if case.uses_mse:
            assert op.engine.startswith("double_backward") and "mse_loss" in op.engine_reason
    else:
        assert op.engine.startswith(engine)

    before = op.matvecs
    v = _columns(case.n, 5, seed=11)
    assert_close64(op @ v, case.hessian @ v)  # raw products: no symmetrisation to hide errors
    one = op @ v[:, 0]
    assert one.shape == (case.n,)
    assert_close64(one, case.hessian @ v[:, 0])
    assert op.matvecs == before + 6

    dense = op.dense()
    assert dense.dtype == torch.float64
    assert_close64(dense, case.hessian)


def test_reference_is_not_degenerate() -> None:
    """The table would be toothless if references were trivially zero."""
    for name in BUILDERS:
        h = get_case(name).hessian
        assert torch.linalg.matrix_norm(h) > 1e-3, name
        assert torch.allclose(h, h.T, atol=1e-12), name


def test_unused_parameter_block_is_zero() -> None:
    case = get_case("unused-param")
    op = get_operator("unused-param", "double_backward")
    block = op.blocks["unused"]
    assert block == slice(0, 3)
    dense = op.dense()
    assert torch.count_nonzero(dense[block]) == 0 and torch.count_nonzero(dense[:, block]) == 0
    assert torch.linalg.matrix_norm(case.hessian[block]) == 0


def test_batch_weights_are_sizes_not_one_over_num_batches() -> None:
    """Batches of sizes 5 and 3: weights n_b/N. A 1/num_batches weighting is a different matrix,
    far outside the tolerance, so the table's match rules it out."""
    case = get_case("mlp-tanh-ce-mean")
    batches = case.kwargs["data"]
    ce = nn.CrossEntropyLoss()
    uniform = weighted_objective(lambda call, b: ce(call(b[0]), b[1]), batches, [1 / len(batches)] * len(batches))
    wrong = reference_hessian(case.model, uniform, case.names)
    gap = float((wrong - case.hessian).abs().max())
    assert gap > 1e-4
    for engine in ("double_backward", "streaming"):
        assert float((get_operator("mlp-tanh-ce-mean", engine).dense() - case.hessian).abs().max()) < 1e-6 * gap
    assert get_operator("mlp-tanh-ce-mean", "double_backward").data.weights("mean") == pytest.approx([5 / 8, 3 / 8])


def test_batchnorm_train_uses_each_batch_statistics() -> None:
    """Normalising all data as one batch gives another matrix; the operator must match the per-batch one."""
    case = get_case("bn-train")
    pooled = case.extra["pooled"]
    gap = float((pooled - case.hessian).abs().max())
    assert gap > 1e-3
    dense = get_operator("bn-train", "double_backward").dense()
    assert float((dense - case.hessian).abs().max()) < 1e-6 * gap
    eval_dense = get_operator("bn-eval", "streaming").dense()
    assert float((eval_dense - case.hessian).abs().max()) > 1e-3  # the mode matters


@pytest.mark.parametrize("name", sorted(ENGINES))
@pytest.mark.parametrize("use_vmap", [True, False], ids=["vmap", "loop"])
def test_every_engine_variant(name: str, use_vmap: bool) -> None:
    """The vmap and column-loop variants that engine='auto' may pick, on a hand-written loss."""
    case = get_case("mlp-tanh-ce-mean")
    model, batches = case.model, case.kwargs["data"]
    names = [n for n, _ in model.named_parameters()]

    def loss(params, batch):
        out = torch.func.functional_call(model, dict(zip(names, params)), (batch[0],))
        return nn.functional.cross_entropy(out, batch[1])

    primal = tuple(p.detach() for p in model.parameters())
    eng = ENGINES[name](loss, primal, batches, size_weights(batches), use_vmap=use_vmap)
    v = _columns(case.n, 3, seed=12)
    sizes = [p.numel() for p in primal]
    tangents = tuple(t.T.reshape(3, *p.shape) for t, p in zip(torch.split(v, sizes), primal))
    out = eng.hvp(tangents)
    hv = torch.cat([o.reshape(3, -1) for o in out], dim=1).T
    assert_close64(hv, case.hessian @ v)
    assert eng.label == f"{name}+{'vmap' if use_vmap else 'loop'}"


def test_chunked_columns() -> None:
    """max_columns=2 splits a 7-column product into chunks; the result is unchanged."""
    case = get_case("cnn")
    op = hl.HessianOperator(case.model, engine="double_backward", max_columns=2, **case.kwargs)
    assert op.max_columns == 2
    v = _columns(case.n, 7, seed=13)
    assert_close64(op @ v, case.hessian @ v)


def test_numpy_in_numpy_out() -> None:
    case = get_case("mlp-relu-ce-mean")
    op = get_operator("mlp-relu-ce-mean", "double_backward")
    v = _columns(case.n, 3, seed=14).numpy()
    out = op @ v
    assert isinstance(out, np.ndarray) and out.shape == v.shape and out.dtype == np.float64
    np.testing.assert_allclose(out, case.hessian.numpy() @ v, rtol=1e-10, atol=1e-10)
    one = op @ v[:, 0]
    assert isinstance(one, np.ndarray) and one.shape == (case.n,)


def test_to_scipy() -> None:
    case = get_case("cnn")
    lin = get_operator("cnn", "double_backward").to_scipy()
    assert lin.shape == (case.n, case.n) and lin.dtype == np.float64
    v = _columns(case.n, 2, seed=15).numpy()
    np.testing.assert_allclose(lin.matvec(v[:, 0]), case.hessian.numpy() @ v[:, 0], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(lin.matmat(v), case.hessian.numpy() @ v, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(lin @ v[:, 1], case.hessian.numpy() @ v[:, 1], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("case_name", ["mlp-tanh-ce-mean", "mlp-relu-mse-sum", "params-mixed", "unused-param"])
def test_gradient_matches_reference(case_name: str) -> None:
    case = get_case(case_name)
    loss_fn, batches = case.kwargs["loss_fn"], case.kwargs["data"]
    expected = reference_gradient(case.model, concatenated_objective(loss_fn, batches), case.names)
    got = get_operator(case_name, "double_backward").gradient()
    assert got.dtype == torch.float64 and got.shape == (case.n,)
    assert_close64(got, expected, tol=1e-12)
    with torch.no_grad():
        loss = float(loss_fn(case.model(torch.cat([b[0] for b in batches])), torch.cat([b[1] for b in batches])))
    assert get_operator(case_name, "double_backward").loss_value == pytest.approx(loss, rel=1e-12)


def test_gradient_batchnorm_train() -> None:
    case = get_case("bn-train")
    batches = case.kwargs["data"]
    ce = nn.CrossEntropyLoss()
    objective = weighted_objective(lambda call, b: ce(call(b[0]), b[1]), batches, size_weights(batches))
    expected = reference_gradient(case.extra["twin"], objective, case.names)
    assert_close64(get_operator("bn-train", "double_backward").gradient(), expected, tol=1e-12)


# -- data sources --------------------------------------------------------------------------------


def _loader_setup():
    model = _mlp(nn.Tanh, seed=20)
    g = torch.Generator().manual_seed(20)
    x, y = torch.randn(10, 4, generator=g, dtype=DT), torch.randint(0, 3, (10,), generator=g)
    ref = reference_hessian(model.eval(), concatenated_objective(nn.CrossEntropyLoss(), [(x, y)]))
    return model, x, y, ref


@pytest.mark.parametrize("engine", ["double_backward", "streaming"])
def test_dataloader_with_unequal_last_batch(engine: str) -> None:
    model, x, y, ref = _loader_setup()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4, drop_last=False)
    op = hl.HessianOperator(model, nn.CrossEntropyLoss(), loader, engine=engine)
    assert op.data.sizes == (4, 4, 2) and op.data.total == 10
    listed = hl.HessianOperator(model, nn.CrossEntropyLoss(), [(x[:4], y[:4]), (x[4:8], y[4:8]), (x[8:], y[8:])],
                                engine=engine)
    v = _columns(op.n, 4, seed=21)
    assert_close64(op @ v, listed @ v, tol=1e-13)
    assert_close64(op.dense(), ref)


def test_one_shot_generator_of_batches() -> None:
    model, x, y, ref = _loader_setup()
    batches = ((x[i:i + 3], y[i:i + 3]) for i in range(0, 10, 3))  # sizes 3, 3, 3, 1
    op = hl.HessianOperator(model, nn.CrossEntropyLoss(), batches, engine="streaming")
    assert op.data.sizes == (3, 3, 3, 1)
    v = _columns(op.n, 2, seed=22)
    first = op @ v
    assert_close64(first, ref @ v)
    assert_close64(op @ v, first, tol=0)  # a second pass sees the same data, not an exhausted iterator


def test_single_batch_tuple() -> None:
    model, x, y, ref = _loader_setup()
    op = hl.HessianOperator(model, nn.CrossEntropyLoss(), (x, y))
    assert op.data.sizes == (10,)
    assert_close64(op.dense(), ref)


def test_list_of_three_dict_batches_with_batch_loss() -> None:
    """Dict batches are fine in a list of three (and of two, below)."""
    case = get_case("dict-batch_loss")
    assert len(case.kwargs["data"]) == 3
    assert get_operator("dict-batch_loss", "double_backward").data.sizes == (5, 3, 4)
    assert_close64(get_operator("dict-batch_loss", "double_backward").dense(), case.hessian)


def test_list_of_two_dict_batches_with_batch_loss() -> None:
    case = get_case("dict-batch_loss")
    two = case.kwargs["data"][:2]
    op = hl.HessianOperator(case.model, batch_loss=case.kwargs["batch_loss"], data=two, engine="double_backward")
    assert op.data.sizes == (5, 3)


def test_float32_model_products_in_float32() -> None:
    """Products run in the model's dtype and come back as the caller's dtype; float32 round-off only."""
    case = get_case("mlp-tanh-ce-mean")
    model32 = _mlp(nn.Tanh).float()
    model32.load_state_dict({k: v.float() for k, v in case.model.state_dict().items()})
    data32 = [(x.float(), y) for x, y in _classification()]
    op = hl.HessianOperator(model32, nn.CrossEntropyLoss(), data32, engine="double_backward")
    assert op.dtype == torch.float32
    v = _columns(op.n, 3, seed=23)
    out = op @ v
    assert out.dtype == torch.float64
    assert_close64(out, case.hessian @ v, tol=1e-5)


class _TinyEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, 8)
        layer = nn.TransformerEncoderLayer(8, 2, 12, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.head = nn.Linear(8, 3)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(tokens)).mean(1))


@pytest.mark.parametrize("engine", ["auto", "linearize", "double_backward", "streaming"])
def test_attention_through_fused_kernels(engine: str) -> None:
    # The default CPU attention kernel has no forward-mode or double-backward derivative; the
    # operator evaluates attention with the math kernel and leaves the global kernel choice alone.
    from torch.nn.attention import SDPBackend, sdpa_kernel

    torch.manual_seed(3)
    model = _TinyEncoder().to(DT).eval()
    tokens, y = torch.randint(0, 11, (12, 5)), torch.randint(0, 3, (12,))
    flags = (torch.backends.cuda.flash_sdp_enabled(), torch.backends.cuda.mem_efficient_sdp_enabled(),
             torch.backends.cuda.math_sdp_enabled())
    op = hl.HessianOperator(model, nn.CrossEntropyLoss(), (tokens, y), engine=engine)
    assert (torch.backends.cuda.flash_sdp_enabled(), torch.backends.cuda.mem_efficient_sdp_enabled(),
            torch.backends.cuda.math_sdp_enabled()) == flags
    # Reverse-over-reverse reference: torch.func.hessian (forward-over-reverse through jacrev) is
    # wrong for LayerNorm weights in torch 2.13 (see docs/benchmarks.md).
    f, theta0 = _flat_function(model, concatenated_objective(nn.CrossEntropyLoss(), [(tokens, y)]), None)
    with sdpa_kernel(SDPBackend.MATH):
        hessian = torch.autograd.functional.hessian(f, theta0)
    v = _columns(op.n, 3, seed=5)
    assert_close64(op @ v, hessian @ v)
