"""How a Hessian-vector product is computed.

All engines evaluate the same quantity, for a batch of k tangent columns V = [v_1 … v_k]:

    H V = Σ_b w_b ∇²L_b(θ) V,

with w_b the batch weights of :mod:`hesslens.operators.data`. They differ in what they keep
between products:

``linearize``
    ``torch.func.linearize`` of the gradient, once per batch: every later product is a replay of
    the forward-over-reverse tangent graph with no primal recomputation.
``double_backward``
    the gradient graph of each batch, built once with ``create_graph=True`` and kept; a product
    is one backward pass through it (Pearlmutter's R-operator by reverse-over-reverse).
``streaming``
    nothing kept: each product recomputes forward-over-reverse (or double backward) batch by
    batch. Memory stays at one batch; each product costs about two gradients.

Columns are pushed through either with ``vmap`` or one at a time. Which of the four cached
variants is fastest depends on the model (vmap of a convolution is slow on CPU, of a matmul it is
fast), so :func:`choose_engine` times them on the first batch and keeps the fastest.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch.func import grad, jvp, linearize, vmap
from torch.utils._python_dispatch import TorchDispatchMode

Params = tuple[torch.Tensor, ...]
BatchLoss = Callable[[Params, Any], torch.Tensor]

#: Errors that mean "this operation has no forward-mode derivative / no batching rule".
_UNSUPPORTED = (RuntimeError, NotImplementedError)


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
        self._jvps = [
            _quiet(lambda b=b: linearize(grad(lambda p: self.loss(p, b)), self.params)[1]) for b in self.batches
        ]

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
            except _UNSUPPORTED as err:
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


#: aten operators whose tracing by ``torch.func.linearize`` crashes the interpreter (a segfault,
#: which no ``except`` can catch), so their models never reach the linearize engine.
LINEARIZE_CRASHES = {"aten.mse_loss_backward.default": "mse_loss backward segfaults under linearize tracing (PyTorch 2.13)"}


@dataclass(frozen=True)
class GradientProfile:
    """What one gradient of the first batch saves for backward and which aten operators it runs."""

    saved_bytes: int
    ops: frozenset[str]

    def linearize_blocker(self) -> str | None:
        hits = [LINEARIZE_CRASHES[o] for o in self.ops if o in LINEARIZE_CRASHES]
        return hits[0] if hits else None


class _OpRecorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(str(func))
        return func(*args, **(kwargs or {}))


def profile_gradient(loss: BatchLoss, params: Params, batch: Any) -> GradientProfile:
    """One gradient of ``batch`` with saved-tensor and operator bookkeeping (a cached engine keeps
    about three times the saved bytes per batch)."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    leaves = _leaf_copies(params)
    recorder = _OpRecorder()
    with torch.enable_grad(), recorder, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        torch.autograd.grad(loss(tuple(leaves), batch), leaves, allow_unused=True)
    return GradientProfile(total, frozenset(recorder.ops))


@dataclass(frozen=True)
class EngineChoice:
    """The chosen engine, why, and the measured seconds per product column (``build:*``: set-up)."""

    engine: Engine
    reason: str
    timings: dict[str, float]


#: A first (warm-up) call slower than this is taken as the measurement: on large models the
#: first-call overhead is small next to the product, and repeats would dominate the set-up time.
SLOW_CALL_SECONDS = 1.0


def _time(engine: Engine, tangents: Params, repeats: int = 2) -> float:
    t0 = time.perf_counter()
    engine.hvp(tangents)  # warm-up: first replays allocate and compile kernels
    first = time.perf_counter() - t0
    if first > SLOW_CALL_SECONDS:
        return first
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        engine.hvp(tangents)
        best = min(best, time.perf_counter() - t0)
    return best


def choose_engine(
    loss: BatchLoss,
    params: Params,
    batches: Sequence[Any],
    weights: Sequence[float],
    *,
    cache_fits: bool,
    linearize_blocker: str | None = None,
    expected_matvecs: int = 1000,
    probe_columns: int = 4,
) -> EngineChoice:
    """Pick the engine that finishes ``expected_matvecs`` products soonest, timing candidates on the
    first batch: build time (a linearisation costs far more to build than a kept gradient graph)
    plus the expected number of products at the measured time per product.

    The trial products cost a few gradients per candidate. Where building the kept gradient graph
    (about one gradient) takes over :data:`SLOW_CALL_SECONDS` / 4, they use two columns instead of
    ``probe_columns``, and a slow first call is not repeated, so set-up stays a small multiple of a
    gradient on large models.

    Candidates that raise (no forward-mode rule, no batching rule) are dropped with their reason;
    if the cache does not fit in memory only the streaming engine is considered.
    """
    if not cache_fits:
        for use_vmap in (True, False):
            eng = StreamingEngine(loss, params, batches, weights, use_vmap=use_vmap, forward_mode=linearize_blocker is None)
            try:
                eng.hvp(tuple(torch.zeros(1, *p.shape, dtype=p.dtype, device=p.device) for p in params))
                return EngineChoice(eng, "cache would not fit in the memory budget", {})
            except _UNSUPPORTED:
                continue
        return EngineChoice(StreamingEngine(loss, params, batches, weights, use_vmap=False,
                                            forward_mode=linearize_blocker is None), "cache would not fit", {})
    first = [batches[0]]
    timings: dict[str, float] = {}
    built: dict[str, Engine] = {}
    build: dict[str, float] = {}
    failures: list[str] = [f"linearize: {linearize_blocker}"] if linearize_blocker else []
    for cls in (DoubleBackwardEngine,) if linearize_blocker else (DoubleBackwardEngine, LinearizeEngine):
        try:
            t0 = time.perf_counter()
            built[cls.name] = cls(loss, params, first, (1.0,), use_vmap=True)
            build[cls.name] = time.perf_counter() - t0
        except _UNSUPPORTED as err:
            failures.append(f"{cls.name}: {str(err).splitlines()[0][:160]}")
    if build.get(DoubleBackwardEngine.name, 0.0) > SLOW_CALL_SECONDS / 4:
        probe_columns = min(probe_columns, 2)
    gen = torch.Generator(device="cpu").manual_seed(0)
    tangents = tuple(torch.randn(probe_columns, *p.shape, generator=gen, dtype=p.dtype).to(p.device) for p in params)
    for engine in built.values():
        for use_vmap in (True, False):  # both column strategies share one cache
            engine.use_vmap = use_vmap
            try:
                timings[engine.label] = _time(engine, tangents) / probe_columns
            except _UNSUPPORTED as err:
                failures.append(f"{engine.label}: {str(err).splitlines()[0][:160]}")
    if not timings:
        raise RuntimeError("no Hessian-vector product engine works for this model:\n" + "\n".join(failures))
    total = {label: build[label.split("+")[0]] + expected_matvecs * t for label, t in timings.items()}
    best = min(total, key=total.get)
    name, mode = best.split("+")
    if not any(k.startswith("linearize") for k in timings):
        warnings.warn("hesslens: the linearize engine is unavailable for this model; using double backward: "
                      + "; ".join(failures), stacklevel=3)
    if len(batches) == 1 and tuple(weights) == (1.0,):  # the timed engine already holds the whole cache
        engine = built[name]
        engine.use_vmap = mode == "vmap"
    else:
        engine = ENGINES[name](loss, params, batches, weights, use_vmap=(mode == "vmap"))
    reason = (f"fastest of {len(timings)} for {expected_matvecs} products (build + products, timed on the "
              f"first batch with {probe_columns} columns)")
    if failures:
        reason += "; unavailable: " + "; ".join(failures)
    timings.update({f"build:{k}": v for k, v in build.items()})
    return EngineChoice(engine, reason, timings)
