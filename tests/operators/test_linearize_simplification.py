"""The linearisation's simplifications, each exact: ``zeros_like(a) + b`` → ``b`` only where that is
exact and safe; folded constants no replay reads are not kept; constants equal bit for bit are kept once."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, jvp
from torch.fx.experimental.proxy_tensor import make_fx

from hesslens.operators.linearize import linearize_gradient
from hesslens.operators.linearize_passes import (_constant_reads, drop_unread_constants, drop_zero_additions,
                                                 repair_constant_mutations, share_equal_constants)

DT = torch.float64


def _count(gm, target) -> int:
    return sum(1 for n in gm.graph.nodes if n.op == "call_function" and n.target is target)


class Reshaped(nn.Module):
    """A layer that views its weight: the traced graph views the weight's tangent the same way."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, 4))

    def forward(self, x):
        return x @ self.w.view(4, 3)


def _relu_cnn_loss():
    torch.manual_seed(90)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(3 * 2 * 2, 4), nn.ReLU(), Reshaped()).to(DT)
    g = torch.Generator().manual_seed(91)
    x, y = torch.randn(5, 2, 4, 4, generator=g, dtype=DT), torch.randint(0, 3, (5,), generator=g)
    names = [n for n, _ in model.named_parameters()]
    params = tuple(p.detach() for _, p in model.named_parameters())
    return (lambda p: nn.functional.cross_entropy(functional_call(model, dict(zip(names, p)), (x,)), y)), params


def test_relu_products_lose_their_zero_additions_and_stay_exact() -> None:
    """ReLU's tangent adds a zero tensor; without it the replayed products still equal jvp(grad)."""
    loss, params = _relu_cnn_loss()
    product = linearize_gradient(loss, params)
    tangents = tuple(torch.randn(p.shape, generator=torch.Generator().manual_seed(92), dtype=DT) for p in params)
    reference = jvp(grad(loss), (params,), (tangents,))[1]
    for _ in range(3):
        for out, ref in zip(product(tangents), reference):
            assert torch.allclose(out, ref, rtol=1e-12, atol=1e-14)


def test_non_contiguous_tangents_give_the_same_products() -> None:
    """The graph is traced with tangents laid out like the parameters; any other layout is made so first."""
    loss, params = _relu_cnn_loss()
    product = linearize_gradient(loss, params)
    g = torch.Generator().manual_seed(93)
    strided = tuple(torch.randn(*p.shape, 2, generator=g, dtype=DT)[..., 0] for p in params)
    assert not any(t.is_contiguous() for t in strided if t.dim() > 0)
    reference = jvp(grad(loss), (params,), (tuple(t.clone() for t in strided),))[1]
    for out, ref in zip(product(strided), reference):
        assert torch.allclose(out, ref, rtol=1e-12, atol=1e-14)


def _folded_tangent_graph(loss, params):
    """The CNN's tangent graph as const_fold leaves it, before any of hesslens's passes."""
    import torch.autograd.forward_ad as fwAD
    from torch.fx.experimental import const_fold

    def tangent_of_gradient(tangents):
        with fwAD.dual_level():
            duals = tuple(fwAD.make_dual(p, t) for p, t in zip(params, tangents))
            return tuple(fwAD.unpack_dual(g).tangent for g in grad(loss)(duals))

    return const_fold.split_const_subgraphs(make_fx(tangent_of_gradient)(tuple(torch.zeros_like(p) for p in params)))


def test_the_relu_graph_had_zero_additions_to_drop() -> None:
    """The pattern is real: the traced ReLU tangent graph holds zeros_like + add, and the pass removes them all."""
    loss, params = _relu_cnn_loss()
    folded = _folded_tangent_graph(loss, params)
    zeros = _count(folded, torch.ops.aten.zeros_like.default)
    assert zeros >= 2  # one per ReLU
    assert drop_zero_additions(folded) == zeros
    assert _count(folded, torch.ops.aten.zeros_like.default) == 0
    assert drop_zero_additions(folded) == 0


def _traced(f, *args):
    return make_fx(f)(*args)


@pytest.mark.parametrize("case", ["plain", "swapped"])
def test_a_zero_addition_is_dropped(case: str) -> None:
    def f(x, y):
        z, w = torch.zeros_like(x), y * 2
        return (z + w if case == "plain" else w + z) + 1

    x, y = torch.randn(3, 4, dtype=DT), torch.randn(3, 4, dtype=DT)
    gm = _traced(f, x, y)
    expected = f(x, y)
    assert drop_zero_additions(gm) == 1
    assert _count(gm, torch.ops.aten.zeros_like.default) == 0
    assert torch.equal(gm(x, y), expected)


def _sum_written_in_place(x, y):
    s = torch.zeros_like(x) + y * 2
    s.mul_(3)
    return s


def _addend_written_in_place(x, y):
    w = y * 2
    s = torch.zeros_like(x) + w
    w.add_(1)
    return s, w


@pytest.mark.parametrize("f, shapes, dtypes", [
    (lambda x, y: torch.zeros_like(x) + y * 2, ((3, 4), (4,)), (DT, DT)),  # b broadcasts: the sum is not b
    (lambda x, y: torch.zeros_like(x) + y * 2, ((3, 4), (3, 4)), (DT, torch.float32)),  # the sum is promoted
    (lambda x, y: torch.add(torch.zeros_like(x), y * 2, alpha=2), ((3, 4), (3, 4)), (DT, DT)),  # alpha scales b
    (lambda x, y: torch.zeros_like(x) + y, ((3, 4), (3, 4)), (DT, DT)),  # b is the caller's input
    (lambda x, y: torch.zeros_like(x) + (y * 2).view(3, 4), ((3, 4), (12,)), (DT, DT)),  # b is a view
    (lambda x, y: (lambda w: (torch.zeros_like(x) + w, w))(y * 2), ((3, 4), (3, 4)), (DT, DT)),  # both returned
    (_sum_written_in_place, ((3, 4), (3, 4)), (DT, DT)),
    (_addend_written_in_place, ((3, 4), (3, 4)), (DT, DT)),
], ids=["broadcast", "promoted", "alpha", "input", "view", "both-returned", "sum-written", "addend-written"])
def test_a_zero_addition_that_is_not_the_addend_is_kept(f, shapes, dtypes) -> None:
    x, y = (torch.randn(s, dtype=d) for s, d in zip(shapes, dtypes))
    gm = _traced(f, x, y)
    before = _count(gm, torch.ops.aten.add.Tensor)
    assert drop_zero_additions(gm) == 0
    assert _count(gm, torch.ops.aten.add.Tensor) == before


def test_a_zero_addition_of_a_folded_constant_is_kept() -> None:
    """Returned as the product, a folded constant could be changed by the caller through it."""
    from torch.fx.experimental import const_fold

    c = torch.randn(3, 4, dtype=DT)

    def f(x):
        return torch.zeros_like(x) + c * 2, x * (c * 3)

    folded = const_fold.split_const_subgraphs(_traced(f, torch.randn(3, 4, dtype=DT)))
    assert any(n.op == "get_attr" for n in folded.graph.nodes)
    assert drop_zero_additions(folded) == 0


# -- folded constants: none unread, none twice --------------------------------------------------------
def _items(folded) -> list[torch.Tensor]:
    return list(getattr(folded, folded.fx_const_folded_attrs_name))


def test_the_cnn_graph_folds_unread_and_duplicate_constants_and_the_passes_remove_them() -> None:
    """The pattern is real: as const_fold leaves it, the CNN's folded tuple holds items no node reads
    (the parameters among them) and bit-equal clones of one tensor; after the passes every item is read
    and all are distinct, and the products equal those of the unsimplified graph."""
    loss, params = _relu_cnn_loss()
    plain = _folded_tangent_graph(loss, params)
    repair_constant_mutations(plain)
    plain.run_folding()
    items = _items(plain)
    assert len(_constant_reads(plain)) < len(items)  # some items are never read

    folded = _folded_tangent_graph(loss, params)
    repair_constant_mutations(folded)
    dropped = drop_unread_constants(folded)
    assert dropped == len(items) - len(_constant_reads(plain))
    folded.run_folding()
    shared = share_equal_constants(folded)
    assert shared >= 1  # the input and an alias of it, cloned apart by the folding
    kept = _items(folded)
    assert len(kept) == len(items) - dropped - shared == len(_constant_reads(folded))
    assert sorted(_constant_reads(folded)) == list(range(len(kept)))
    for i, a in enumerate(kept):
        for b in kept[i + 1:]:
            assert not (a.shape == b.shape and a.dtype == b.dtype and a.stride() == b.stride() and torch.equal(a, b))
    assert drop_unread_constants(folded) == 0 and share_equal_constants(folded) == 0  # nothing left to do

    tangents = tuple(torch.randn(p.shape, generator=torch.Generator().manual_seed(94), dtype=DT) for p in params)
    for _ in range(3):
        for out, ref in zip(folded(*tangents), plain(*tangents)):
            assert torch.equal(out, ref)


def test_constants_equal_in_value_but_not_in_bits_stay_apart() -> None:
    """+0.0 and −0.0 compare equal; shared, the sign of x·c would change. Equal bits are shared."""
    from torch.fx.experimental import const_fold

    base = torch.zeros(4, dtype=DT)
    one = torch.ones(4, dtype=DT)

    def f(x):
        return x * torch.neg(base), x * (base + 0), x * (one * 2), x * (one + 1)

    x = torch.rand(4, dtype=DT) + 1
    folded = const_fold.split_const_subgraphs(_traced(f, x))
    assert drop_unread_constants(folded) == 0
    folded.run_folding()
    assert len(_items(folded)) == 4
    assert share_equal_constants(folded) == 1  # one * 2 and one + 1, not −0 and +0
    neg, pos, two_a, two_b = folded(x)
    assert torch.signbit(neg).all() and not torch.signbit(pos).any()
    assert torch.equal(two_a, 2 * x) and torch.equal(two_b, 2 * x)
