"""The Hessian of a model's loss as a linear operator.

    H = ∇²_θ L(θ),   L(θ) = Σ_b w_b · ℓ(model_θ(x_b), y_b),
    w_b = n_b / N for a mean-reduced loss (H of the mean over all N samples),
    w_b = 1       for a sum-reduced loss  (H of the sum over all N samples).

θ is the flattened vector of the selected parameters (in ``model.named_parameters()`` order);
everything else (other parameters, buffers) is held fixed. Products ``H @ V`` are batched over the
columns of V and computed by an engine of :mod:`hesslens.operators.engines`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import OrderedDict
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from .. import memory
from ..errors import InvalidInputError
from .base import assemble_dense
from .block_products import block_matmat
from .data import AnalysisData, BatchDim, BatchSize, as_analysis_data
from .distributed import Collective
from .engine_slot import EngineSlot
from .engines import ENGINES
from .gradient_profile import profile_gradient
from . import loss as loss_checks
from .loss import LossModule, check_losses, declared_reduction, probe_reduction, settled_reduction
from .params import ParamSelection, select_parameters
from .state import check_mode, preserved_state
from .trial import agreement_tolerance

class HessianOperator:
    """Hessian of the training loss of ``model`` over ``data``, as a symmetric linear operator.

    H is the Hessian of the loss over *all* samples of ``data``: of their mean for a mean-reduced
    loss (batches weighted n_b/N), of their sum for a sum-reduced one (batches weighted 1).

    Parameters
    ----------
    model : the network; left exactly as found after every call.
    loss_fn : criterion ``(outputs, targets) -> scalar`` such as ``nn.CrossEntropyLoss()``.
    data : one ``(inputs, targets)`` batch (inputs may be a tuple of tensors), an iterable of
        batches, or a DataLoader. A shuffling loader is accepted where the loss over a whole pass
        does not depend on the order (checked: eval mode, no batch-dependent layers).
    params : which parameters θ spans: None for all trainable ones, or names, glob patterns,
        modules or parameter tensors.
    mode : ``"eval"`` (default), ``"train"`` (BatchNorm with batch statistics, running statistics
        untouched) or ``"as_is"``.
    batch_loss : ``fn(model, batch) -> scalar`` instead of ``loss_fn`` for custom losses, dict batches,
        outputs with ``.logits``.
    reduction : ``"mean"`` or ``"sum"``: how the loss reduces over a batch's samples. Read from
        ``loss_fn.reduction`` where it has one; otherwise (a plain function, a partial,
        ``batch_loss``) probed once on the first batch (its loss against the loss of the batch with
        every sample twice), and an error asks for it where the probe cannot tell.
    batch_dim : where the samples are in each batch tensor, as ``vmap``'s ``in_dims``: an int for
        every tensor (default 0) or a prefix of the batch's structure, e.g. ``(1, 1)`` for a
        ``batch_first=False`` sequence model; None marks an unbatched tensor.
    batch_size : ``fn(batch) -> int``, the number of samples, for structures ``batch_dim`` cannot
        describe (the reduction must then be readable or declared when there are several batches).
    engine : ``"auto"`` (verify the cached engines against double backward on the first batch,
        keep the fastest verified one), ``"linearize"``, ``"double_backward"`` or ``"streaming"``,
        optionally suffixed ``"+vmap"`` (columns batched by ``vmap``, the default) or ``"+loop"``
        (one column at a time); the :attr:`engine` of an earlier operator can be passed to skip the
        timing. A requested engine is verified the same way and refused
        (:class:`~hesslens.errors.EngineRefusedError`) where its products disagree.
    max_columns : most columns per batched product (bounds memory); None chooses from the
        measured activation memory. Where ``engine="auto"`` chooses a ``+vmap`` engine it is also
        held to the width that engine was timed at: vmap was not shown to be faster any wider (on
        the benchmark's ResNet-18 it is slower per column at 10 columns than at 2).
    cache_budget : bytes the cached engines may hold; default the memory budget of
        :mod:`hesslens.memory` (``$HESSLENS_MEMORY_BUDGET``, else a quarter of physical memory).
    check_determinism : evaluate the first batch twice and refuse a stochastic loss.
    distributed : None (default): where ``torch.distributed`` is initialised with several ranks, ``data`` is
        this rank's shard of the analysis set and H is the Hessian over every rank's samples (weights
        with the global sample count, products all-reduced; :mod:`hesslens.operators.distributed`);
        every rank must then run the same estimators with the same ``seed=`` on the same model (parameters
        that differ from rank 0's are refused; rank 0's buffers are used, as DistributedDataParallel
        does; a DistributedDataParallel or DataParallel wrapper is analysed as the module it wraps).
        ``False``: this process's data alone. ``True``: require a process group.

    Attributes
    ----------
    engine_report : :class:`~hesslens.operators.choice.EngineReport`, every engine considered, its
        check against double backward, its timing and why it was chosen or refused; from the first
        block product of a :class:`~hesslens.BlockView` on, also the engine of block products
        (``block_engine``, ``block_reason``, ``block_checks``).
    reduction : ``"mean"`` or ``"sum"`` (``"as_given"`` for one batch whose reduction could not be
        probed: its weight is 1 either way); ``reduction_source`` says how it was known.
    expected_matvecs : how many product columns the caller expects to need (default: what the first
        estimator run on the operator announces, else 1000); ``"auto"`` weighs each
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
        reduction: str | None = None,
        batch_dim: BatchDim = 0,
        batch_size: BatchSize | None = None,
        engine: str = "auto",
        max_columns: int | None = None,
        cache_budget: int | None = None,
        check_determinism: bool = True,
        expected_matvecs: int | None = None,
        distributed: bool | None = None,
    ):
        if not isinstance(model, nn.Module):
            raise InvalidInputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            # Its own forward would run collectives (DDP broadcasts rank 0's buffers) inside every loss
            # evaluation, which ranks choosing their engines make in different numbers.
            model = model.module
        if (loss_fn is None) == (batch_loss is None):
            raise InvalidInputError("pass exactly one of loss_fn=(outputs, targets) -> scalar or batch_loss=(model, batch) -> scalar")
        engine_name, _, columns = engine.partition("+")
        if engine != "auto" and (engine_name not in ENGINES or columns not in ("", "vmap", "loop")):
            raise InvalidInputError(f"engine must be 'auto' or one of {sorted(ENGINES)}, optionally with '+vmap' "
                                    f"or '+loop' (e.g. 'linearize+loop'), got {engine!r}")
        self.model, self.mode = model, check_mode(mode)
        self.data_order = "fixed"
        self._collective = group = Collective.resolve(distributed)
        #: (samples, batches) of every rank's shard, in rank order; None in a single process
        self.shards: tuple[tuple[int, int], ...] | None = None
        with self._together():  # an unusable shard on one rank stops every rank, naming it
            self._set_up(loss_fn, data, params, reduction, batch_dim, batch_size, batch_loss)
        if group is not None:  # one model on every rank: rank 0's parameters checked, its buffers taken
            buffers = {n for n, _ in model.named_buffers()}
            snapshot = {**dict(zip(self.param_names, self._primal)), **{k[6:]: v for k, v in self._fixed.items()}}
            group.agree_on_model({k: v for k, v in snapshot.items() if k not in buffers},
                                 {k: v for k, v in snapshot.items() if k in buffers})
        tolerance = agreement_tolerance(self.dtype)
        with preserved_state(model, self.mode):
            with self._together():
                evaluate = self._evaluate
                losses, first_batch = check_losses(evaluate, self.data, self.dtype)
                if check_determinism:
                    self.data_order = loss_checks.check_determinism(
                        evaluate, self.data, losses, first_batch, self.reduction, self.mode, tolerance) or self.data_order
                probed = self._probe_reduction(tolerance) if self.reduction is None else None
            if group is not None:  # the weights use the global sample count
                self.shards, self.data, probed = group.join_shards(self.data, probed)
            if self.reduction is None:
                batches = len(self.data) if self.shards is None else sum(b for _, b in self.shards)
                self.reduction, self.reduction_source = settled_reduction(probed, batches, self.data)
            with self._together():
                self._size_caches(first_batch, max_columns, cache_budget)
        self._block_engine = None
        # engine="auto" is chosen at the first product, for the products the first estimator announces
        # (expect()), unless told now; ranks of a distributed operator choose together, now.
        self._slot = EngineSlot(engine, first_batch, expected_matvecs)
        if engine != "auto" or expected_matvecs is not None or group is not None:
            self._engine  # noqa: B018 - reading it makes the choice now
        weights = self.data.weights(self.reduction)
        self.loss_value = float(self._reduce(torch.tensor([sum(w * l for w, l in zip(weights, losses))],
                                                          dtype=torch.float64)))

    def _set_up(self, loss_fn, data, params, reduction, batch_dim, batch_size, batch_loss) -> None:
        """What the constructor reads from its arguments, before any loss is evaluated."""
        model = self.model
        self.data: AnalysisData = as_analysis_data(data, batch_dim, batch_size)
        self.reduction = declared_reduction(loss_fn, reduction)
        self.reduction_source = "declared" if reduction is not None else ("loss_fn.reduction" if self.reduction else "")
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
        self._wrapper = LossModule(model, loss_fn, batch_loss)
        # A snapshot of every tensor the loss reads: a later in-place update of the model (an optimiser
        # step, BatchNorm statistics) neither leaks into products nor invalidates a kept graph.
        self._primal = tuple(named[n].detach().clone() for n in self.param_names)
        self._fixed = {f"model.{n}": t.detach().clone() for n, t in
                       [*model.named_parameters(), *model.named_buffers()] if n not in self.blocks}
        self.matvecs = 0
        self.product_seconds = 0.0

    def _size_caches(self, first_batch: Any, max_columns: int | None, cache_budget: int | None) -> None:
        """Profile one gradient of the first batch; size the caches and the products' column chunks."""
        self._gradient_profile = profile = self._profile(first_batch)
        per_batch = profile.saved_bytes
        self._budget = budget = memory.budget(cache_budget)
        # A kept double-backward graph holds about three times what one gradient saves (a linearisation more:
        # gradient_profile.LINEARIZE_CACHE_FACTOR).
        self._cache_bytes = 3 * per_batch * len(self.data)
        self.max_columns = max_columns or int(max(1, min(64, budget // max(1, 8 * per_batch))))

    def expect(self, matvecs: int, columns: int | None = None) -> None:
        """Say how many product columns are about to follow, before the first: with ``engine="auto"`` the
        engine is chosen at the first product, weighing each engine's build against that many products
        (a linearisation is not even built where it could not pay off). Estimators announce their own
        work (:func:`hesslens.eigenvalues` one basis, :func:`hesslens.trace` its ``num_matvecs``,
        :func:`hesslens.spectral_density` ``probes × steps``); the first announcement, or
        ``expected_matvecs=`` given to the constructor, counts. ``columns``: the widest product that will
        be asked for, if known (one column: vmap is not tried, the trial multiplies one column)."""
        self._slot.expect(matvecs, columns)

    @property
    def expected_matvecs(self) -> int:
        """Product columns the engine choice plans for (see :meth:`expect`)."""
        return self._slot.expected_matvecs

    def _together(self) -> Any:
        """A step that fails on any rank fails on every rank (:meth:`Collective.together`); as is alone."""
        return self._collective.together() if self._collective is not None else contextlib.nullcontext()

    @property
    def _engine(self) -> Any:
        """The product engine, chosen at the first use (see :meth:`expect`)."""
        return self._engine_for(None)

    def _engine_for(self, first: Any) -> Any:
        """The product engine; if it is still to be chosen, ``first`` (the asking product's columns,
        split per parameter, or None) goes to the choice, which may answer that product on the way."""
        if not self._slot.chosen:
            with preserved_state(self.model, self.mode), torch.enable_grad(), self._together():
                self._slot.choose(self, first)
        return self._slot.engine

    @property
    def engine_report(self) -> Any:
        """:class:`~hesslens.operators.choice.EngineReport` of the engine (chosen now if still pending)."""
        self._engine
        return self._slot.report

    @engine_report.setter
    def engine_report(self, report: Any) -> None:
        self._slot.report = report

    @property
    def setup_seconds(self) -> float:
        """Seconds the engine choice took (its builds and timed trials)."""
        self._engine
        return self._slot.setup_seconds

    @property
    def engine_reason(self) -> str:
        """Why the engine was chosen (and which candidates were refused)."""
        return self.engine_report.reason

    @property
    def engine_timings(self) -> dict[str, float]:
        """Seconds per product column of each verified candidate, and ``build:*`` set-up times."""
        return self.engine_report.timings

    # -- loss evaluation -------------------------------------------------------------------------
    def _loss(self, params: Sequence[torch.Tensor], batch: Any) -> torch.Tensor:
        values = {**self._fixed, **{f"model.{n}": p for n, p in zip(self.param_names, params)}}
        return functional_call(self._wrapper, values, (batch,), strict=False)

    def _evaluate(self, batch: Any) -> torch.Tensor:
        """The loss of one batch at the operator's parameters."""
        return self._loss(self._primal, batch)

    def _probe_reduction(self, tolerance: float) -> str | None:
        return probe_reduction(self._evaluate, self.data, tolerance)

    def _profile(self, batch: Any):
        profile = profile_gradient(self._loss, self._primal, batch)
        if not profile.depends:
            shown = ", ".join(self.param_names[:4]) + (", …" if len(self.param_names) > 4 else "")
            raise InvalidInputError(f"the loss does not depend on any selected parameter ({shown}); "
                                    "check params= (these may be unused by the forward pass)")
        return profile

    # -- products --------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.n)

    @property
    def engine(self) -> str:
        """The product engine in use, e.g. ``"linearize+vmap"``."""
        return self._engine.label

    def _split(self, vt: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(k, n) → one (k, *shape) tangent per parameter: views where ``vt``'s rows are contiguous."""
        k = vt.shape[0]
        return tuple(vt[:, s].reshape(k, *shape) for s, shape in zip(self.blocks.values(), self.param_shapes))

    def _reduce(self, hv: torch.Tensor) -> torch.Tensor:
        """This rank's part summed over the ranks of a distributed operator (Σ_r H_r V); as is otherwise."""
        return hv if self._collective is None else self._collective.sum_(hv.contiguous())

    def _reduce_blocks(self, hvs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """:meth:`_reduce` of several products by one all-reduce."""
        return list(hvs) if self._collective is None else self._collective.sum_many(hvs)

    def _check_product(self, vs: Sequence[torch.Tensor]) -> None:
        """On a distributed operator, refuse columns that differ between ranks (they would be summed)."""
        if self._collective is not None:
            self._collective.check_product(vs)

    def torch_matmat(self, v: torch.Tensor) -> torch.Tensor:
        """H V for an (n, k) tensor, in its dtype (float64, or float32 from a float32 Lanczos basis); the
        product itself runs in the model's dtype: the entry point of the linear-algebra layer.

        The columns are handled as the rows of Vᵀ, (k, n), and H V is returned as the transpose of a
        (k, n) tensor, i.e. column-major, as hesslens's algorithms hold their bases (one row per vector).
        A column-major V costs no copy before the engine (each parameter's tangents are views) and the
        result is written in contiguous runs; a row-major one is transposed once. On ResNet-18 a
        ten-column product spent a fifth of its time in those strided copies."""
        out_dtype = v.dtype
        self._check_product([v])
        vt = v.T.to(self.dtype).to(self.device)
        if not vt.is_contiguous():
            vt = vt.contiguous()
        k = vt.shape[0]
        # Chosen now if still pending (its set-up is not product time). Where the choice's reference run
        # is on these very columns and its engine is kept, that run is this product (made once, not twice).
        engine = self._engine_for(None if self._slot.chosen else self._split(vt))
        answered = self._slot.take_first_products()
        # Each parameter's product goes straight into its part of the result, in the caller's dtype: one
        # pass over n per product instead of a concatenation and a conversion (it shows on large models).
        # Ranks all-reduce in the model's dtype (half the traffic of float64 for a float32 model).
        hvt = torch.empty(k, self.n, dtype=out_dtype if self._collective is None else self.dtype, device=self.device)
        t0 = time.perf_counter()
        with preserved_state(self.model, self.mode), torch.no_grad():
            width = k if answered is not None else engine.columns_per_call(self.max_columns)
            for start in range(0, k, width):
                chunk = vt[start:start + width]
                parts = answered if answered is not None else engine.hvp(self._split(chunk))
                for rows, p in zip(self.blocks.values(), parts):
                    hvt[start:start + chunk.shape[0], rows].copy_(p.reshape(p.shape[0], -1))
        hvt = self._reduce(hvt)
        self.product_seconds += time.perf_counter() - t0
        self.matvecs += k
        # min and max propagate NaN and show ±Inf without an n-long mask (large models: fewer allocations)
        if not all(math.isfinite(float(x)) for x in torch.aminmax(hvt)):
            raise InvalidInputError("a Hessian-vector product is not finite: the loss surface has NaN/Inf curvature here")
        return hvt.to(out_dtype).T

    def block_torch_matmat(self, groups: Sequence[Sequence[int]], vs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """H_ii V_i for groups of parameter tensors: ``groups[i]`` the indices into :attr:`param_names`
        of block i's parameters (ascending), ``vs[i]`` an (m_i, c_i) tensor over their coordinates in
        θ order; float64 in, float64 out. Each block's product is pruned to its
        parameters where the engine can (double backward); see :mod:`hesslens.operators.block_products`.
        Counts Σ c_i in :attr:`matvecs` (one block column is one product)."""
        return block_matmat(self, groups, vs)

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
        return self._reduce(total)

    def __repr__(self) -> str:
        return (f"HessianOperator(n={self.n}, params={len(self.param_names)}, samples={self.data.total}, "
                f"batches={len(self.data)}, mode={self.mode!r}, engine={self.engine!r})")
