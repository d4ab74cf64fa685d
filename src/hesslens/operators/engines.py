"""How a Hessian-vector product is computed.

All engines evaluate the same quantity, for a batch of k tangent columns V = [v_1 … v_k]:

    H V = Σ_b w_b ∇²L_b(θ) V,

with w_b the batch weights of :mod:`hesslens.operators.data`. They differ in what they keep
between products:

``linearize``
    the linearisation of the gradient, traced once per batch as ``torch.func.linearize`` does (with
    the repair of :mod:`hesslens.operators.linearize`): every later product is a replay of the
    forward-over-reverse tangent graph with no primal recomputation.
``double_backward``
    the gradient graph of each batch, built once with ``create_graph=True`` and kept; a product
    is one backward pass through it (Pearlmutter's R-operator by reverse-over-reverse).
``streaming``
    nothing kept: each product recomputes forward-over-reverse (or double backward) batch by
    batch. Memory stays at one batch; each product costs about two gradients.

Columns are pushed through either with ``vmap`` or one at a time. Which of the four cached
variants is fastest depends on the model (vmap of a convolution is slow on CPU, of a matmul it is
fast); :mod:`hesslens.operators.choice` checks each against double backward and times them.

Block products (:meth:`Engine.block_hvp`): for K groups of parameter tensors, the K
diagonal blocks H_ii V_i at once. The reverse-mode engines prune each block's backward pass to the
block's parameters (what an operator over that block alone would do, from the one kept graph); the
forward-mode ones compute every output of a JVP anyway and multiply the zero-padded tangents.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Sequence

import torch
from torch.func import grad, jvp, vmap

from .linearize import linearize_gradient
from .linearize_passes import UnsafeLinearizationError

Params = tuple[torch.Tensor, ...]
BatchLoss = Callable[[Params, Any], torch.Tensor]

#: Errors that mean "this operation has no forward-mode derivative / no batching rule".
UNSUPPORTED = (RuntimeError, NotImplementedError, UnsafeLinearizationError)


def _quiet(fn: Callable[[], Any]) -> Any:
    # linearize's tracing warns about get_attr nodes its constant folding inserts itself and about
    # its own internal use of torch.jit.script: harmless, and not the user's to act on.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Attempted to insert a get_attr Node")
        warnings.filterwarnings("ignore", message=".*torch.jit.script.* is deprecated", category=DeprecationWarning)
        return fn()


def _apply_columns(fn: Callable[[Params], Params], tangents: Params, use_vmap: bool) -> Params:
    """Apply a single-column product to k columns (leading dimension of every tangent)."""
    if use_vmap:
        return vmap(fn)(tangents)
    k = tangents[0].shape[0]
    cols = [fn(tuple(t[i] for t in tangents)) for i in range(k)]
    if k == 1:  # a view, not a copy: on models of millions of parameters every n-long copy shows
        return tuple(c.unsqueeze(0) for c in cols[0])
    return tuple(torch.stack([c[j] for c in cols]) for j in range(len(tangents)))


def _accumulate(total: list[torch.Tensor] | None, part: Params, weight: float, only: bool = False) -> list[torch.Tensor]:
    """Σ w_b part_b. The first part is copied (a product may alias its tangent: autograd passes a
    gradient through identity paths as is), unless it is the ``only`` one with weight 1: then it is the sum."""
    if total is None:
        return list(part) if only and weight == 1.0 else [weight * p for p in part]
    for t, p in zip(total, part):
        t.add_(p, alpha=weight)
    return total


def _leaf_copies(params: Params) -> list[torch.Tensor]:
    return [p.detach().requires_grad_(True) for p in params]


class Engine:
    """Computes Σ_b w_b H_b V for tangents with a leading column dimension."""

    name: str = "engine"

    def __init__(self, loss: BatchLoss, params: Params, batches: Sequence[Any] | Any, weights: Sequence[float], use_vmap: bool):
        self.loss, self.params, self.batches, self.weights = loss, params, batches, tuple(weights)
        self.use_vmap = use_vmap

    @property
    def label(self) -> str:
        return f"{self.name}+{'vmap' if self.use_vmap else 'loop'}"

    def hvp(self, tangents: Params) -> Params:
        raise NotImplementedError

    #: Whether a product of ONE column takes the loop although the engine vmaps: vmap has nothing to
    #: batch then and costs more (1.3× the loop's time on the benchmark's ResNet-18). Set by the engine
    #: choice only where this engine's loop mode was verified too (double backward's loop is the reference).
    loop_for_one_column: bool = False

    def _vmap(self, tangents: Params) -> bool:
        """Whether these columns go through vmap."""
        return self.use_vmap and not (self.loop_for_one_column and tangents[0].shape[0] == 1)

    #: Whether a call recomputes something all its columns share (the streaming engine's forward pass).
    recomputes_per_call: bool = False

    def columns_per_call(self, limit: int) -> int:
        """How many columns to hand :meth:`hvp` at once, at most ``limit``: one for a cached engine that
        loops — it multiplies one column at a time anyway, and its products of one column are its
        backward pass's own tensors, where k columns are stacked into a copy of k·n first."""
        return limit if self.use_vmap or self.recomputes_per_call else 1

    #: Whether :meth:`block_hvp` multiplies block by block (its memory is that of one block's
    #: columns at a time) rather than in one padded product of all blocks' columns.
    pruned_blocks: bool = False

    def block_hvp(self, groups: Sequence[Sequence[int]], tangents: Sequence[Params]) -> list[Params]:
        """H_ii V_i for every block i: ``groups[i]`` the indices of block i's parameter tensors
        (ascending; two blocks may share one), ``tangents[i]`` its tangents, one per index, with a
        leading column dimension c_i. Returns one tuple of products per block, like its tangents.

        This default (right for every engine) zero-pads the tangents to every parameter, multiplies
        all blocks' columns in ONE product and keeps each block's own rows and columns.
        """
        cols = [t[0].shape[0] for t in tangents]
        where = [dict(zip(group, tangent)) for group, tangent in zip(groups, tangents)]
        padded = []
        for j, p in enumerate(self.params):
            parts = [w[j] if j in w else p.new_zeros(c, *p.shape) for w, c in zip(where, cols)]
            padded.append(torch.cat(parts) if len(parts) > 1 else parts[0])
        full = self.hvp(tuple(padded))
        out, c0 = [], 0
        for group, c in zip(groups, cols):
            out.append(tuple(full[j][c0:c0 + c] for j in group))
            c0 += c
        return out


class LinearizeEngine(Engine):
    name = "linearize"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # Not torch.func.linearize itself: its replays drift where the traced graph writes into its
        # folded constants (BCE, GRU); see hesslens.operators.linearize.
        self._jvps = [linearize_gradient(lambda p, b=b: self.loss(p, b), self.params) for b in self.batches]

    def hvp(self, tangents: Params) -> Params:
        total = None
        for f, w in zip(self._jvps, self.weights):
            total = _accumulate(total, _quiet(lambda: _apply_columns(f, tangents, self._vmap(tangents))), w, len(self._jvps) == 1)
        return tuple(total)


def vector_jacobian(outputs: Sequence[torch.Tensor], inputs: Sequence[torch.Tensor],
                    tangents: Sequence[torch.Tensor]) -> tuple[torch.Tensor | None, ...]:
    """Σ_i (∂ outputs_i / ∂ inputs)ᵀ tangents_i through a kept graph: ``torch.autograd.grad(outputs, inputs,
    tangents, retain_graph=True, allow_unused=True)``, made by the autograd-engine call that ``grad`` makes
    once it has checked its arguments.

    Why not ``grad`` itself: its check of ``grad_outputs`` imports torch's symbolic-shapes module, and
    sympy with it — about 0.2 s of the first product in a fresh process on PyTorch 2.13, more than the
    whole λ_max of a small model. Nothing is lost: the tangents are split from a column to the
    outputs' shapes (checked here), and the engine still checks their dtype and device against the
    graph. On a PyTorch without that call, or where it refuses these arguments, ``grad`` is used.
    """
    run = getattr(torch.autograd.graph, "_engine_run_backward", None)
    if run is not None and all(o.shape == t.shape for o, t in zip(outputs, tangents)) and len(outputs) == len(tangents):
        try:
            return run(tuple(outputs), tuple(tangents), True, False, tuple(inputs), True, accumulate_grad=False)
        except TypeError:  # another signature: the public route below
            pass
    return torch.autograd.grad(outputs, inputs, tangents, retain_graph=True, allow_unused=True)


def _reverse_over_reverse(grads: Params, leaves: list[torch.Tensor], tangents: Params, use_vmap: bool) -> Params:
    """H V from a kept gradient graph: one backward pass of ⟨∇L, v⟩ per column (or vmapped)."""
    used = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
    if not used:  # the loss is at most linear in every selected parameter
        return tuple(torch.zeros_like(t) for t in tangents)

    def product(cols: Params) -> Params:
        outputs, tangents = [grads[i] for i in used], [cols[i] for i in used]
        if use_vmap:
            out = torch.autograd.grad(outputs, leaves, tangents, retain_graph=True, allow_unused=True, is_grads_batched=True)
        else:
            out = vector_jacobian(outputs, leaves, tangents)
        return tuple(torch.zeros_like(c) if o is None else o for o, c in zip(out, cols))

    return product(tangents) if use_vmap else _apply_columns(product, tangents, False)


def _block_reverse_over_reverse(grads: Params, leaves: list[torch.Tensor], groups: Sequence[Sequence[int]],
                                tangents: Sequence[Params], use_vmap: bool) -> list[Params]:
    """H_ii V_i per block from a kept gradient graph: each block's backward pass runs from its own
    gradients to its own leaves only (autograd skips what does not lead to them), as the product of
    an operator over that block alone does."""
    out = []
    for group, tangent in zip(groups, tangents):
        out.append(_reverse_over_reverse(tuple(grads[j] for j in group), [leaves[j] for j in group], tangent, use_vmap))
    return out


def _accumulate_blocks(total: list[list[torch.Tensor]] | None, parts: list[Params], weight: float) -> list[list[torch.Tensor]]:
    if total is None:
        return [_accumulate(None, p, weight) for p in parts]
    return [_accumulate(t, p, weight) for t, p in zip(total, parts)]


def _gradient_graph(loss: BatchLoss, params: Params, batch: Any) -> tuple[Params, list[torch.Tensor]]:
    leaves = _leaf_copies(params)
    with torch.enable_grad():
        value = loss(tuple(leaves), batch)
        return torch.autograd.grad(value, leaves, create_graph=True, allow_unused=True), leaves


class DoubleBackwardEngine(Engine):
    name = "double_backward"
    pruned_blocks = True

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._graphs = [_gradient_graph(self.loss, self.params, b) for b in self.batches]

    def hvp(self, tangents: Params) -> Params:
        total = None
        for (g, leaves), w in zip(self._graphs, self.weights):
            total = _accumulate(total, _reverse_over_reverse(g, leaves, tangents, self._vmap(tangents)), w, len(self._graphs) == 1)
        return tuple(total)

    def block_hvp(self, groups: Sequence[Sequence[int]], tangents: Sequence[Params]) -> list[Params]:
        total = None
        for (g, leaves), w in zip(self._graphs, self.weights):
            total = _accumulate_blocks(total, _block_reverse_over_reverse(g, leaves, groups, tangents, self.use_vmap), w)
        return [tuple(t) for t in total]


class StreamingEngine(Engine):
    """No cache: forward-over-reverse per batch and product; double backward where forward AD is missing."""

    name = "streaming"
    recomputes_per_call = True

    def __init__(self, *args: Any, forward_mode: bool = True, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # False where the gradient runs an operator whose forward-over-reverse is known to fail.
        self.forward_mode = forward_mode

    def _batch_hvp(self, batch: Any, tangents: Params) -> Params:
        if self.forward_mode:
            try:
                f = grad(lambda p: self.loss(p, batch))
                return _apply_columns(lambda v: jvp(f, (self.params,), (v,))[1], tangents, self.use_vmap)
            except UNSUPPORTED as err:
                warnings.warn(f"hesslens: forward-mode AD unavailable ({err}); streaming with double backward", stacklevel=3)
                self.forward_mode = False
        g, leaves = _gradient_graph(self.loss, self.params, batch)
        return _reverse_over_reverse(g, leaves, tangents, self.use_vmap)

    def hvp(self, tangents: Params) -> Params:
        total = None
        for b, w in zip(self.batches, self.weights):
            total = _accumulate(total, self._batch_hvp(b, tangents), w)
        return tuple(total)

    @property
    def pruned_blocks(self) -> bool:  # type: ignore[override]
        return not self.forward_mode

    def block_hvp(self, groups: Sequence[Sequence[int]], tangents: Sequence[Params]) -> list[Params]:
        """Forward-over-reverse: the padded product. Double backward: per batch one fresh gradient
        graph (one forward and first backward) shared by every block's pruned backward pass."""
        if self.forward_mode:
            return super().block_hvp(groups, tangents)
        total = None
        for b, w in zip(self.batches, self.weights):
            g, leaves = _gradient_graph(self.loss, self.params, b)
            total = _accumulate_blocks(total, _block_reverse_over_reverse(g, leaves, groups, tangents, self.use_vmap), w)
            del g, leaves
        return [tuple(t) for t in total]


class BlockLinearizeEngine(Engine):
    """H_ii V_i by linearising each block's own gradient θ_i ↦ ∇_{θ_i} L(θ_i; the rest of θ fixed), traced
    once per block and batch: the product an operator over that block alone computes with linearize — the
    tangents start at the block and the reverse pass stops there, so an early block of a deep network costs
    less than a full (padded) product. ``groups`` are the blocks it was built (and verified) for; other
    groups go to ``fallback`` (the operator's own engine, padded), or are refused without one. It has no
    full product."""

    name = "linearize"
    pruned_blocks = True

    def __init__(self, loss: BatchLoss, params: Params, batches: Sequence[Any] | Any, weights: Sequence[float],
                 use_vmap: bool, groups: Sequence[Sequence[int]], fallback: Engine | None = None):
        super().__init__(loss, params, batches, weights, use_vmap)
        self.fallback = fallback
        self._jvps = {tuple(g): [linearize_gradient(lambda q, g=tuple(g), b=b: self.loss(self._with(g, q), b),
                                                    tuple(params[j] for j in g)) for b in self.batches]
                      for g in groups}

    def _with(self, group: tuple[int, ...], block: Params) -> Params:
        full = list(self.params)
        for j, q in zip(group, block):
            full[j] = q
        return tuple(full)

    def hvp(self, tangents: Params) -> Params:
        raise NotImplementedError("a per-block linearisation multiplies blocks only (block_hvp)")

    def block_hvp(self, groups: Sequence[Sequence[int]], tangents: Sequence[Params]) -> list[Params]:
        out = []
        for group, tangent in zip(groups, tangents):
            if tuple(group) not in self._jvps:
                if self.fallback is None:
                    raise KeyError(f"no linearisation of block {tuple(group)}: built for {list(self._jvps)}")
                out.extend(self.fallback.block_hvp([group], [tangent]))
                continue
            total = None
            for f, w in zip(self._jvps[tuple(group)], self.weights):
                total = _accumulate(total, _quiet(lambda: _apply_columns(f, tangent, self.use_vmap)), w)
            out.append(tuple(total))
        return out


class MixedBlockEngine(Engine):
    """Block products with an engine of its own per block (``by_group``: group → (engine, use_vmap or None
    to leave the engine's own)), each block multiplied alone; groups it was not chosen for use ``fallback``."""

    name = "mixed"
    pruned_blocks = True

    def __init__(self, by_group: dict[tuple[int, ...], tuple[Engine, bool | None]], fallback: Engine, label: str):
        self.by_group, self.fallback, self._label = by_group, fallback, label

    @property
    def label(self) -> str:
        return self._label

    def hvp(self, tangents: Params) -> Params:
        return self.fallback.hvp(tangents)

    def block_hvp(self, groups: Sequence[Sequence[int]], tangents: Sequence[Params]) -> list[Params]:
        out = []
        for group, tangent in zip(groups, tangents):
            engine, use_vmap = self.by_group.get(tuple(group), (self.fallback, None))
            if use_vmap is not None:
                engine.use_vmap = use_vmap  # an engine made for the blocks only: its mode is per block
            out.extend(engine.block_hvp([group], [tangent]))
        return out


ENGINES = {"linearize": LinearizeEngine, "double_backward": DoubleBackwardEngine, "streaming": StreamingEngine}
