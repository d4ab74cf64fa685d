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
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Sequence

import torch
from torch.func import grad, jvp, vmap

from .linearize import UnsafeLinearizationError, linearize_gradient

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
    return tuple(torch.stack([c[j] for c in cols]) for j in range(len(tangents)))


def _accumulate(total: list[torch.Tensor] | None, part: Params, weight: float) -> list[torch.Tensor]:
    if total is None:
        return [weight * p for p in part]
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
            total = _accumulate(total, _quiet(lambda: _apply_columns(f, tangents, self.use_vmap)), w)
        return tuple(total)


def _reverse_over_reverse(grads: Params, leaves: list[torch.Tensor], tangents: Params, use_vmap: bool) -> Params:
    """H V from a kept gradient graph: one backward pass of ⟨∇L, v⟩ per column (or vmapped)."""
    used = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
    if not used:  # the loss is at most linear in every selected parameter
        return tuple(torch.zeros_like(t) for t in tangents)

    def product(cols: Params) -> Params:
        out = torch.autograd.grad(
            [grads[i] for i in used], leaves, [cols[i] for i in used],
            retain_graph=True, allow_unused=True, is_grads_batched=use_vmap,
        )
        return tuple(torch.zeros_like(c) if o is None else o for o, c in zip(out, cols))

    return product(tangents) if use_vmap else _apply_columns(product, tangents, False)


def _gradient_graph(loss: BatchLoss, params: Params, batch: Any) -> tuple[Params, list[torch.Tensor]]:
    leaves = _leaf_copies(params)
    with torch.enable_grad():
        value = loss(tuple(leaves), batch)
        return torch.autograd.grad(value, leaves, create_graph=True, allow_unused=True), leaves


class DoubleBackwardEngine(Engine):
    name = "double_backward"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._graphs = [_gradient_graph(self.loss, self.params, b) for b in self.batches]

    def hvp(self, tangents: Params) -> Params:
        total = None
        for (g, leaves), w in zip(self._graphs, self.weights):
            total = _accumulate(total, _reverse_over_reverse(g, leaves, tangents, self.use_vmap), w)
        return tuple(total)


class StreamingEngine(Engine):
    """No cache: forward-over-reverse per batch and product; double backward where forward AD is missing."""

    name = "streaming"

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


ENGINES = {"linearize": LinearizeEngine, "double_backward": DoubleBackwardEngine, "streaming": StreamingEngine}
