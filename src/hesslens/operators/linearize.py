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

The repair: after folding, every in-place write whose target is a folded constant (an attribute,
or an item of the folded tuple) writes into a fresh clone instead, and the later readers of that
constant read the clone, so each replay starts from the same constants. Writes into *views* of
constants are not rewritten; they are detected and reported so that the engine can be refused (the
engine choice also verifies every engine against double backward over repeated calls, which
catches any remaining case).
"""

from __future__ import annotations

import operator
import warnings
from typing import Any, Callable

import torch
import torch.autograd.forward_ad as fwAD
from torch.fx import GraphModule, Node
from torch.fx.experimental import const_fold
from torch.fx.experimental.proxy_tensor import make_fx

Params = tuple[torch.Tensor, ...]

#: Traces :func:`linearize_gradient` has started in this process: the first also warms torch's tracing stack
#: (:func:`~hesslens.operators.gradient_profile.GradientProfile.linearize_estimate` adds it to the first build).
traces_started = 0


class UnsafeLinearizationError(RuntimeError):
    """The traced tangent graph mutates its constants in a way the repair cannot undo."""


def _written_arguments(node: Node) -> list[Any]:
    """The arguments an aten operator writes into (``Tensor(a!)`` in its schema)."""
    target = node.target
    if node.op != "call_function" or not isinstance(target, torch._ops.OpOverload):
        return []
    written = []
    for i, arg in enumerate(target._schema.arguments):
        if arg.alias_info is not None and arg.alias_info.is_write:
            if i < len(node.args):
                written.append(node.args[i])
            elif arg.name in node.kwargs:
                written.append(node.kwargs[arg.name])
    return written


def _is_view(node: Node) -> bool:
    target = node.target
    if node.op != "call_function" or not isinstance(target, torch._ops.OpOverload):
        return False
    returns = target._schema.returns
    return bool(returns) and returns[0].alias_info is not None and not returns[0].alias_info.is_write


def repair_constant_mutations(gm: GraphModule) -> int:
    """Rewrite in-place writes into folded constants as writes into clones; return how many.

    Raises :class:`UnsafeLinearizationError` for a write into a view of a constant (the base would
    have to be cloned too; not needed by any model seen so far, so refused rather than guessed).
    """
    graph = gm.graph
    constants: set[Node] = set()
    views_of_constants: set[Node] = set()
    position = {n: i for i, n in enumerate(graph.nodes)}
    repaired = 0
    for node in list(graph.nodes):
        if node.op == "get_attr" or (node.op == "call_function" and node.target is operator.getitem
                                     and node.args[0] in constants):
            constants.add(node)
            continue
        for target in _written_arguments(node):
            if target in views_of_constants:
                raise UnsafeLinearizationError(
                    f"the linearised graph writes in place ({node.target}) into a view of a folded constant")
            if target not in constants:
                continue
            with graph.inserting_before(node):
                clone = graph.call_function(torch.ops.aten.clone.default, (target,))
            for user in list(target.users):
                if user is not clone and position.get(user, len(position)) >= position[node]:
                    user.replace_input_with(target, clone)
            repaired += 1
        if _is_view(node) and node.args and node.args[0] in (constants | views_of_constants):
            views_of_constants.add(node)
    if repaired:
        graph.lint()
        gm.recompile()
    return repaired


def _value(node: Any) -> Any:
    """The traced example value of an FX node (a fake tensor with shape, dtype and strides), if any."""
    return node.meta.get("val") if isinstance(node, Node) else None


def _is_constant(node: Node) -> bool:
    """A folded constant: an attribute, or an item of the folded tuple."""
    return node.op == "get_attr" or (node.op == "call_function" and node.target is operator.getitem
                                     and isinstance(node.args[0], Node) and node.args[0].op == "get_attr")


def _same_layout(a: Any, b: Any) -> bool:
    return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
            and a.dtype == b.dtype and a.device == b.device and a.stride() == b.stride())


def drop_zero_additions(gm: GraphModule) -> int:
    """Replace ``zeros_like(a) + b`` by ``b`` where the sum is exactly ``b``; return how many.

    Forward-mode derivatives of backward formulas add a zero tangent for an argument that does not
    depend on the input — ReLU's ``threshold_backward`` gives ``zeros_like(grad) + threshold_backward(ṫ, …)``
    — and the traced graph replays the fill and the addition of activation-sized tensors on every
    product (on the benchmark CNN, 3 of its 16 additions per product, with 3 fills). The rewrite is
    exact: 0 + x = x in floating point for every x (−0 + 0 = +0 aside, which compares equal). It is
    made only where the sum and ``b`` agree in shape, dtype, device and strides (a later ``view``
    relies on them), ``alpha`` is 1, ``b`` is a fresh result computed from the tangents (not a folded
    constant nor a view, which a caller could then modify through the returned product), nothing
    writes in place into the sum or into ``b``, and the two are not both returned: otherwise the sum
    is kept.
    """
    graph = gm.graph
    written = {t for n in graph.nodes for t in _written_arguments(n)}
    zeros = (torch.ops.aten.zeros_like.default,)
    dropped = 0
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target is not torch.ops.aten.add.Tensor or len(node.args) != 2:
            continue
        if node.kwargs.get("alpha", 1) != 1 or node in written:
            continue
        a, b = node.args
        if isinstance(b, Node) and b.op == "call_function" and b.target in zeros:
            a, b = b, a
        if not (isinstance(a, Node) and a.op == "call_function" and a.target in zeros):
            continue
        if not (isinstance(b, Node) and b.op == "call_function" and not _is_constant(b) and not _is_view(b)
                and b not in written and _same_layout(_value(node), _value(b))):
            continue
        if any(u.op == "output" for u in node.users) and any(u.op == "output" for u in b.users):
            continue  # two outputs would be one tensor
        node.replace_all_uses_with(b)
        graph.erase_node(node)
        if not a.users:
            graph.erase_node(a)
        dropped += 1
    if dropped:
        graph.lint()
        gm.recompile()
    return dropped


def _constant_reads(gm: GraphModule) -> dict[int, list[Node]] | None:
    """Item index of the folded tuple → the ``getitem`` nodes of the tangent graph that read it; None
    where there is no folded tuple or the graph reads it otherwise than item by item."""
    name = getattr(gm, "fx_const_folded_attrs_name", None)
    attrs = [n for n in gm.graph.nodes if n.op == "get_attr" and n.target == name]
    if name is None or len(attrs) != 1:
        return None
    reads: dict[int, list[Node]] = {}
    for user in attrs[0].users:
        if not (user.op == "call_function" and user.target is operator.getitem and isinstance(user.args[1], int)):
            return None
        reads.setdefault(user.args[1], []).append(user)
    return reads


def _renumber(reads: dict[int, list[Node]], keep: list[int]) -> None:
    new = {old: i for i, old in enumerate(keep)}
    for old, nodes in reads.items():
        for n in nodes:
            n.args = (n.args[0], new[old])


def drop_unread_constants(folded: GraphModule) -> int:
    """Before folding runs: the constant subgraph returns only the items the tangent graph reads; return
    how many it no longer returns.

    ``const_fold`` makes every value the constant subgraph hands over an output, and its folding keeps a
    clone of each — including values no replayed node reads (the parameters themselves, activations whose
    only tangent-side reader was dead code). On the benchmark CNN that was 50 of 89 items, 45 of 111 MB.
    """
    reads = _constant_reads(folded)
    sub = getattr(folded, "const_subgraph_module", None)
    if reads is None or sub is None or getattr(folded, "has_folding_been_run", True):
        return 0
    output = next(n for n in sub.graph.nodes if n.op == "output")
    items = output.args[0]
    if not isinstance(items, (tuple, list)) or len(reads) in (0, len(items)):
        return 0  # one item is returned bare, not as a tuple; with nothing read there is nothing to fold
    keep = sorted(reads)
    _renumber(reads, keep)
    output.args = (tuple(items[i] for i in keep),)
    sub.recompile()
    folded.recompile()
    return len(items) - len(keep)


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().reshape(-1).view(torch.uint8)


def share_equal_constants(folded: GraphModule) -> int:
    """After folding: items of the folded tuple that are equal bit for bit (same dtype, shape and
    strides) are kept once, every reader reading the first; return how many were dropped.

    Folding clones each item, so one tensor the constant subgraph returns twice (an input and an alias
    of it, one activation read by two backward formulas) is held twice: 24 MB of the CNN's 66 MB read.
    Sharing is exact because the replay never writes into a constant (:func:`repair_constant_mutations`
    gives every in-place write a clone of its own and refuses writes into views); bits, not ``==``,
    decide, so −0.0 and +0.0 stay apart.
    """
    reads = _constant_reads(folded)
    items = getattr(folded, getattr(folded, "fx_const_folded_attrs_name", "") or "", None)
    if reads is None or not isinstance(items, torch.nn.ParameterList) or len(items) < 2:
        return 0
    first: dict[tuple, list[int]] = {}
    dropped = []
    for i in sorted(reads):
        t = items[i]
        key = (t.dtype, tuple(t.shape), t.stride(), t.device, t.requires_grad)
        for j in first.setdefault(key, []):
            if torch.equal(_bits(items[j]), _bits(t)):
                for n in reads.pop(i):
                    n.replace_all_uses_with(reads[j][0])
                    folded.graph.erase_node(n)
                dropped.append(i)
                break
        else:
            first[key].append(i)
    if dropped:
        keep = sorted(reads)
        _renumber(reads, keep)
        setattr(folded, folded.fx_const_folded_attrs_name, torch.nn.ParameterList([items[i] for i in keep]))
        folded.graph.lint()
        folded.recompile()
    return len(dropped)


def linearize_gradient(loss: Callable[[Params], torch.Tensor], params: Params) -> Callable[[Params], Params]:
    """v ↦ ∇²loss(θ) v as a replayable traced graph (the linearisation of ∇loss at ``params``).

    Same construction as ``torch.func.linearize(torch.func.grad(loss), params)`` — trace the
    forward-AD pass through the gradient once, fold everything independent of v — plus the repair
    of :func:`repair_constant_mutations`. The returned function takes and returns a tuple shaped
    like ``params`` and composes with ``vmap``.
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

    return product
