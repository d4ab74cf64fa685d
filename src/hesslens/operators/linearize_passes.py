"""The rewrites of a linearisation's traced tangent graph (:mod:`hesslens.operators.linearize`), each exact.

Before ``const_fold`` splits the graph: :func:`write_out_of_place` (in-place writes into intermediates, which
stop the folding). After: :func:`repair_constant_mutations` (writes that still reach a folded constant go to
a clone), :func:`drop_zero_additions` (``zeros_like(a) + b`` → ``b``), :func:`drop_unread_constants` and, once
the folding has run, :func:`share_equal_constants`. Each returns how many rewrites it made.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
from torch.fx import GraphModule, Node


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


def _functional_variant(target: Any) -> Any:
    """The out-of-place overload of an in-place aten operator (``add_.Tensor`` → ``add.Tensor``) taking the
    same arguments, or None."""
    schema = target._schema
    name = schema.name.split("::")[-1]
    if not name.endswith("_") or torch.Tag.nondeterministic_seeded in target.tags:
        return None
    packet = getattr(torch.ops.aten, name[:-1], None)
    variant = getattr(packet, target._overloadname, None) if packet is not None else None
    if variant is None or [a.name for a in variant._schema.arguments] != [a.name for a in schema.arguments]:
        return None
    return variant


def _keeps_dtype(node: Node, dtype: torch.dtype) -> bool:
    """Whether the out-of-place variant of ``node`` returns ``dtype``, as the in-place write does: every
    tensor argument has it, and Python numbers meet a floating-point tensor (no type promotion)."""
    for a in (*node.args, *node.kwargs.values()):
        if isinstance(a, Node):
            value = _value(a)
            if not isinstance(value, torch.Tensor) or value.dtype != dtype:
                return False
        elif isinstance(a, (bool, int, float)) and not dtype.is_floating_point:
            return False
        elif isinstance(a, complex):
            return False
    return True


def _view_base(node: Node) -> Node | None:
    """The tensor whose storage ``node``'s value is a view of, or None: for a view (``_unsafe_view`` and
    items of a split counted) its input, for an in-place write the tensor it writes and returns."""
    if node.op != "call_function" or not node.args or not isinstance(node.args[0], Node):
        return None
    if _is_view(node) or node.target is torch.ops.aten._unsafe_view.default or (
            node.target is operator.getitem and _is_view(node.args[0])):
        return node.args[0]
    written = _written_arguments(node)
    returns = node.target._schema.returns if isinstance(node.target, torch._ops.OpOverload) else ()
    if written[:1] == [node.args[0]] and len(returns) == 1 and returns[0].alias_info is not None:
        return node.args[0]
    return None


def _out_of_place_write(graph: Any) -> tuple[Node, Any] | None:
    """The first in-place write of ``graph`` that :func:`write_out_of_place` can make out of place, with the
    out-of-place overload to use, or None."""
    nodes = list(graph.nodes)
    order = {n: i for i, n in enumerate(nodes)}
    root: dict[Node, Node] = {}
    for n in nodes:
        base = _view_base(n)
        root[n] = root[base] if base is not None else n
    for n in nodes:
        if n.op != "call_function" or not isinstance(n.target, torch._ops.OpOverload):
            continue
        x = n.args[0] if n.args else None
        returns = n.target._schema.returns
        if not (isinstance(x, Node) and _written_arguments(n) == [x] and len(returns) == 1
                and returns[0].alias_info is not None and returns[0].alias_info.is_write):
            continue
        variant, value = _functional_variant(n.target), _value(x)
        if (variant is None or root[x].op != "call_function" or not isinstance(value, torch.Tensor)
                or not value.is_contiguous() or not _keeps_dtype(n, value.dtype)):
            continue
        # Views of x made after the write read the written values, and will view its out-of-place result.
        derived = {x, n}
        for m in nodes[order[n] + 1:]:
            if _view_base(m) in derived:
                derived.add(m)
        shared = [m for m in nodes if root[m] is root[x] and m not in derived]
        if any(order[m] > order[n] or any(order[u] > order[n] for u in m.users) for m in shared):
            continue
        return n, variant
    return None


def write_out_of_place(gm: GraphModule) -> int:
    """Before folding: in-place writes into intermediates become their out-of-place variants; return how many.

    ``const_fold`` folds neither an in-place (impure) node nor anything computed from its result, so one
    such write in the forward pass — the attention mask added in place, a softmax or a mean divided in
    place by its sum — leaves everything after it in the replayed graph, recomputed on every product from
    constants: on the benchmark transformer, 11 writes, after which its layer norms and softmaxes were
    computed again on every product. ``x.op_(…)`` becomes ``y = op(x, …)``, every later reader of ``x``
    reading ``y``: the same values, where that is exact —

    * the operator writes its first argument and nothing else, and an out-of-place overload of the same
      name takes the same arguments (random operators excluded);
    * ``x`` is contiguous and shares its storage with no input or constant (a caller, or the next replay,
      would see the write), and no other tensor sharing it — the base ``x`` views, a view of ``x`` made
      before the write — is read or made after the write (it would see the write);
    * the result keeps ``x``'s dtype (no type promotion, :func:`_keeps_dtype`).

    Writes not rewritten stay as they are; :func:`repair_constant_mutations` handles the ones that reach
    folded constants. One write at a time, the graph's views worked out again after each.
    """
    graph = gm.graph
    rewritten = 0
    while (found := _out_of_place_write(graph)) is not None:
        n, variant = found
        x = n.args[0]
        position = {m: i for i, m in enumerate(graph.nodes)}
        with graph.inserting_after(n):
            y = graph.call_function(variant, n.args, n.kwargs)
        y.meta = dict(n.meta)
        for user in list(x.users):
            if user not in (n, y) and position[user] > position[n]:
                user.replace_input_with(x, y)
        n.replace_all_uses_with(y)
        graph.erase_node(n)
        rewritten += 1
    if rewritten:
        graph.lint()
        gm.recompile()
    return rewritten


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
