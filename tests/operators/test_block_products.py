"""Block products (Engine.block_hvp, HessianOperator.block_torch_matmat, BlockView.matmat over a
HessianOperator): pruned products against the padded products and the slices of the dense float64
Hessian for every engine, BatchNorm in both modes, unused parameters, unequal batches; the engine
of block products for operators that cannot prune, its checks and its refusals; the per-block
algorithms unchanged to round-off."""

from __future__ import annotations

import contextlib
import functools
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

import hesslens as hl
from hesslens.errors import InvalidInputError
from hesslens.operators import block_products
from hesslens.operators.base import SymmetricOperator
from hesslens.operators.blocks import BlockView
from hesslens.operators.engines import ENGINES, BlockLinearizeEngine, DoubleBackwardEngine, Engine, StreamingEngine
from hesslens.operators.state import preserved_state

from conftest import assert_close64, concatenated_objective, reference_hessian

DT = torch.float64
ENGINE_LABELS = ["double_backward+vmap", "double_backward+loop", "linearize+vmap", "linearize+loop",
                 "streaming+vmap", "streaming+loop"]


class WithUnused(nn.Module):
    """An MLP with a module (its own "auto" block) that the forward pass never calls."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.unused, self.fc2 = nn.Linear(3, 4), nn.Linear(2, 2), nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.fc1(x)))


def _batches(g: torch.Generator, shape: tuple[int, ...], sizes: tuple[int, ...], classes: int = 3):
    return [(torch.randn(n, *shape, generator=g, dtype=DT), torch.randint(0, classes, (n,), generator=g)) for n in sizes]


@functools.lru_cache(maxsize=None)
def case(name: str):
    """(model, data, mode) of a tiny float64 model; data are several batches of unequal size."""
    g = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    if name == "mlp":
        model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).to(DT)
        return model, _batches(g, (4,), (7, 4, 2)), "eval"
    if name.startswith("cnn-bn"):
        model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.Tanh(), nn.Flatten(),
                              nn.Linear(2 * 4 * 4, 3)).to(DT)
        with torch.no_grad():
            model[1].running_mean.copy_(torch.tensor([0.2, -0.1], dtype=DT))
            model[1].running_var.copy_(torch.tensor([0.8, 1.3], dtype=DT))
            model[1].weight.copy_(torch.tensor([1.2, 0.7], dtype=DT))
        return model, _batches(g, (1, 4, 4), (5, 3)), name.split("-")[-1]
    if name == "unused":
        return WithUnused().to(DT), _batches(g, (3,), (6, 3)), "eval"
    raise ValueError(name)


CASES = ["mlp", "cnn-bn-eval", "cnn-bn-train", "unused"]


@functools.lru_cache(maxsize=None)
def operator(name: str, engine: str) -> hl.HessianOperator:
    model, data, mode = case(name)
    return hl.HessianOperator(model, nn.CrossEntropyLoss(), data, mode=mode, engine=engine)


@functools.lru_cache(maxsize=None)
def dense(name: str) -> torch.Tensor:
    return operator(name, "double_backward+loop").dense()


def _columns(n: int, k: int, seed: int) -> torch.Tensor:
    return torch.randn(n, k, generator=torch.Generator().manual_seed(seed), dtype=DT)


def _indices(view: BlockView, i: int) -> torch.Tensor:
    return torch.cat([torch.arange(s.start, s.stop) for s in view.slices(i)])


def _close(a: torch.Tensor, b: torch.Tensor, scale: float, tol: float = 1e-12) -> None:
    err = float((a - b).abs().max()) if a.numel() else 0.0
    assert err <= tol * scale, f"max abs error {err:.3e} > {tol:.0e} × {scale:.3e}"


def padded_view(view: BlockView) -> BlockView:
    """The same blocks over the operator's plain product (no block product to find)."""
    op = view.operator.source
    return BlockView(SymmetricOperator(op.n, op.torch_matmat), view.names, view.ranges, view.params)


# -- the view's products ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mlp", "unused", "cnn-bn-eval"])
def test_the_dense_references_are_independent_hessians(name):
    """The dense Hessians the block products are compared with, against torch.func.hessian of the loss
    over all samples at once (batches of unequal size: the weights n_b/N are right)."""
    model, data, mode = case(name)
    with preserved_state(model, mode):
        assert_close64(dense(name), reference_hessian(model, concatenated_objective(nn.CrossEntropyLoss(), data)),
                       tol=1e-12)


@pytest.mark.parametrize("engine", ENGINE_LABELS)
@pytest.mark.parametrize("name", CASES)
def test_block_products_equal_padded_products_and_dense_slices(name, engine):
    op = operator(name, engine)
    h = dense(name)
    scale = float(h.abs().max())
    view = hl.blocks(op)
    assert view._plan is not None and view._plan[0] is op
    vs = [_columns(s, 3, seed=i) for i, s in enumerate(view.sizes)]
    before, product_seconds = op.matvecs, op.product_seconds
    pruned = view.matmat(vs)
    assert op.matvecs - before == 3 * len(view) == view.matvecs and op.product_seconds > product_seconds
    padded = view.padded_matmat(vs)
    assert view.matvecs == 6 * len(view)
    for i, (v, a, b) in enumerate(zip(vs, pruned, padded)):
        idx = _indices(view, i)
        assert a.dtype == DT and a.shape == v.shape
        _close(a, b, scale)
        _close(a, h[idx][:, idx] @ v, scale)
    assert op.engine_report.block_engine  # recorded at the first block product
    if engine.startswith("double_backward"):
        assert op.engine_report.block_engine == op.engine and not op.engine_report.block_checks


def test_unused_parameters_make_a_zero_block():
    op = operator("unused", "double_backward+loop")
    view = hl.blocks(op)
    assert view.names == ("fc1", "unused", "fc2")
    out = view.matmat([_columns(s, 2, 9 + i) for i, s in enumerate(view.sizes)])
    assert float(out[1].abs().max()) == 0.0
    idx = _indices(view, 1)
    assert len(idx) == 6 and float(dense("unused")[idx].abs().max()) == 0.0  # the reference agrees: zero rows
    alone = view.subset(["unused"])
    assert float(alone.matmat([_columns(6, 3, 1)])[0].abs().max()) == 0.0
    sd = hl.spectral_density(alone, steps=4, probes=2, seed=0)
    assert np.allclose(sd["unused"].nodes[sd["unused"].weights > 0], 0.0)
    assert np.allclose(hl.exact_spectrum(view)["unused"], 0.0)
    assert hl.trace(alone, 6, method="hutch++")["unused"].estimate == 0.0


def test_none_and_empty_blocks_and_block_operators():
    op = operator("mlp", "double_backward+vmap")
    h = dense("mlp")
    view = hl.blocks(op)
    before = op.matvecs
    out = view.matmat([None, torch.zeros(18, 0, dtype=DT)])
    assert out[0] is None and out[1].shape == (18, 0) and op.matvecs == before
    v = _columns(view.sizes[1], 2, 4)
    out = view.matmat([None, v])
    assert out[0] is None and op.matvecs == before + 2
    idx = _indices(view, 1)
    _close(out[1], h[idx][:, idx] @ v, float(h.abs().max()))
    _close(view.block(1).matmat(v), out[1], float(h.abs().max()))


def test_blocks_cutting_through_parameters_pad_only_within_them():
    """from_slices over a HessianOperator: a block taking part of a weight multiplies H_PP of the
    parameters it touches, with its vectors padded to them, and keeps its own rows."""
    op = operator("mlp", "double_backward+loop")
    h = dense("mlp")
    view = BlockView.from_slices(op, {"a": [slice(3, 11), slice(22, 24)], "b": [slice(0, 3), slice(30, 40)],
                                      "c": slice(41, 43)})
    _, plan = view._plan
    assert plan.groups == ((0, 1), (0, 2), (3,)) and plan.rows == (25, 35, 3)
    assert plan.local == (((3, 11), (22, 24)), ((0, 3), (25, 35)), ((1, 3),))
    assert hl.blocks(op)._plan[1].local == (None, None)  # whole parameters: nothing to pad
    vs = [_columns(s, 2, 20 + i) for i, s in enumerate(view.sizes)]
    for i, (v, hv) in enumerate(zip(vs, view.matmat(vs))):
        idx = _indices(view, i)
        _close(hv, h[idx][:, idx] @ v, float(h.abs().max()))


def test_chunks_of_max_columns_change_nothing():
    h = dense("mlp")
    scale = float(h.abs().max())
    model, data, _ = case("mlp")
    for engine in ("double_backward+loop", "linearize+loop"):
        op = hl.HessianOperator(model, nn.CrossEntropyLoss(), data, engine=engine, max_columns=2)
        view = hl.blocks(op)
        vs = [_columns(s, 5, 30 + i) for i, s in enumerate(view.sizes)]
        for i, (v, hv) in enumerate(zip(vs, view.matmat(vs))):
            idx = _indices(view, i)
            _close(hv, h[idx][:, idx] @ v, scale)
        assert op.matvecs == 5 * len(view) == view.matvecs


def test_rounds():
    assert block_products.rounds([3, 0, 5], 2, True) == [[(0, 0, 2), (2, 0, 2)], [(0, 2, 3), (2, 2, 4)], [(2, 4, 5)]]
    assert block_products.rounds([3, 0, 5], 4, False) == [[(0, 0, 3), (2, 0, 1)], [(2, 1, 5)]]
    assert block_products.rounds([], 4, True) == [] and block_products.rounds([0], 4, False) == []


def test_block_torch_matmat_refuses_bad_groups():
    op = operator("mlp", "double_backward+loop")
    for groups in ([[4]], [[1, 0]], [[0, 0]], [[]]):
        with pytest.raises(InvalidInputError, match="strictly ascending lists of parameter indices in \\[0, 4\\)"):
            op.block_torch_matmat(groups, [torch.zeros(3, 1, dtype=DT)])
    with pytest.raises(InvalidInputError, match=r"m_i = \[25\]"):
        op.block_torch_matmat([[0, 1]], [torch.zeros(24, 1, dtype=DT)])


# -- the engines ------------------------------------------------------------------------------------


def _engine(name: str, label: str, **extra) -> tuple[Engine, hl.HessianOperator]:
    """An engine over the operator's loss and batches (built, like the operator's, in its mode)."""
    op = operator(name, "double_backward+loop")
    kind, mode = label.split("+")
    with preserved_state(op.model, op.mode):
        engine = ENGINES[kind](op._loss, op._primal, list(op.data), op.data.weights(op.reduction),
                               use_vmap=mode == "vmap", **extra)
    return engine, op


def _in_mode(op: hl.HessianOperator):
    """What the operator's products run in: its mode, the model's state preserved, no grad."""
    stack = contextlib.ExitStack()
    stack.enter_context(preserved_state(op.model, op.mode))
    stack.enter_context(torch.no_grad())
    return stack


def _tangents(op: hl.HessianOperator, groups, columns: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return [tuple(torch.randn(columns, *op.param_shapes[j], generator=g, dtype=DT) for j in grp) for grp in groups]


@pytest.mark.parametrize("label", ["double_backward+vmap", "double_backward+loop", "streaming+vmap", "streaming+loop"])
@pytest.mark.parametrize("name", ["mlp", "cnn-bn-train", "unused"])
def test_engine_block_hvp_is_the_padded_product(name, label):
    """Engine.block_hvp of the pruning engines (double backward kept or streamed) against the base
    class's padded product of the same engine, per parameter tensor; groups need not be in order,
    nor cover every parameter, nor be disjoint (each block is its own product)."""
    engine, op = _engine(name, label, **({"forward_mode": False} if label.startswith("streaming") else {}))
    assert engine.pruned_blocks
    groups = [(2, 3), (0,), (0, 2)] if len(op.param_shapes) == 4 else [(4, 5), (0, 1), (2,), (1, 4)]
    tangents = _tangents(op, groups, 3, 5)
    with _in_mode(op):
        pruned = engine.block_hvp(groups, tangents)
        padded = Engine.block_hvp(engine, groups, tangents)
    scale = max(float(t.abs().max()) for block in padded for t in block)
    for a, b in zip(pruned, padded):
        for x, y in zip(a, b):
            assert x.shape == y.shape
            _close(x, y, scale)


def test_streaming_block_product_shares_one_graph_per_batch():
    """Streaming double backward: one forward (and first backward) per batch for all blocks."""
    op = operator("mlp", "double_backward+loop")
    calls = []

    def loss(params, batch):
        calls.append(1)
        return op._loss(params, batch)

    engine = StreamingEngine(loss, op._primal, list(op.data), op.data.weights(op.reduction), use_vmap=False,
                             forward_mode=False)
    groups = [(0, 1), (2, 3)]
    with _in_mode(op):
        engine.block_hvp(groups, _tangents(op, groups, 2, 0))
    assert len(calls) == len(op.data) == 3


@pytest.mark.parametrize("label", ["linearize+vmap", "linearize+loop", "streaming+vmap", "streaming+loop"])
def test_forward_mode_engines_multiply_padded_columns(label):
    engine, op = _engine("cnn-bn-train", label)
    reference, _ = _engine("cnn-bn-train", "double_backward+loop")
    assert not engine.pruned_blocks
    groups = [(4, 5), (0, 1), (2,)]
    tangents = _tangents(op, groups, 2, 6)
    with _in_mode(op):
        out, ref = engine.block_hvp(groups, tangents), reference.block_hvp(groups, tangents)
    scale = max(float(t.abs().max()) for block in ref for t in block)
    for a, b in zip(out, ref):
        for x, y in zip(a, b):
            _close(x, y, scale)


# -- the engine of block products for operators that cannot prune -------------------------------------


def _fresh(engine: str, **kwargs) -> hl.HessianOperator:
    model, data, mode = case("cnn-bn-eval")
    return hl.HessianOperator(model, nn.CrossEntropyLoss(), data, mode=mode, engine=engine, **kwargs)


def test_block_engine_is_verified_timed_and_recorded():
    op = _fresh("linearize+loop")
    assert op.engine_report.block_engine == "" and "block_products" not in op.engine_report.to_dict()
    view = hl.blocks(op)
    view.matmat([_columns(s, 1, i) for i, s in enumerate(view.sizes)])
    report = op.engine_report
    labels = [c.label for c in report.block_checks]
    assert labels == ["linearize+loop (padded)", "double_backward+loop (pruned)", "double_backward+vmap (pruned)",
                      "linearize+loop (pruned per block)", "linearize+vmap (pruned per block)"]
    chosen = [c.label for c in report.block_checks if c.status == "chosen"]
    assert chosen and report.block_reason
    if report.block_engine.startswith("per block: "):  # each block its fastest: every one it names was chosen
        assert all(label in report.block_engine for label in chosen)
    else:
        assert chosen == [report.block_engine]
    assert all(c.relative_error <= report.tolerance for c in report.block_checks[1:])
    assert "block products" in report.build_seconds and report.to_dict()["block_products"]["engine"] == report.block_engine
    assert op.engine == "linearize+loop"  # the operator's own products are unchanged
    first = op._block_engine
    view.matmat([_columns(s, 1, i) for i, s in enumerate(view.sizes)])
    assert op._block_engine is first and op.engine_report is report  # chosen once


def test_block_engine_keeps_padded_products_when_pruning_is_not_faster():
    op = _fresh("linearize+vmap")
    checks = tuple(replace(c, seconds_per_column=1e-12) if c.status == "chosen" else c for c in op.engine_report.checks)
    op.engine_report = replace(op.engine_report, checks=checks)  # as if padded products were free
    h = dense("cnn-bn-eval")
    view = hl.blocks(op)
    vs = [_columns(s, 2, i) for i, s in enumerate(view.sizes)]
    for i, hv in enumerate(view.matmat(vs)):
        idx = _indices(view, i)
        _close(hv, h[idx][:, idx] @ vs[i], float(h.abs().max()))
    assert op.engine_report.block_engine == "linearize+vmap (padded)" and op._block_engine is op._engine
    assert "no pruned candidate faster" in op.engine_report.block_reason


def test_block_engine_refuses_a_disagreeing_candidate(monkeypatch):
    original = DoubleBackwardEngine.block_hvp

    def off(self, groups, tangents):
        return [tuple(1.01 * t for t in block) for block in original(self, groups, tangents)]

    monkeypatch.setattr(DoubleBackwardEngine, "block_hvp", off)
    op = _fresh("linearize+loop")
    h = dense("cnn-bn-eval")
    view = hl.blocks(op)
    vs = [_columns(s, 1, i) for i, s in enumerate(view.sizes)]
    for i, hv in enumerate(view.matmat(vs)):
        idx = _indices(view, i)
        _close(hv, h[idx][:, idx] @ vs[i], float(h.abs().max()))
    refused = [c for c in op.engine_report.block_checks if c.status == "refused"]
    assert len(refused) == 2 and all("differ from double backward" in c.reason for c in refused)
    assert {c.label for c in refused} == {"double_backward+loop (pruned)", "double_backward+vmap (pruned)"}
    assert "double_backward" not in op.engine_report.block_engine


@pytest.mark.parametrize("use_vmap", [False, True])
@pytest.mark.parametrize("name", CASES)
def test_per_block_linearisations_are_the_dense_blocks(name, use_vmap):
    """BlockLinearizeEngine over several batches (weights n_b/N): H_ii V_i of the dense Hessian, block by block,
    on every kind of model the block engine may be chosen for (a linearize operator)."""
    op = operator(name, "linearize+loop")
    view = hl.blocks(op)
    groups = [tuple(op.param_names.index(p) for p in params) for params in view.params]
    h = dense(name)
    scale = float(h.abs().max())
    with preserved_state(op.model, op.mode):  # as the operator multiplies (BatchNorm in the operator's mode)
        engine = BlockLinearizeEngine(op._loss, op._primal, list(op.data), op.data.weights(op.reduction), use_vmap,
                                      groups)
        for i, g in enumerate(groups):
            v = _columns(view.sizes[i], 2, i)
            tangent = block_products._split(v.to(op.dtype), [op.param_shapes[j] for j in g])
            (out,) = engine.block_hvp([g], [tangent])
            hv = torch.cat([o.reshape(2, -1) for o in out], dim=1).T
            idx = _indices(view, i)
            _close(hv, h[idx][:, idx] @ v, scale)
        with pytest.raises(NotImplementedError):
            engine.hvp(tangent)


def test_a_mixed_block_engine_gives_every_block_its_own_engine(monkeypatch):
    """Where the per-block trial times favour different engines for different blocks — here made so: the
    per-block linearisation slow on the first block, pruned double backward slow on the others, padded
    products dear — the view multiplies each block with its own engine, and the products are the dense blocks."""
    import time

    import hesslens.operators.block_products as bp

    def slowed(method, slow):
        def run(self, groups, tangents):
            if slow(tuple(groups[0])):
                time.sleep(0.02)
            return method(self, groups, tangents)
        return run

    op = _fresh("linearize+loop", expected_matvecs=10_000)
    checks = tuple(replace(c, seconds_per_column=1.0) if c.status == "chosen" else c for c in op.engine_report.checks)
    op.engine_report = replace(op.engine_report, checks=checks)  # as if padded products were dear
    view = hl.blocks(op)
    first = tuple(op.param_names.index(p) for p in view.params[0])
    monkeypatch.setattr(bp.BlockLinearizeEngine, "block_hvp", slowed(bp.BlockLinearizeEngine.block_hvp, lambda g: g == first))
    monkeypatch.setattr(DoubleBackwardEngine, "block_hvp", slowed(DoubleBackwardEngine.block_hvp, lambda g: g != first))
    h = dense("cnn-bn-eval")
    vs = [_columns(s, 2, i) for i, s in enumerate(view.sizes)]
    for i, hv in enumerate(view.matmat(vs)):
        idx = _indices(view, i)
        _close(hv, h[idx][:, idx] @ vs[i], float(h.abs().max()))
    report, engine = op.engine_report, op._block_engine
    assert isinstance(engine, bp.MixedBlockEngine) and report.block_engine == engine.label
    assert report.block_engine.startswith("per block: ") and "each block its fastest engine" in report.block_reason
    assert isinstance(engine.by_group[first][0], DoubleBackwardEngine)
    others = [g for g in engine.by_group if g != first]
    assert len(others) == len(view) - 1 and all(isinstance(engine.by_group[g][0], bp.BlockLinearizeEngine) for g in others)
    assert {c.label for c in report.block_checks if c.status == "chosen"} <= {
        "double_backward+loop (pruned)", "double_backward+vmap (pruned)",
        "linearize+loop (pruned per block)", "linearize+vmap (pruned per block)"}


def test_a_second_view_with_other_blocks_uses_the_padded_products_for_them(monkeypatch):
    """The per-block linearisation is built and verified for the first view's blocks; another view on the same
    operator (other blocks) gets correct products through the operator's own engine for its unseen blocks."""
    import time

    def slowed(self, groups, tangents):
        time.sleep(0.02)
        return original(self, groups, tangents)

    original = DoubleBackwardEngine.block_hvp
    op = _fresh("linearize+loop", expected_matvecs=10_000)
    checks = tuple(replace(c, seconds_per_column=1.0) if c.status == "chosen" else c for c in op.engine_report.checks)
    op.engine_report = replace(op.engine_report, checks=checks)  # padded products dear, double backward slow
    monkeypatch.setattr(DoubleBackwardEngine, "block_hvp", slowed)
    h = dense("cnn-bn-eval")
    scale = float(h.abs().max())
    for spec in ("auto", "parameters"):
        view = hl.blocks(op, spec)
        vs = [_columns(s, 2, i) for i, s in enumerate(view.sizes)]
        for i, hv in enumerate(view.matmat(vs)):
            idx = _indices(view, i)
            _close(hv, h[idx][:, idx] @ vs[i], scale)
        assert "linearize" in op.engine_report.block_engine and "pruned per block" in op.engine_report.block_engine
    assert len(hl.blocks(op, "parameters")) > len(hl.blocks(op, "auto"))


def test_block_engine_streams_where_a_second_cache_does_not_fit():
    op = _fresh("linearize+loop")
    op._budget = op._cache_bytes  # the linearisation fits, a kept double-backward graph next to it does not
    h = dense("cnn-bn-eval")
    view = hl.blocks(op)
    vs = [_columns(s, 2, i) for i, s in enumerate(view.sizes)]
    for i, hv in enumerate(view.matmat(vs)):
        idx = _indices(view, i)
        _close(hv, h[idx][:, idx] @ vs[i], float(h.abs().max()))
    labels = [c.label for c in op.engine_report.block_checks]
    assert labels[1:] == ["streaming+loop (double backward, pruned)", "streaming+vmap (double backward, pruned)"]


# -- the algorithms on a view: the same results as through padded products ----------------------------


@pytest.mark.parametrize("engine", ["double_backward+vmap", "linearize+loop"])
def test_block_algorithms_agree_with_the_padded_products(engine):
    op = operator("cnn-bn-eval", engine)
    view = hl.blocks(op)
    old = padded_view(view)
    assert old._plan is None
    new_sd, old_sd = (hl.spectral_density(v, steps=6, probes=2, seed=0) for v in (view, old))
    for name in view.names:
        scale = max(1e-300, float(np.abs(old_sd[name].nodes).max()))
        np.testing.assert_allclose(new_sd[name].nodes, old_sd[name].nodes, rtol=0, atol=1e-10 * scale)
        np.testing.assert_allclose(new_sd[name].weights, old_sd[name].weights, rtol=0, atol=1e-10)
    assert new_sd.matvecs == old_sd.matvecs
    new_eig, old_eig = (hl.eigenvalues(v, k=2, which="both", tol=1e-10, seed=1) for v in (view, old))
    for name in view.names:
        np.testing.assert_allclose(new_eig[name].values, old_eig[name].values, rtol=0,
                                   atol=1e-10 * max(1.0, np.abs(old_eig[name].values).max()))
    for method in ("hutch++", "hutchinson"):
        new_tr, old_tr = (hl.trace(v, 9, method=method, seed=2) for v in (view, old))
        for name in view.names:
            assert new_tr[name].estimate == pytest.approx(old_tr[name].estimate, rel=1e-10, abs=1e-12)
    new_ex, old_ex = hl.exact_spectrum(view), hl.exact_spectrum(old)
    for name in view.names:
        np.testing.assert_allclose(new_ex[name], old_ex[name], rtol=0, atol=1e-12 * max(1.0, np.abs(old_ex[name]).max()))
