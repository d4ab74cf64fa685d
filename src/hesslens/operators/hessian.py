"""The Hessian of a model's loss as a linear operator.

    H = ∇²_θ L(θ),   L(θ) = Σ_b w_b · ℓ(model_θ(x_b), y_b),   w_b = n_b / N  (mean reduction)

θ is the flattened vector of the selected parameters (in ``model.named_parameters()`` order);
everything else (other parameters, buffers) is held fixed. Products ``H @ V`` are batched over the
columns of V and computed by an engine of :mod:`hesslens.operators.engines`.
"""

from __future__ import annotations

import fnmatch
import math
import os
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._pytree import tree_leaves

from ..errors import InvalidInputError, NonDeterministicLossError
from .base import assemble_dense
from .data import AnalysisData, as_analysis_data, first_non_finite_leaf
from .engines import ENGINES, choose_engine, profile_gradient
from .state import check_mode, preserved_state

ParamSelection = Iterable[str | nn.Module | torch.Tensor] | str | nn.Module | None


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def select_parameters(model: nn.Module, params: ParamSelection) -> list[str]:
    """Names of the selected parameters, in ``model.named_parameters()`` order.

    ``params`` is None (all parameters with ``requires_grad``), or one or several of: a name or
    glob pattern (``"0.*"``, ``"*.bias"``), a sub-module, a parameter tensor.
    """
    named = list(model.named_parameters())
    if params is None:
        names = [n for n, p in named if p.requires_grad]
        if not names:
            raise InvalidInputError("the model has no trainable parameters (none has requires_grad=True)")
        return names
    items = [params] if isinstance(params, (str, nn.Module, torch.Tensor)) else list(params)
    if not items:
        raise InvalidInputError("params is empty: it selects no parameter (pass None for all trainable ones)")
    chosen: set[str] = set()
    for item in items:
        if isinstance(item, str):
            hits = {n for n, _ in named if fnmatch.fnmatchcase(n, item)}
        elif isinstance(item, nn.Module):
            ids = {id(p) for p in item.parameters()}
            hits = {n for n, p in named if id(p) in ids}
        elif isinstance(item, torch.Tensor):
            hits = {n for n, p in named if p is item}
        else:
            raise InvalidInputError(f"params entries must be names, patterns, modules or tensors, got {type(item).__name__}")
        if not hits:
            raise InvalidInputError(f"params entry {item if isinstance(item, str) else type(item).__name__!r} matches no parameter of the model")
        chosen |= hits
    return [n for n, _ in named if n in chosen]


def _outputs_tensor(outputs: Any) -> Any:
    # Hugging Face style outputs carry the predictions in .logits.
    if not isinstance(outputs, torch.Tensor) and hasattr(outputs, "logits"):
        return outputs.logits
    return outputs


class _LossModule(nn.Module):
    """Wraps model and loss so that ``functional_call`` can substitute parameters in either form."""

    def __init__(self, model: nn.Module, loss_fn: Callable | None, batch_loss: Callable | None):
        super().__init__()
        self.model = model
        self._loss_fn, self._batch_loss = loss_fn, batch_loss

    def forward(self, batch: Any) -> torch.Tensor:
        # PyTorch's fused attention kernels (flash, memory-efficient) have neither a forward-mode
        # derivative nor a double-backward formula; the reference "math" kernel computes the same
        # function with differentiable operations. The choice is restored on exit.
        with sdpa_kernel(SDPBackend.MATH):
            return self._evaluate(batch)

    def _evaluate(self, batch: Any) -> torch.Tensor:
        if self._batch_loss is not None:
            return self._batch_loss(self.model, batch)
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise InvalidInputError(
                f"with loss_fn, every batch must be an (inputs, targets) pair, got {type(batch).__name__}; "
                "pass batch_loss=fn(model, batch) for other batch structures"
            )
        inputs, targets = batch
        return self._loss_fn(_outputs_tensor(self.model(inputs)), targets)


class HessianOperator:
    """Hessian of the mean training loss of ``model`` over ``data``, as a symmetric linear operator.

    Parameters
    ----------
    model : the network; left exactly as found after every call.
    loss_fn : criterion ``(outputs, targets) -> scalar`` such as ``nn.CrossEntropyLoss()``. With
        ``reduction="sum"`` batches add up unweighted; otherwise they are weighted by n_b/N.
    data : one ``(inputs, targets)`` batch, an iterable of batches, or a DataLoader.
    params : which parameters θ spans: None for all trainable ones, or names, glob patterns,
        modules or parameter tensors.
    mode : ``"eval"`` (default), ``"train"`` (BatchNorm with batch statistics, running statistics
        untouched) or ``"as_is"``.
    batch_loss : ``fn(model, batch) -> scalar`` instead of ``loss_fn`` for custom losses, dict batches,
        outputs with ``.logits``; treated as a mean over the batch's samples.
    engine : ``"auto"`` (time the cached engines on the first batch, keep the fastest),
        ``"linearize"``, ``"double_backward"`` or ``"streaming"``, optionally suffixed ``"+vmap"``
        (columns batched by ``vmap``, the default) or ``"+loop"`` (one column at a time); the
        :attr:`engine` of an earlier operator can be passed to skip the timing.
    max_columns : most columns per batched product (bounds memory); None chooses from the
        measured activation memory.
    cache_budget : bytes the cached engines may hold; default a quarter of physical memory.
    check_determinism : evaluate the first batch twice and refuse a stochastic loss.
    expected_matvecs : how many product columns the caller expects to need; ``"auto"`` weighs each
        engine's set-up time against that many products (a linearisation is slow to build and fast to
        replay, so it pays off for a spectral density, not for one λ_max).

    Examples
    --------
    >>> import torch, hesslens as hl
    >>> X, y = torch.randn(20, 3, dtype=torch.float64), torch.randn(20, 1, dtype=torch.float64)
    >>> model = torch.nn.Linear(3, 1, bias=False).double()
    >>> op = hl.HessianOperator(model, torch.nn.MSELoss(), (X, y))
    >>> torch.allclose(op.dense(), 2 / 20 * X.T @ X)
    True
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[Any, Any], torch.Tensor] | None = None,
        data: Any = None,
        *,
        params: ParamSelection = None,
        mode: str = "eval",
        batch_loss: Callable[[nn.Module, Any], torch.Tensor] | None = None,
        engine: str = "auto",
        max_columns: int | None = None,
        cache_budget: int | None = None,
        check_determinism: bool = True,
        expected_matvecs: int = 1000,
    ):
        if not isinstance(model, nn.Module):
            raise InvalidInputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if (loss_fn is None) == (batch_loss is None):
            raise InvalidInputError("pass exactly one of loss_fn=(outputs, targets) -> scalar or batch_loss=(model, batch) -> scalar")
        engine_name, _, columns = engine.partition("+")
        if engine != "auto" and (engine_name not in ENGINES or columns not in ("", "vmap", "loop")):
            raise InvalidInputError(f"engine must be 'auto' or one of {sorted(ENGINES)}, optionally with '+vmap' "
                                    f"or '+loop' (e.g. 'linearize+loop'), got {engine!r}")
        self.model, self.mode = model, check_mode(mode)
        self.reduction = "mean" if batch_loss is not None else getattr(loss_fn, "reduction", "mean")
        self.data: AnalysisData = as_analysis_data(data)
        self.param_names = select_parameters(model, params)
        named = dict(model.named_parameters())
        self.param_shapes = [tuple(named[n].shape) for n in self.param_names]
        sizes = [math.prod(s) for s in self.param_shapes]
        self.n = sum(sizes)
        offsets = np.cumsum([0] + sizes)
        self.blocks: "OrderedDict[str, slice]" = OrderedDict(
            (n, slice(int(a), int(b))) for n, a, b in zip(self.param_names, offsets[:-1], offsets[1:])
        )
        first = named[self.param_names[0]]
        self.dtype, self.device = first.dtype, first.device
        self._wrapper = _LossModule(model, loss_fn, batch_loss)
        # A snapshot of every tensor the loss reads: a later in-place update of the model (an optimiser
        # step, BatchNorm statistics) neither leaks into products nor invalidates a kept graph.
        self._primal = tuple(named[n].detach().clone() for n in self.param_names)
        self._fixed = {f"model.{n}": t.detach().clone() for n, t in
                       [*model.named_parameters(), *model.named_buffers()] if n not in self.blocks}
        self.matvecs = 0
        self.product_seconds = 0.0
        with preserved_state(model, self.mode):
            losses, first_batch = self._check_losses()
            if check_determinism:
                self._check_determinism(losses[0], first_batch)
            batches = list(self.data)
            profile = profile_gradient(self._loss, self._primal, batches[0])
            per_batch = profile.saved_bytes
            budget = cache_budget if cache_budget is not None else _memory_bytes() // 4
            # A linearised or kept double-backward graph holds about three times what one gradient saves.
            cache_fits = 3 * per_batch * len(batches) <= budget
            self.max_columns = max_columns or int(max(1, min(64, budget // max(1, 8 * per_batch))))
            t0 = time.perf_counter()
            if engine == "auto":
                choice = choose_engine(self._loss, self._primal, batches if cache_fits else self.data,
                                       self.data.weights(self.reduction), cache_fits=cache_fits,
                                       linearize_blocker=profile.linearize_blocker(),
                                       expected_matvecs=expected_matvecs)
                self._engine, self.engine_reason, self.engine_timings = choice.engine, choice.reason, choice.timings
            else:
                if engine_name == "linearize" and profile.linearize_blocker():
                    raise InvalidInputError(f"engine='linearize' is unavailable for this model: {profile.linearize_blocker()}")
                source = self.data if engine_name == "streaming" else batches
                extra = {"forward_mode": profile.linearize_blocker() is None} if engine_name == "streaming" else {}
                self._engine = ENGINES[engine_name](self._loss, self._primal, source, self.data.weights(self.reduction),
                                                    use_vmap=columns != "loop", **extra)
                self.engine_reason, self.engine_timings = "requested", {}
            self.setup_seconds = time.perf_counter() - t0
        self.loss_value = float(sum(w * l for w, l in zip(self.data.weights(self.reduction), losses)))

    # -- loss evaluation -------------------------------------------------------------------------
    def _loss(self, params: Sequence[torch.Tensor], batch: Any) -> torch.Tensor:
        values = {**self._fixed, **{f"model.{n}": p for n, p in zip(self.param_names, params)}}
        return functional_call(self._wrapper, values, (batch,), strict=False)

    def _check_losses(self) -> tuple[list[float], Any]:
        losses, first = [], None
        with torch.no_grad():
            for i, batch in enumerate(self.data):
                bad = first_non_finite_leaf(batch)
                if bad:
                    raise InvalidInputError(f"batch {i} of {len(self.data)}: {bad}")
                value = self._loss(self._primal, batch)
                if not isinstance(value, torch.Tensor) or value.numel() != 1:
                    shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                    raise InvalidInputError(f"the loss must be a scalar, got {shape} on batch {i}; reduce it with mean or sum")
                v = float(value)
                if not math.isfinite(v):
                    raise InvalidInputError(f"the loss is not finite ({v}) on batch {i} of {len(self.data)}")
                losses.append(v)
                first = batch if first is None else first
        return losses, first

    def _check_determinism(self, first_loss: float, first_batch: Any) -> None:
        batch = next(iter(self.data))
        with torch.no_grad():
            again = float(self._loss(self._primal, batch))
        if math.isclose(again, first_loss, rel_tol=1e-6, abs_tol=1e-9):
            return
        same_inputs = all(
            a is b or (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b))
            for a, b in zip(tree_leaves(first_batch), tree_leaves(batch))
        )
        cause = ("the model is stochastic (dropout active, e.g. mode='train'?)" if same_inputs else
                 "the data yields a different first batch on each pass (shuffling loader or random augmentation?)")
        raise NonDeterministicLossError(
            f"the loss on batch 0 changed between two evaluations ({first_loss!r} then {again!r}): {cause}. "
            "The Hessian would differ from product to product; use mode='eval', a fixed subset and a "
            "loader without shuffling, or pass check_determinism=False if this is intended"
        )

    # -- products --------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.n)

    @property
    def engine(self) -> str:
        """The product engine in use, e.g. ``"linearize+vmap"``."""
        return self._engine.label

    def _split(self, v: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(n, k) → one (k, *shape) tangent per parameter."""
        k = v.shape[1]
        return tuple(v[s].T.reshape(k, *shape) for s, shape in zip(self.blocks.values(), self.param_shapes))

    def _reduce(self, hv: torch.Tensor) -> torch.Tensor:
        """Hook for products summed across processes (the distributed operator all-reduces here)."""
        return hv

    def torch_matmat(self, v: torch.Tensor) -> torch.Tensor:
        """H V for a float64 (n, k) tensor, in float64: the entry point of the linear-algebra layer."""
        out_dtype = v.dtype
        v = v.to(self.dtype).to(self.device)
        cols = []
        t0 = time.perf_counter()
        with preserved_state(self.model, self.mode), torch.no_grad():
            for start in range(0, v.shape[1], self.max_columns):
                chunk = v[:, start:start + self.max_columns]
                parts = self._engine.hvp(self._split(chunk))
                cols.append(torch.cat([p.reshape(p.shape[0], -1) for p in parts], dim=1).T)
        hv = self._reduce(cols[0] if len(cols) == 1 else torch.cat(cols, dim=1))
        self.product_seconds += time.perf_counter() - t0
        self.matvecs += v.shape[1]
        # min and max propagate NaN and show ±Inf without an n-long mask (large models: fewer allocations)
        if not all(math.isfinite(float(x)) for x in torch.aminmax(hv)):
            raise InvalidInputError("a Hessian-vector product is not finite: the loss surface has NaN/Inf curvature here")
        return hv.to(out_dtype)

    def __matmul__(self, v: Any) -> Any:
        is_numpy = isinstance(v, np.ndarray)
        t = torch.from_numpy(v) if is_numpy else v
        if not isinstance(t, torch.Tensor) or t.ndim not in (1, 2) or t.shape[0] != self.n:
            raise InvalidInputError(f"expected a vector of shape ({self.n},) or a matrix ({self.n}, k), got {getattr(v, 'shape', type(v))}")
        out = self.torch_matmat(t.reshape(self.n, -1)).reshape(t.shape)
        return out.numpy() if is_numpy else out

    def matvec(self, v: Any) -> Any:
        return self @ v

    def dense(self, *, max_bytes: int | None = None) -> torch.Tensor:
        """The dense float64 Hessian; refuses with a memory estimate above ``max_bytes``."""
        return assemble_dense(self, max_bytes=max_bytes)

    def to_scipy(self):
        """A ``scipy.sparse.linalg.LinearOperator`` view (float64)."""
        from scipy.sparse.linalg import LinearOperator

        def matmat(x: np.ndarray) -> np.ndarray:
            return self.torch_matmat(torch.from_numpy(np.asarray(x, dtype=np.float64).reshape(self.n, -1))).numpy()

        return LinearOperator((self.n, self.n), matvec=lambda x: matmat(x).ravel(), matmat=matmat, dtype=np.float64)

    def gradient(self) -> torch.Tensor:
        """∇L(θ) as a flat vector over the selected parameters (float64)."""
        with preserved_state(self.model, self.mode):
            total = torch.zeros(self.n, dtype=torch.float64)
            for batch, w in zip(self.data, self.data.weights(self.reduction)):
                leaves = [p.detach().requires_grad_(True) for p in self._primal]
                with torch.enable_grad():
                    g = torch.autograd.grad(self._loss(leaves, batch), leaves, allow_unused=True)
                total += w * torch.cat([(torch.zeros_like(p) if gi is None else gi).reshape(-1).double()
                                        for gi, p in zip(g, self._primal)])
        return total

    def __repr__(self) -> str:
        return (f"HessianOperator(n={self.n}, params={len(self.param_names)}, samples={self.data.total}, "
                f"batches={len(self.data)}, mode={self.mode!r}, engine={self.engine!r})")
