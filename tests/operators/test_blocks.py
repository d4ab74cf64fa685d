"""BlockView and hl.blocks(): block products against slices of dense float64 Hessians, "auto" blocks of
an MLP, a conv net with BatchNorm and a tiny transformer layer, user groups, every refusal, matvec counts."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

import hesslens as hl
from hesslens.errors import InvalidInputError
from hesslens.operators.blocks import ROOT, BlockView

from _block_models import DT, block_model
from conftest import _flat_function, concatenated_objective



def _columns(n: int, k: int, seed: int) -> torch.Tensor:
    return torch.randn(n, k, generator=torch.Generator().manual_seed(seed), dtype=DT)


# -- tiny float64 models (built once per process; the tests only read them) -------------------------


class OwnParameter(nn.Module):
    """A root module owning a parameter directly, with a child whose weight is used twice (tied)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([1.5, -0.5, 0.7]))
        self.inner = nn.Linear(3, 3)
        self.tied = self.inner  # the same module under two names: its parameters appear once

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tied(torch.tanh(self.inner(x * self.scale)))


@functools.lru_cache(maxsize=None)
def model_case(name: str):
    """(model, operator) for a tiny model, double-backward engine (cheap to build)."""
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    if name in ("mlp", "cnn-bn", "transformer"):
        model, data = block_model(name, g)
    elif name == "own":
        model = OwnParameter().to(DT)
        data = (torch.randn(10, 3, generator=g, dtype=DT), torch.randint(0, 3, (10,), generator=g))
    else:
        raise ValueError(name)
    op = hl.HessianOperator(model, nn.CrossEntropyLoss(), data, engine="double_backward")
    return model, op, data


@functools.lru_cache(maxsize=None)
def dense_of(name: str) -> torch.Tensor:
    return model_case(name)[1].dense()


def block_indices(view: BlockView, i: int) -> torch.Tensor:
    return torch.cat([torch.arange(s.start, s.stop) for s in view.slices(i)])


# -- "auto" blocks --------------------------------------------------------------------------------

AUTO = {
    "mlp": {"0": ("0.weight", "0.bias"), "2": ("2.weight", "2.bias")},
    "cnn-bn": {"0": ("0.weight", "0.bias"), "1": ("1.weight", "1.bias"), "4": ("4.weight", "4.bias")},
    "transformer": {
        "layer.self_attn": ("layer.self_attn.in_proj_weight", "layer.self_attn.in_proj_bias"),
        "layer.self_attn.out_proj": ("layer.self_attn.out_proj.weight", "layer.self_attn.out_proj.bias"),
        "layer.linear1": ("layer.linear1.weight", "layer.linear1.bias"),
        "layer.linear2": ("layer.linear2.weight", "layer.linear2.bias"),
        "layer.norm1": ("layer.norm1.weight", "layer.norm1.bias"),
        "layer.norm2": ("layer.norm2.weight", "layer.norm2.bias"),
        "head": ("head.weight", "head.bias"),
    },
    "own": {ROOT: ("scale",), "inner": ("inner.weight", "inner.bias")},
}


@pytest.mark.parametrize("name", list(AUTO))
def test_auto_blocks_are_the_modules_owning_parameters(name):
    """Every module owning parameters directly, weight and bias together, in model order, named by the
    module; the blocks tile θ in order (the flat order is the module order)."""
    model, op, _ = model_case(name)
    view = hl.blocks(op)
    assert view.names == tuple(AUTO[name]) and view.params == tuple(AUTO[name].values())
    named = dict(model.named_parameters())
    assert view.sizes == tuple(sum(named[p].numel() for p in ps) for ps in AUTO[name].values())
    assert sum(view.sizes) == view.n == op.n
    flat = [r for ranges in view.ranges for r in ranges]
    assert flat[0][0] == 0 and flat[-1][1] == op.n and all(a[1] == b[0] for a, b in zip(flat, flat[1:]))
    assert all(len(r) == 1 for r in view.ranges)  # a module's weight and bias are adjacent in θ
    assert view.operator.source is op and hl.blocks(op, "auto").ranges == view.ranges


@pytest.mark.parametrize("name", ["mlp", "cnn-bn", "transformer"])
def test_block_products_are_the_diagonal_blocks_of_the_dense_hessian(name):
    """matmat(V_1 … V_K) = H_ii V_i with H the dense double-backward Hessian, to 1e-12 of its scale; one
    product of K·c columns (counted by the view and by the operator); view.block(i) is H_ii alone."""
    _, op, _ = model_case(name)
    h = dense_of(name)
    view = hl.blocks(op)
    vs = [_columns(s, 3, seed=i) for i, s in enumerate(view.sizes)]
    before, view_before = op.matvecs, view.matvecs
    out = view.matmat(vs)
    assert op.matvecs - before == 3 * len(view) == view.matvecs - view_before
    scale = float(h.abs().max())
    for i, (v, hv) in enumerate(zip(vs, out)):
        idx = block_indices(view, i)
        h_ii = h[idx][:, idx]
        assert hv.dtype == DT and hv.shape == v.shape
        assert float((hv - h_ii @ v).abs().max()) <= 1e-12 * scale
        alone = view.block(i)
        assert alone.shape == (len(idx), len(idx))
        assert float((alone.matmat(v[:, :1]) - h_ii @ v[:, :1]).abs().max()) <= 1e-12 * scale


def test_transformer_dense_hessian_against_an_independent_reference():
    """The transformer case's dense Hessian (the blocks' reference above) against reverse-over-reverse
    autograd of the flat loss with attention's math kernel, and one column against central differences of
    the gradient. (torch.func.hessian, forward-over-reverse, is off by O(0.1·‖H‖) on this layer in torch
    2.13, as the differences show, so it cannot be the reference here.)"""
    model, op, data = model_case("transformer")
    h = dense_of("transformer")
    with sdpa_kernel(SDPBackend.MATH):
        f, theta0 = _flat_function(model.eval(), concatenated_objective(nn.CrossEntropyLoss(), [data]), op.param_names)
        ref = torch.autograd.functional.hessian(f, theta0)
        j, step = 128, 1e-5  # a column of the attention input projection's bias block
        e = torch.zeros_like(theta0)
        e[j] = step
        grad = functools.partial(torch.autograd.functional.jacobian, f)
        column = (grad(theta0 + e) - grad(theta0 - e)) / (2 * step)
    scale = max(1.0, float(ref.abs().max()))
    assert float((h - ref).abs().max()) <= 1e-10 * scale
    assert float((h[:, j] - column).abs().max()) <= 1e-8 * scale


def test_auto_blocks_follow_the_operator_selection():
    """Only the operator's parameters: a module partly selected keeps the selected part; unselected
    modules have no block."""
    model, _, data = model_case("mlp")
    op = hl.HessianOperator(model, nn.CrossEntropyLoss(), data, params=["0.weight", "2.*"], engine="double_backward")
    view = hl.blocks(op)
    assert view.names == ("0", "2") and view.params == (("0.weight",), ("2.weight", "2.bias")) and view.sizes == (24, 21)
    only = hl.HessianOperator(model, nn.CrossEntropyLoss(), data, params="2.*", engine="double_backward")
    assert hl.blocks(only).names == ("2",)
    h = only.dense()
    out = hl.blocks(only).matmat([_columns(21, 2, 1)])[0]
    assert float((out - h @ _columns(21, 2, 1)).abs().max()) <= 1e-12 * float(h.abs().max())


# -- user groups --------------------------------------------------------------------------------------


def test_groups_by_names_globs_modules_and_tensors():
    model, op, _ = model_case("mlp")
    by_glob = hl.blocks(op, ["*.weight", "*.bias"])
    assert by_glob.names == ("*.weight", "*.bias")
    assert by_glob.params == (("0.weight", "2.weight"), ("0.bias", "2.bias"))
    assert by_glob.ranges == (((0, 24), (30, 48)), ((24, 30), (48, 51))) and by_glob.sizes == (42, 9)
    by_module = hl.blocks(op, [model[2], model[0]])  # the order given, not the model's
    assert by_module.names == ("2", "0") and by_module.params == (("2.weight", "2.bias"), ("0.weight", "0.bias"))
    named = hl.blocks(op, {"first": [model[0].weight, "0.bias"], "second": "2.*"})
    assert named.names == ("first", "second") and named.ranges == (((0, 30),), ((30, 51),))
    mixed = hl.blocks(op, [["0.weight", model[2]], "0.bias"])
    assert mixed.names == ("0.weight+2", "0.bias") and mixed.params == (("0.weight", "2.weight", "2.bias"), ("0.bias",))
    per_param = hl.blocks(op, "parameters")
    assert per_param.names == tuple(op.param_names)
    assert per_param.ranges == tuple(((s.start, s.stop),) for s in op.blocks.values())


def test_grouped_products_match_the_dense_slices():
    """A block made of non-adjacent ranges (all weights) multiplies as H[I, I] with I in ascending order."""
    _, op, _ = model_case("mlp")
    h = dense_of("mlp")
    view = hl.blocks(op, {"weights": "*.weight", "biases": "*.bias"})
    vs = [_columns(s, 2, 5 + i) for i, s in enumerate(view.sizes)]
    for i, hv in enumerate(view.matmat(vs)):
        idx = block_indices(view, i)
        assert float((hv - h[idx][:, idx] @ vs[i]).abs().max()) <= 1e-12 * float(h.abs().max())


@pytest.mark.parametrize("spec, message", [
    (["0.*"], r"parameters '2.weight', '2.bias' of the operator are in no block"),
    (["0.*", "2.weight"], r"parameter '2.bias' of the operator is in no block: add a group for it"),
    (["0.*", "*.bias", "2.weight"], r"parameter '0.bias' is in two blocks, '0.\*' and '\*.bias'"),
    ({"a": [], "b": "*"}, r"block 'a' is empty"),
    ([[], "*"], r"is empty"),
    (["*", "nothing.*"], r"'nothing.\*' matches no parameter of the model"),
    (["0.wieght", "*"], r"'0.wieght' matches no parameter"),
    ({"": "*"}, r"non-empty strings"),
    ("everything", r"spec must be 'auto', 'parameters'"),
    (3, r"spec must be"),
    ([], r"gives no group"),
    ([1.5], r"groups are made of parameter names"),
])
def test_group_errors_name_the_parameter_or_group(spec, message):
    _, op, _ = model_case("mlp")
    with pytest.raises(InvalidInputError, match=message):
        hl.blocks(op, spec)


def test_group_errors_for_selection_modules_and_tensors():
    model, _, data = model_case("mlp")
    op = hl.HessianOperator(model, nn.CrossEntropyLoss(), data, params="2.*", engine="double_backward")
    with pytest.raises(InvalidInputError, match=r"'0.\*' matches only parameters outside the operator's params="):
        hl.blocks(op, ["0.*", "2.*"])
    with pytest.raises(InvalidInputError, match=r"module '0' matches only parameters outside"):
        hl.blocks(op, [model[0], model[2]])
    with pytest.raises(InvalidInputError, match=r"not a module of the model"):
        hl.blocks(op, [nn.Linear(2, 2), "*"])
    with pytest.raises(InvalidInputError, match=r"not a parameter of the model"):
        hl.blocks(op, [torch.zeros(3), "*"])
    with pytest.raises(InvalidInputError, match=r"needs a HessianOperator"):
        hl.blocks(torch.eye(3))
    with pytest.raises(InvalidInputError, match=r"is used twice"):
        BlockView(hl.as_operator(op), ("a", "a"), (((0, 3),), ((3, 6),)))


def test_tied_parameters_belong_to_one_block():
    model, op, _ = model_case("own")
    assert op.param_names == ["scale", "inner.weight", "inner.bias"]
    assert hl.blocks(op, [model.tied, "scale"]).names == ("inner", "scale")  # a module's first qualified name


# -- explicit slices over dense and SciPy operators ----------------------------------------------------


def _sym(n: int, seed: int) -> np.ndarray:
    g = np.random.default_rng(seed).standard_normal((n, n))
    return (g + g.T) / 2


def test_from_slices_over_dense_and_scipy_operators():
    """One product per matmat call whatever K, K·c columns counted, rows of the block's own indices."""
    a = _sym(12, 0)
    count = {"calls": 0, "columns": 0}

    def matmat(x):
        count["calls"] += 1
        count["columns"] += x.shape[1]
        return a @ x

    lin = spla.LinearOperator(a.shape, matvec=matmat, matmat=matmat, dtype=np.float64)
    spec = {"a": slice(0, 3), "b": [slice(7, 9), slice(3, 5)], "c": range(9, 12)}
    for op in (a, torch.from_numpy(a), lin):
        view = BlockView.from_slices(op, spec)
        assert view.names == ("a", "b", "c") and view.sizes == (3, 4, 3)
        assert view.ranges == (((0, 3),), ((3, 5), (7, 9)), ((9, 12),))  # sorted: ascending indices
        vs = [_columns(s, 2, i) for i, s in enumerate(view.sizes)]
        calls = count["calls"]
        out = view.matmat(vs)
        for i, hv in enumerate(out):
            idx = block_indices(view, i).numpy()
            np.testing.assert_allclose(hv.numpy(), a[np.ix_(idx, idx)] @ vs[i].numpy(), rtol=0, atol=1e-13)
        assert view.matvecs == 6
        if op is lin:
            assert count["calls"] == calls + 1 and count["columns"] == 6
    # None (or zero columns) for a block: nothing multiplied for it
    view = BlockView.from_slices(a, spec)
    out = view.matmat([None, _columns(4, 1, 0), torch.zeros(3, 0, dtype=DT)])
    assert out[0] is None and out[2].shape == (3, 0) and view.matvecs == 1
    assert view.matmat([None, None, None]) == [None, None, None] and view.matvecs == 1


def test_subset_restrict_pad_and_index():
    a = _sym(10, 1)
    view = BlockView.from_slices(a, {"x": slice(0, 4), "y": [slice(4, 6), slice(8, 10)], "z": slice(6, 8)})
    sub = view.subset(["z", 0])
    assert sub.names == ("z", "x") and sub.ranges == (view.ranges[2], view.ranges[0]) and sub.n == 10
    v = torch.arange(10, dtype=DT)[:, None]
    assert view.restrict(v, "y").flatten().tolist() == [4, 5, 8, 9]
    padded = view.pad([None, torch.ones(4, 1, dtype=DT), None])
    assert padded.flatten().tolist() == [0, 0, 0, 0, 1, 1, 0, 0, 1, 1]
    assert view.index("z") == 2 and view.index(-1) == 2 and view.slices("y") == (slice(4, 6), slice(8, 10))
    assert "blocks=3" in repr(view)
    with pytest.raises(InvalidInputError, match=r"no block named 'w'"):
        view.index("w")
    with pytest.raises(InvalidInputError, match=r"index in \[0, 3\)"):
        view.index(3)


@pytest.mark.parametrize("spec, message", [
    ({"a": slice(0, 3), "b": slice(2, 5)}, r"blocks 'a' and 'b' overlap at index 2"),
    ({"a": [slice(0, 3), slice(1, 2)]}, r"lists index 1 twice"),
    ({"a": slice(0, 11)}, r"outside \[0, 10\)"),
    ({"a": slice(3, 3)}, r"empty or outside"),
    ({"a": slice(0, 6, 2)}, r"step 1"),
    ({"a": slice(None, 4)}, r"integer bounds"),
    ({"a": []}, r"non-empty list"),
    ({"a": [3, 4]}, r"not a slice"),
    ({}, r"non-empty mapping"),
])
def test_from_slices_refusals(spec, message):
    with pytest.raises(InvalidInputError, match=message):
        BlockView.from_slices(_sym(10, 2), spec)


def test_matmat_refuses_wrong_shapes():
    view = BlockView.from_slices(_sym(6, 3), {"a": slice(0, 2), "b": slice(2, 6)})
    with pytest.raises(InvalidInputError, match=r"one entry per block \(2\)"):
        view.matmat([torch.zeros(2, 1, dtype=DT)])
    with pytest.raises(InvalidInputError, match=r"block 'b' needs a \(4, c\) tensor, got \(3, 1\)"):
        view.matmat([None, torch.zeros(3, 1, dtype=DT)])
