"""``torch.func.linearize`` of a gradient, made safe to replay.

The linearize engine traces the forward-over-reverse product v ↦ ∇²L(θ) v once (``make_fx`` of a
forward-AD pass through the gradient), folds every node that does not depend on v into constants
(``torch.fx.experimental.const_fold``) and replays the remaining tangent graph for every product.

**The PyTorch defect this module works around** (seen in 2.13; upstream-style report):

    torch.func.linearize returns a jvp_fn whose results change from call to call when the traced
    graph applies an in-place operation to a folded constant. const_fold.split_const_subgraphs
    folds a subgraph into a module attribute without checking whether a later, tangent-dependent
    node mutates it; the first call then overwrites the constant and every later call reads the
    overwritten value. Reproducer: nn.Linear(3, 1) + BCEWithLogitsLoss (4 samples, float64),
    ``_, f = linearize(grad(L), θ)``; ``f(v)`` against ``jvp(grad(L), (θ,), (v,))`` is exact on the
    first call and off by 3e-2, 1e-1, 1.0 (relative) on the next three. The traced graph holds
    ``aten.fill_``/``aten.sub_`` (BCE's forward-AD formula) and ``aten.exp_`` on folded
    attributes. The same happens through ``nn.GRU``'s cell (``aten.sigmoid_``/``tanh_``-style
    in-place updates of saved gates): 0, 0.14, 0.17 off on calls 1–3 for a 2-3 GRU tagger.

The repair (:func:`~hesslens.operators.linearize_passes.repair_constant_mutations`, with the other rewrites
of the traced graph in :mod:`hesslens.operators.linearize_passes`): most such writes are made out of place
before the folding, and after it every in-place write whose target is a folded constant (an attribute,
or an item of the folded tuple) writes into a fresh clone instead, and the later readers of that
constant read the clone, so each replay starts from the same constants. Writes into *views* of
constants are not rewritten; they are detected and reported so that the engine can be refused (the
engine choice also verifies every engine against double backward over repeated calls, which
catches any remaining case).
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch
import torch.autograd.forward_ad as fwAD
from torch.fx.experimental import const_fold
from torch.fx.experimental.proxy_tensor import make_fx

from .linearize_passes import (
    drop_unread_constants,
    drop_zero_additions,
    repair_constant_mutations,
    share_equal_constants,
    write_out_of_place,
)

Params = tuple[torch.Tensor, ...]

#: Traces :func:`linearize_gradient` has started in this process: the first also warms torch's tracing stack
#: (:func:`~hesslens.operators.gradient_profile.GradientProfile.linearize_estimate` adds it to the first build).
traces_started = 0

def linearize_gradient(loss: Callable[[Params], torch.Tensor], params: Params) -> Callable[[Params], Params]:
    """v ↦ ∇²loss(θ) v as a replayable traced graph (the linearisation of ∇loss at ``params``).

    Same construction as ``torch.func.linearize(torch.func.grad(loss), params)`` — trace the
    forward-AD pass through the gradient once, fold everything independent of v — plus the passes
    of this module (:func:`write_out_of_place` before the folding, :func:`repair_constant_mutations` and
    the simplifications after). The returned function takes and returns a tuple shaped like ``params``
    and composes with ``vmap``; its attributes ``writes_out_of_place`` and ``replayed_nodes`` count the
    in-place writes made out of place and the operator calls each replay runs.
    """
    from torch.func import grad

    global traces_started
    traces_started += 1
    gradient = grad(loss)
    primals = tuple(params)

    def tangent_of_gradient(tangents: Params) -> Params:
        with fwAD.dual_level():
            duals = tuple(fwAD.make_dual(p, t) for p, t in zip(primals, tangents))
            return tuple(fwAD.unpack_dual(g).tangent for g in gradient(duals))

    with warnings.catch_warnings():
        # const_fold warns about the get_attr nodes it inserts itself; not the user's to act on.
        warnings.filterwarnings("ignore", message="Attempted to insert a get_attr Node")
        warnings.filterwarnings("ignore", message=".*torch.jit.script.* is deprecated", category=DeprecationWarning)
        # Example tangents laid out like the primals, not zero-stride expansions: make_dual then traces no
        # copy of each tangent into a primal-like layout, which the replay would repeat on every product.
        traced = make_fx(tangent_of_gradient)(tuple(torch.zeros_like(p, memory_format=torch.contiguous_format)
                                                    for p in primals))
        rewritten = write_out_of_place(traced)  # before folding: an in-place write stops const_fold at it
        folded = const_fold.split_const_subgraphs(traced)
        repair_constant_mutations(folded)
        drop_zero_additions(folded)
        drop_unread_constants(folded)
        folded.run_folding()  # now rather than at the first product, so that equal constants can be shared
        share_equal_constants(folded)

    def product(tangents: Params) -> Params:
        out = folded(*(t.contiguous() for t in tangents))  # the layout traced
        # A tangent the gradient does not depend on (an unused parameter) comes back as None.
        return tuple(torch.zeros_like(t) if o is None else o for o, t in zip(out, tangents))

    product.writes_out_of_place = rewritten  # type: ignore[attr-defined]
    product.replayed_nodes = sum(1 for n in folded.graph.nodes if n.op == "call_function")  # type: ignore[attr-defined]
    return product
