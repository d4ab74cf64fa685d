"""Sharpness λ_max measured the way Kaur, Cohen & Lipton (2023) measured it.

Kaur, Cohen & Lipton, "On the maximum Hessian eigenvalue and generalization" (arXiv 2206.10654),
define the sharpness of trained weights w as the largest eigenvalue λ_max of the Hessian of

    L(w) = (1/|S|) Σ_{i∈S} ℓ(f_w(x_i), y_i),

S a *fixed* analysis set. Their public code fixes the details that matter; protocol
``"kaur2023"`` reproduces them:

* **Analysis set.** 1,000 evenly spaced training examples, indices round(linspace(0, N−1, 1000))
  (all N when N ≤ 1,000) — the same indices as :func:`hesslens.training.evenly_spaced`.
* **Eigensolver.** Lanczos for the top k = 6 eigenvalues; λ_max is the largest. hesslens uses its
  own thick-restarted Lanczos (:func:`hesslens.eigenvalues`, ``which="largest"``, i.e. most
  *positive*), where the authors call ARPACK's ``eigsh`` with ``which="LM"`` (largest magnitude);
  the two agree whenever the top eigenvalue is not exceeded in magnitude by a negative one, which
  is the case for trained networks (λ_max ≫ |λ_min|).
* **BatchNorm nets** are measured in *train* mode: every BatchNorm layer normalises with the
  statistics of its physical batch, so the loss (and its Hessian) depends on how the analysis set
  is split. The split is into consecutive batches of min(batch size, 1000) samples (the last one
  smaller when the size does not divide the set), and the Hessian is that of the mean loss,
  Σ_b (n_b/N)·L_b (:class:`hesslens.HessianOperator` weights each batch by n_b/N). Running
  statistics are never updated. ``batch_size=None`` (full-batch training) means one batch of the
  whole analysis set.
* **Dropout nets** are measured in *eval* mode (dropout off), so the loss is deterministic.
  A net with both keeps BatchNorm in train mode and dropout off.
* **Interpolation** (optional, ``interpolate=True``; the authors use it for BatchNorm nets trained
  with small learning rates, whose λ_max can be atypically low right at the final weights): take
  one more SGD step Δw = −η ∇L_B(w) and report max_t λ_max(w + t·Δw) over 8 evenly spaced
  t ∈ [0, 1] (t = 0, 1/7, …, 1; t = 0 is the final weights themselves). Which batch B the extra
  step uses is not stated in the paper; hesslens uses the *first* min(batch size, N) training
  examples in their stored order (the whole training set when ``batch_size=None``), with the
  network in the measurement's mode (BatchNorm with B's batch statistics, dropout off), so the
  step is deterministic.

Protocol ``"full"`` is hesslens's plain alternative: the Hessian of the mean loss over *all*
training examples, every layer in eval mode (BatchNorm with running statistics, dropout off),
evaluated in chunks of 1,000 (in eval mode the chunking does not change the Hessian).

The model is never modified: the operator snapshots and restores parameters, buffers, mode flags,
gradients and the global random stream, and interpolated weights live on a copy.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..errors import InvalidInputError
from ..linalg import eigenvalues
from ..operators import HessianOperator, preserved_state

PROTOCOLS = ("kaur2023", "full")
#: Size of the analysis set of protocol "kaur2023".
ANALYSIS_SAMPLES = 1000
#: Largest physical batch (BatchNorm in train mode) and the chunk size of eval-mode measurements.
MAX_PHYSICAL_BATCH = 1000
#: Number of points t ∈ [0, 1] of the interpolation between the final weights and one more SGD step.
INTERPOLATION_POINTS = 8


@dataclass(frozen=True)
class SharpnessResult:
    """λ_max and how it was measured.

    Attributes:
        lambda_max: the largest Hessian eigenvalue (with ``interpolate=True``, the maximum over the
            interpolation points).
        residual: ‖H y − λ_max y‖ of its Ritz pair (at the point that attained the maximum).
        values: the top-k Ritz values, descending (at that point).
        residuals: their residual norms.
        matvecs: Hessian-vector products used in total (all interpolation points).
        seconds: wall time of the whole measurement, operator set-up included.
        settings: what was done: ``protocol``, ``mode`` (``"train"``, ``"eval"`` or
            ``"train+eval-dropout"``), ``batchnorm``, ``dropout``, ``samples``, ``physical_batch``,
            ``num_batches``, ``k``, ``tol``, ``seed``, ``engine``, ``interpolate`` and, when
            interpolating, ``lr``, ``step_batch`` (samples in the extra SGD step) and ``t``.
        interpolation: λ_max at each t of ``settings["t"]`` (empty without interpolation).
    """

    lambda_max: float
    residual: float
    values: tuple[float, ...]
    residuals: tuple[float, ...]
    matvecs: int
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)
    interpolation: tuple[float, ...] = ()

    @property
    def top_k(self) -> tuple[float, ...]:
        """Alias of :attr:`values`."""
        return self.values

    @property
    def endpoint(self) -> float:
        """λ_max at the final weights themselves (t = 0)."""
        return self.interpolation[0] if self.interpolation else self.lambda_max


def evenly_spaced_indices(n_total: int, n: int = ANALYSIS_SAMPLES) -> torch.Tensor:
    """round(linspace(0, n_total − 1, n)) as int64 indices, or all of ``range(n_total)`` when n_total ≤ n."""
    if n_total <= n:
        return torch.arange(n_total)
    return torch.linspace(0, n_total - 1, n).round().long()


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def has_dropout(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules())


def _training_pair(dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if hasattr(dataset, "x_train") and hasattr(dataset, "y_train"):
        x, y = dataset.x_train, dataset.y_train
    elif isinstance(dataset, (tuple, list)) and len(dataset) == 2:
        x, y = dataset
    else:
        raise InvalidInputError("dataset must have x_train and y_train (a hesslens Dataset) or be an (inputs, "
                                f"targets) pair, got {type(dataset).__name__}")
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    if x.ndim == 0 or y.ndim == 0 or len(x) != len(y) or len(x) == 0:
        raise InvalidInputError(f"training inputs {tuple(x.shape)} and targets {tuple(y.shape)} need the same, "
                                "non-zero first dimension")
    return x, y


def split_batches(x: torch.Tensor, y: torch.Tensor, size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(x, y)`` as consecutive batches of ``size`` examples (the last one shorter), in stored order."""
    return [(x[i:i + size], y[i:i + size]) for i in range(0, len(x), size)]


def _set_protocol_mode(model: nn.Module, batchnorm_train: bool) -> None:
    """Everything in eval mode (dropout off), then BatchNorm layers back in train mode if asked."""
    model.eval()
    if batchnorm_train:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.train()


def sharpness(model: nn.Module, loss_fn: Callable[[Any, Any], torch.Tensor], dataset: Any,
              protocol: str = "kaur2023", *, batch_size: int | None = None, interpolate: bool = False,
              lr: float | None = None, k: int = 6, tol: float = 1e-6, seed: int = 0,
              samples: int = ANALYSIS_SAMPLES, engine: str = "auto") -> SharpnessResult:
    """λ_max of the training-loss Hessian by the protocol of Kaur et al. 2023 (see the module docstring).

    Args:
        model: the trained network (left untouched).
        loss_fn: ``(outputs, targets) -> mean loss``, e.g. ``torch.nn.functional.cross_entropy``.
        dataset: a :class:`hesslens.datasets.Dataset` (its training split is used) or an
            ``(x_train, y_train)`` pair.
        protocol: ``"kaur2023"`` or ``"full"``.
        batch_size: the training batch size (None = full batch); sets the physical batches of a
            BatchNorm net and the batch of the interpolation step.
        interpolate: also evaluate 8 points between the weights and one more SGD step; needs ``lr``.
        lr: the training learning rate η (for the interpolation step).
        k: Lanczos computes the top ``k`` eigenvalues (6 in the paper).
        tol: relative residual tolerance of :func:`hesslens.eigenvalues`.
        seed: seed of the Lanczos start block.
        samples: size of the evenly spaced analysis set of ``"kaur2023"`` (1,000 in the paper).
        engine: Hessian-vector-product engine of :class:`hesslens.HessianOperator`.

    Raises:
        InvalidInputError: unknown protocol, bad batch size / lr / k, ``interpolate`` without ``lr``.
    """
    t0 = time.perf_counter()
    if protocol not in PROTOCOLS:
        raise InvalidInputError(f"unknown sharpness protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if not isinstance(model, nn.Module):
        raise InvalidInputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                                   or batch_size < 1):
        raise InvalidInputError(f"batch_size must be a positive integer or None (full batch), got {batch_size!r}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidInputError(f"k must be a positive integer, got {k!r}")
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise InvalidInputError(f"samples must be a positive integer, got {samples!r}")
    if interpolate:
        if lr is None or isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
            raise InvalidInputError(f"interpolate=True needs the training learning rate lr > 0, got {lr!r}")
    x, y = _training_pair(dataset)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise InvalidInputError("the model has no trainable parameters")
    device, dtype = params[0].device, params[0].dtype
    x = x.to(device=device, dtype=dtype) if x.is_floating_point() else x.to(device)
    y = y.to(device=device, dtype=dtype) if y.is_floating_point() else y.to(device)

    bn, dropout = has_batchnorm(model), has_dropout(model)
    if protocol == "kaur2023":
        idx = evenly_spaced_indices(len(x), int(samples)).to(x.device)
        xs, ys = x[idx], y[idx]
        bn_train = bn
        if bn_train:
            physical = min(int(batch_size) if batch_size is not None else len(xs), MAX_PHYSICAL_BATCH, len(xs))
        else:
            physical = min(len(xs), MAX_PHYSICAL_BATCH)
    else:
        xs, ys, bn_train = x, y, False
        physical = min(len(xs), MAX_PHYSICAL_BATCH)
    batches = split_batches(xs, ys, physical)
    mode = "train" if bn_train and not dropout else ("train+eval-dropout" if bn_train else "eval")
    settings: dict[str, Any] = {
        "protocol": protocol, "mode": mode, "batchnorm": bn, "dropout": dropout, "samples": len(xs),
        "physical_batch": physical, "num_batches": len(batches), "k": int(k), "tol": float(tol), "seed": int(seed),
        "which": "largest", "interpolate": bool(interpolate),
    }

    def measure(net: nn.Module, engine_name: str) -> tuple[Any, str]:
        # The protocol's flags are set inside a guard, the operator keeps them ("as_is") for every
        # product, and the guard restores the caller's flags (and everything else) afterwards.
        with preserved_state(net, "as_is"):
            _set_protocol_mode(net, bn_train)
            op = HessianOperator(net, loss_fn, batches, mode="as_is", engine=engine_name,
                                 expected_matvecs=20 * int(k))
            result = eigenvalues(op, k=int(k), which="largest", tol=tol, seed=seed)
        return result, op.engine

    first, engine_used = measure(model, engine)
    settings["engine"] = engine_used
    results = [first]
    if interpolate:
        step_n = len(x) if batch_size is None else min(int(batch_size), len(x))
        ts = np.linspace(0.0, 1.0, INTERPOLATION_POINTS)
        settings.update(lr=float(lr), step_batch=step_n, t=tuple(float(t) for t in ts))
        delta = _sgd_step(model, loss_fn, x[:step_n], y[:step_n], float(lr), bn_train)
        twin = copy.deepcopy(model)
        start = [p.detach().clone() for p in model.parameters()]
        for t in ts[1:]:
            with torch.no_grad():
                for p, w, d in zip(twin.parameters(), start, delta):
                    if d is not None:
                        p.copy_(w + float(t) * d)
            results.append(measure(twin, engine_used)[0])
    lams = [float(r.values[0]) for r in results]
    best = int(np.argmax(lams))
    top = results[best]
    return SharpnessResult(
        lambda_max=lams[best], residual=float(top.residuals[0]),
        values=tuple(float(v) for v in top.values), residuals=tuple(float(r) for r in top.residuals),
        matvecs=int(sum(r.matvecs for r in results)), seconds=time.perf_counter() - t0, settings=settings,
        interpolation=tuple(lams) if interpolate else ())


def _sgd_step(model: nn.Module, loss_fn: Callable, xb: torch.Tensor, yb: torch.Tensor, lr: float,
              bn_train: bool) -> list[torch.Tensor | None]:
    """Δw = −lr · ∇_w loss_fn(model(xb), yb) for every parameter (None for frozen ones), model untouched."""
    trainable = [p for p in model.parameters()]
    wanted = [p for p in trainable if p.requires_grad]
    with preserved_state(model, "as_is"):  # restores flags, buffers, .grad and the random stream
        _set_protocol_mode(model, bn_train)
        with torch.enable_grad():
            out = model(xb)
            out = out if isinstance(out, torch.Tensor) else out.logits
            grads = torch.autograd.grad(loss_fn(out, yb), wanted, allow_unused=True)
    by_id = {id(p): (-lr * g if g is not None else torch.zeros_like(p)) for p, g in zip(wanted, grads)}
    return [by_id.get(id(p)) for p in trainable]
