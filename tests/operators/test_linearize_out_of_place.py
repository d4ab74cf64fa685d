"""In-place writes into intermediates of the traced graph become out-of-place, only where that is exact:
``const_fold`` folds nothing computed after an in-place node, so a replay recomputed the forward pass after
one (the attention's masked addition), and every write left in the graph is one the rewrite must not touch."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, jvp
from torch.fx.experimental.proxy_tensor import make_fx
from torch.nn.attention import SDPBackend, sdpa_kernel

from hesslens.operators.linearize import linearize_gradient
from hesslens.operators.linearize_passes import _written_arguments, write_out_of_place

DT = torch.float64


def _writes(gm) -> int:
    return sum(1 for n in gm.graph.nodes if _written_arguments(n))


def _assert_same_outputs(outs, expected) -> None:
    """The rewritten graph's outputs against the function's: the same dtypes, shapes and values, bit for bit."""
    outs, expected = (x if isinstance(x, tuple) else (x,) for x in (outs, expected))
    assert len(outs) == len(expected)
    for out, ref in zip(outs, expected):
        assert out.dtype == ref.dtype and out.shape == ref.shape and torch.equal(out, ref)


def _scaled_then_shifted(x, y):
    z = x * 2
    z.add_(y)
    z.div_(3)
    return z * z, z


def test_writes_into_an_intermediate_become_out_of_place_with_the_same_values() -> None:
    x, y = torch.randn(3, 4, dtype=DT), torch.randn(3, 4, dtype=DT)
    gm = make_fx(_scaled_then_shifted)(x, y)
    assert _writes(gm) == 2
    assert write_out_of_place(gm) == 2
    assert _writes(gm) == 0
    _assert_same_outputs(gm(x, y), _scaled_then_shifted(x, y))


def _input_written(x, y):
    x.add_(y)
    return x * 2


def _view_read_after(x, y):
    z = x * 2
    flat = z.view(-1)
    z.add_(y)
    return flat * 1


def _view_written_base_read(x, y):
    z = x * 2
    z[0].add_(y[0])
    return z * 1


def _view_made_after(x, y):
    z = x * 2
    z.add_(y)
    return z.view(-1) * 1


def _promoted(x, y):
    w = (x * 2).to(torch.float32)
    w.add_(y)  # float64 into float32: out of place the sum would be float64
    return w


def _transposed(x, y):
    z = x.t() * 2  # a non-contiguous result: an out-of-place addition need not keep its strides
    z.add_(y.t())
    return z.reshape(-1) * 1


def _random(x, y):
    z = x * 2
    z.normal_()
    return z


@pytest.mark.parametrize("f, kept", [
    (_input_written, 1),  # the caller sees the write
    (_view_read_after, 1),  # a view of z made before the write is read after it
    (_view_written_base_read, 1),  # the write goes through a view; its base is read after
    (_view_made_after, 0),  # a view made after the write reads the written values: nothing to keep
    (_promoted, 1),  # the sum keeps float32 only in place
    (_transposed, 1),
    (_random, 1),
], ids=["input", "view-read-after", "base-read-after", "view-made-after", "promoted", "transposed", "random"])
def test_writes_the_rewrite_cannot_make_exact_are_left_in_place(f, kept: int) -> None:
    g = torch.Generator().manual_seed(95)
    x, y = torch.randn(3, 3, generator=g, dtype=DT), torch.randn(3, 3, generator=g, dtype=DT)
    gm = make_fx(f)(x.clone(), y)
    before = _writes(gm)
    rewritten = write_out_of_place(gm)
    assert _writes(gm) == before - rewritten
    assert rewritten == before - kept
    if f is _random:
        return
    xs = x.clone()
    expected = f(x.clone(), y)
    _assert_same_outputs(gm(xs, y), expected)
    if f is _input_written:
        assert torch.equal(xs, x + y)  # the write into the input is still made


def _attention_loss():
    """A small encoder layer with a causal float mask (its math attention adds it in place) and a linear head."""
    torch.manual_seed(96)
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True).to(DT).eval()
    head = nn.Linear(8, 3).to(DT)
    model = nn.ModuleDict({"layer": layer, "head": head})
    g = torch.Generator().manual_seed(97)
    x, y = torch.randn(4, 5, 8, generator=g, dtype=DT), torch.randint(0, 3, (4, 5), generator=g)
    mask = torch.triu(torch.full((5, 5), float("-inf"), dtype=DT), diagonal=1)
    names = [n for n, _ in model.named_parameters()]
    params = tuple(p.detach() for _, p in model.named_parameters())

    def forward(p):
        with sdpa_kernel(SDPBackend.MATH):  # the CPU flash kernel has no forward-mode derivative
            out = functional_call(model["layer"], {k[6:]: v for k, v in zip(names, p) if k.startswith("layer.")},
                                  (x,), {"src_mask": mask})
        w, b = (v for k, v in zip(names, p) if k.startswith("head."))
        return nn.functional.cross_entropy((out @ w.T + b).reshape(-1, 3), y.reshape(-1))

    return forward, params


def test_an_attention_linearisation_folds_its_forward_pass_and_replays_exactly() -> None:
    """The pattern is real: the traced attention writes in place, and rewritten, fewer nodes are replayed;
    the products still equal jvp(grad) on every call."""
    import torch.autograd.forward_ad as fwAD
    from torch.fx.experimental import const_fold

    loss, params = _attention_loss()

    def tangent_of_gradient(tangents):
        with fwAD.dual_level():
            duals = tuple(fwAD.make_dual(p, t) for p, t in zip(params, tangents))
            return tuple(fwAD.unpack_dual(g).tangent for g in grad(loss)(duals))

    zeros = tuple(torch.zeros_like(p) for p in params)

    def replayed_nodes(rewrite: bool) -> int:
        traced = make_fx(tangent_of_gradient)(zeros)
        if rewrite:
            assert write_out_of_place(traced) > 0
        folded = const_fold.split_const_subgraphs(traced)
        return sum(1 for n in folded.graph.nodes if n.op == "call_function")

    assert replayed_nodes(rewrite=True) < replayed_nodes(rewrite=False)
    tangents = tuple(torch.randn(p.shape, generator=torch.Generator().manual_seed(98), dtype=DT) for p in params)
    reference = jvp(grad(loss), (params,), (tangents,))[1]
    product = linearize_gradient(loss, params)
    for _ in range(3):
        for out, ref in zip(product(tangents), reference):
            assert torch.allclose(out, ref, rtol=1e-12, atol=1e-14)


def _unsqueezed_in_place(x, y):
    z = x * 2
    z.unsqueeze_(0)  # changes z's shape, not its values: out of place it is a view of z
    z.add_(y)
    return z * 1


def _transposed_in_place(x, y):
    z = x * 2
    z.t_()
    z.mul_(y)  # now into a transposed view: not contiguous, stays in place
    return z.reshape(-1) * 1


def _transposed_in_place_view_read(x, y):
    z = x * 2
    row = z[0]  # made before the metadata write and read after it
    z.t_()
    z.add_(y)
    return row * 1, z * 1


@pytest.mark.parametrize("f, rewritten", [
    (_unsqueezed_in_place, 2),
    (_transposed_in_place, 1),
    (_transposed_in_place_view_read, 0),
], ids=["unsqueeze_", "t_-then-strided-write", "t_-with-earlier-view"])
def test_in_place_view_operators_become_views_with_the_same_shapes_and_values(f, rewritten: int) -> None:
    """Operators that write only a tensor's metadata (``unsqueeze_``, ``t_``: tagged ``inplace_view``) go
    through the same rules; their out-of-place variants are views, which the alias analysis then follows."""
    g = torch.Generator().manual_seed(98)
    x, y = torch.randn(3, 3, generator=g, dtype=DT), torch.randn(3, 3, generator=g, dtype=DT)
    gm = make_fx(f)(x.clone(), y)
    assert any(torch.Tag.inplace_view in n.target.tags for n in gm.graph.nodes if n.op == "call_function")
    assert write_out_of_place(gm) == rewritten
    _assert_same_outputs(gm(x.clone(), y), f(x.clone(), y))
