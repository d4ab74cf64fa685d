"""Optimisers of the training harness: the torch built-ins by name, SAM/ASAM, sign-SGD and AdaHessian.

Names accepted by :func:`build_optimizer` (and ``hl.train(optimizer=...)``):

``"sgd"``        plain SGD, w ← w − η g (no momentum; the Kaur et al. 2023 baseline).
``"momentum"``   heavy-ball SGD, b ← μ b + g, w ← w − η b (``torch.optim.SGD`` with ``momentum=μ``).
``"adam"``, ``"adamw"``, ``"rmsprop"``  the ``torch.optim`` classes with their default betas/alpha/eps.
``"sam"``        :class:`SAM` over SGD (Foret et al. 2021, arXiv 2010.01412); ``adaptive=True`` gives
                 ASAM (Kwon et al. 2021, arXiv 2102.11600).
``"adahessian"`` :class:`AdaHessian` (Yao et al. 2021, arXiv 2006.00719; in :mod:`.adahessian`,
                 re-exported here with its Hutchinson helpers).
``"signsgd"``    :class:`SignSGD`, w ← w − η sign(g) (Bernstein et al. 2018, arXiv 1802.04434; no momentum).

Gradient clipping (:func:`clip_gradients`) and gradient noise apply to every optimiser; they live in
:mod:`hesslens.training.manipulations` (``clip_gradients`` is re-exported here): by value, each
entry is clamped to [−c, c] (``torch.nn.utils.clip_grad_value_``); by norm, the whole gradient is
scaled by min(1, c / (‖g‖₂ + 1e-6)) (``torch.nn.utils.clip_grad_norm_``, the norm taken over all
parameters at once).
"""

from __future__ import annotations

import contextlib
import math
import numbers
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn

from ..errors import InvalidInputError
from .adahessian import AdaHessian, hutchinson_diagonal, rademacher_like, spatial_average  # noqa: F401
from .manipulations import clip_gradients  # noqa: F401 - re-exported: its historical home

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw", "rmsprop", "sam", "adahessian", "signsgd")

#: SAM's perturbation radius when none is given (Foret et al. 2021; Kaur et al. 2023 use it too).
DEFAULT_RHO = 0.05
#: Heavy-ball coefficient of ``"momentum"`` when none is given (the customary value).
DEFAULT_MOMENTUM = 0.9
#: ``torch.optim.AdamW``'s own default decoupled weight decay.
DEFAULT_ADAMW_WEIGHT_DECAY = 0.01

# Which optimisers take a momentum coefficient; the others refuse one rather than ignore it.
_TAKES_MOMENTUM = ("momentum", "rmsprop", "sam")


def _fail(field: str, message: str) -> InvalidInputError:
    return InvalidInputError(f"{field}: {message}")


def _real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def resolve_options(name: Any, *, momentum: float | None = None, weight_decay: float | None = None,
                    rho: float | None = None, adaptive: bool = False) -> dict[str, Any]:
    """Validate an optimiser configuration and fill in defaults, naming the first bad field.

    ``momentum=None`` means the optimiser's default (0.9 for ``"momentum"``, 0 for ``"rmsprop"``
    and ``"sam"``'s SGD base); ``"sgd"`` is plain SGD and refuses a non-zero momentum (use
    ``"momentum"``); Adam, AdamW and AdaHessian take no momentum coefficient (their β₁ plays that
    role), nor does sign-SGD (``"signsgd"``). ``weight_decay=None`` means 0, except AdamW's own
    default 0.01. ``rho`` and ``adaptive`` belong to SAM only.
    """
    if not isinstance(name, str) or name not in OPTIMIZERS:
        raise _fail("optimizer", f"unknown optimizer {name!r}; choose from {OPTIMIZERS}")
    if momentum is not None:
        if not _real(momentum) or not 0.0 <= momentum < 1.0:
            raise _fail("momentum", f"must be a number in [0, 1), got {momentum!r}")
        if momentum != 0.0 and name not in _TAKES_MOMENTUM:
            hint = {"sgd": " (plain SGD; use optimizer='momentum')",
                    "signsgd": " (sign-SGD has none; Signum is not implemented)"}.get(name, "")
            raise _fail("momentum", f"optimizer {name!r} takes no momentum coefficient{hint}, got {momentum!r}")
    else:
        momentum = DEFAULT_MOMENTUM if name == "momentum" else 0.0
    if weight_decay is not None:
        if not _real(weight_decay) or not math.isfinite(weight_decay) or weight_decay < 0:
            raise _fail("weight_decay", f"must be a finite number >= 0, got {weight_decay!r}")
    else:
        weight_decay = DEFAULT_ADAMW_WEIGHT_DECAY if name == "adamw" else 0.0
    if rho is not None:
        if name != "sam":
            raise _fail("rho", f"applies only to optimizer='sam', got rho={rho!r} with {name!r}")
        if not _real(rho) or not math.isfinite(rho) or rho < 0:
            raise _fail("rho", f"must be a finite number >= 0, got {rho!r}")
    else:
        rho = DEFAULT_RHO
    if not isinstance(adaptive, bool):
        raise _fail("adaptive", f"must be True or False, got {adaptive!r}")
    if adaptive and name != "sam":
        raise _fail("adaptive", f"applies only to optimizer='sam' (ASAM), got {name!r}")
    return {"momentum": float(momentum), "weight_decay": float(weight_decay), "rho": float(rho), "adaptive": adaptive}


def build_optimizer(name: str, params: Iterable[torch.Tensor] | Iterable[dict], *, lr: float,
                    momentum: float | None = None, weight_decay: float | None = None, rho: float | None = None,
                    adaptive: bool = False, seed: int = 0) -> torch.optim.Optimizer:
    """A ``torch.optim.Optimizer`` for one of :data:`OPTIMIZERS` (options as in :func:`resolve_options`).

    ``seed`` seeds AdaHessian's Rademacher probes; the other optimisers draw no random numbers.
    """
    if not _real(lr) or not math.isfinite(lr) or lr <= 0:
        raise _fail("lr", f"must be a finite number > 0, got {lr!r}")
    o = resolve_options(name, momentum=momentum, weight_decay=weight_decay, rho=rho, adaptive=adaptive)
    lr, mu, wd = float(lr), o["momentum"], o["weight_decay"]
    if name in ("sgd", "momentum"):
        return torch.optim.SGD(params, lr=lr, momentum=mu, weight_decay=wd)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=mu, weight_decay=wd)
    if name == "sam":
        return SAM(params, torch.optim.SGD, rho=o["rho"], adaptive=o["adaptive"], lr=lr, momentum=mu, weight_decay=wd)
    if name == "signsgd":
        return SignSGD(params, lr=lr, weight_decay=wd)
    return AdaHessian(params, lr=lr, weight_decay=wd, seed=seed)


# ------------------------------------------------------------------------------------------------
# Sign-SGD
# ------------------------------------------------------------------------------------------------

class SignSGD(torch.optim.Optimizer):
    """Sign-SGD (Bernstein et al. 2018, "signSGD: compressed optimisation for non-convex problems",
    arXiv 1802.04434): every entry moves by the learning rate in the direction of its gradient's sign,

        d = g + λ w   (L2 weight decay λ, as in ``torch.optim.SGD``; d = g when λ = 0),
        w ← w − η · sign(d),

    with sign(0) = 0. No momentum (the paper's Signum variant is not implemented). The step
    depends on the gradient only through its signs, so both kinds of gradient clipping (a positive
    rescaling, and clamping to [−c, c]) leave it unchanged — up to entries so small that clipping
    by norm underflows them to 0 — whereas gradient noise (``hl.train(grad_noise=)``) changes it.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, weight_decay: float = 0.0):
        if not _real(lr) or not math.isfinite(lr) or lr <= 0:
            raise _fail("lr", f"must be a finite number > 0, got {lr!r}")
        if not _real(weight_decay) or not math.isfinite(weight_decay) or weight_decay < 0:
            raise _fail("weight_decay", f"must be a finite number >= 0, got {weight_decay!r}")
        super().__init__(params, dict(lr=float(lr), weight_decay=float(weight_decay)))

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad if not group["weight_decay"] else p.grad.add(p, alpha=group["weight_decay"])
                p.sub_(d.sign().mul_(group["lr"]))
        return loss


# ------------------------------------------------------------------------------------------------
# SAM / ASAM
# ------------------------------------------------------------------------------------------------

class SAM(torch.optim.Optimizer):
    """Sharpness-aware minimisation (Foret et al. 2021) and its adaptive variant ASAM (Kwon et al. 2021).

    One SAM step from weights w with mini-batch loss L:

    1. g = ∇L(w)  (the caller's ``loss.backward()``);
    2. :meth:`first_step`: ε = ρ · T² g / (‖T g‖₂ + 1e-12), w ← w + ε, where T = I for SAM and
       T = diag(|w|) for ASAM (``adaptive=True``); the norm is taken over all parameters at once;
    3. g' = ∇L(w + ε)  (a second forward/backward on the *same* batch);
    4. :meth:`second_step`: w is restored exactly (a saved copy, not w + ε − ε, which can differ in
       the last bit) and the base optimiser steps from w with g'.

    With ``base_optimizer=torch.optim.SGD`` and no momentum this is the update of Kaur et al. 2023:
    w ← w − η ∇L(w + ρ g/(‖g‖ + 1e-12)). ``base_kwargs`` (lr, momentum, weight_decay, ...) go to
    the base optimiser, which shares this optimiser's ``param_groups``, so changing a group's
    ``lr`` here changes the base step. ASAM's ρ is relative to |w|, so values tuned for SAM do not
    transfer.

    BatchNorm: the perturbed pass of step 3 must not update running statistics (they would then
    have been updated twice per step, once at weights that are never kept). Run it inside
    :func:`frozen_buffers`, as ``hl.train`` does.

    Use either the two half-steps::

        loss_fn(model(x), y).backward()
        sam.first_step(); sam.zero_grad()
        with frozen_buffers(model):
            loss_fn(model(x), y).backward()
        sam.second_step(); sam.zero_grad()

    or ``sam.step(closure)`` after the first backward, with a closure that recomputes the loss
    and calls ``backward()`` (gradients are zeroed before it runs).
    """

    def __init__(self, params: Iterable[Any], base_optimizer: Callable[..., torch.optim.Optimizer] = torch.optim.SGD,
                 *, rho: float = DEFAULT_RHO, adaptive: bool = False, **base_kwargs: Any):
        if not math.isfinite(rho) or rho < 0:
            raise InvalidInputError(f"rho: must be a finite number >= 0, got {rho!r}")
        super().__init__(params, dict(rho=rho, adaptive=adaptive, **base_kwargs))
        self.base_optimizer = base_optimizer(self.param_groups, **base_kwargs)
        # One list of groups for both: lr or rho changed on either is seen by both.
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> float:
        """Move to w + ε (see the class docstring); returns ‖T g‖₂."""
        scaled_sq = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    tg = p.grad * p.abs() if group["adaptive"] else p.grad
                    scaled_sq.append(tg.double().pow(2).sum())
        norm = float(torch.stack(scaled_sq).sum().sqrt()) if scaled_sq else 0.0
        for group in self.param_groups:
            scale = group["rho"] / (norm + 1e-12)
            for p in group["params"]:
                if p.grad is None:
                    continue
                e = p.grad * scale
                if group["adaptive"]:
                    e = e * p.pow(2)
                self.state[p]["w"] = p.detach().clone()
                p.add_(e)
        if zero_grad:
            self.zero_grad()
        return norm

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Restore w and let the base optimiser step with the gradient found at w + ε."""
        for group in self.param_groups:
            for p in group["params"]:
                saved = self.state[p].pop("w", None)
                if saved is not None:
                    p.copy_(saved)
        self.base_optimizer.step()
        if zero_grad:
            self.zero_grad()

    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        if closure is None:
            raise InvalidInputError("SAM.step needs a closure that recomputes the loss and calls backward() "
                                    "(or call first_step() / second_step() yourself)")
        self.first_step(zero_grad=True)
        with torch.enable_grad():
            loss = closure()
        self.second_step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        # SAM's own state (the saved w) lives only between the two half-steps.
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups = self.base_optimizer.param_groups


@contextlib.contextmanager
def frozen_buffers(model: nn.Module) -> Iterator[nn.Module]:
    """Run a block, then put every buffer of ``model`` back as it was (BatchNorm running mean,
    variance and ``num_batches_tracked`` included).

    Restoring (rather than setting BatchNorm's momentum to 0) also covers ``momentum=None``
    (cumulative averages, where ``num_batches_tracked`` would still advance) and any other
    module that updates buffers during a forward pass.
    """
    saved = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        yield model
    finally:
        with torch.no_grad():
            for b, copy in saved:
                b.copy_(copy)
