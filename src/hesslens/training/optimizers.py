"""Optimisers of the training harness: the torch built-ins by name, SAM/ASAM and AdaHessian.

Names accepted by :func:`build_optimizer` (and ``hl.train(optimizer=...)``):

``"sgd"``        plain SGD, w ← w − η g (no momentum; the Kaur et al. 2023 baseline).
``"momentum"``   heavy-ball SGD, b ← μ b + g, w ← w − η b (``torch.optim.SGD`` with ``momentum=μ``).
``"adam"``, ``"adamw"``, ``"rmsprop"``  the ``torch.optim`` classes with their default betas/alpha/eps.
``"sam"``        :class:`SAM` over SGD (Foret et al. 2021, arXiv 2010.01412); ``adaptive=True`` gives
                 ASAM (Kwon et al. 2021, arXiv 2102.11600).
``"adahessian"`` :class:`AdaHessian` (Yao et al. 2021, arXiv 2006.00719).

Why AdaHessian is written here rather than taken from ``torch-optimizer`` (0.3.0, the package
that carries it): that release dates from October 2021 and is no longer maintained. With torch 2.13
it still imports and steps, but it requires ``loss.backward(create_graph=True)`` (which torch now
warns leaks a parameter↔gradient reference cycle), it calls ``torch.manual_seed`` in its
constructor (re-seeding the caller's global stream), and its Hessian-diagonal routine handles only
0–2-D and 4-D parameters, so a ``Conv1d`` kernel (3-D, as in MNIST-1D nets) fails with an unbound
local variable. The implementation below avoids all three.

Gradient clipping (:func:`clip_gradients`) applies to every optimiser: by value, each entry is
clamped to [−c, c] (``torch.nn.utils.clip_grad_value_``); by norm, the whole gradient is scaled by
min(1, c / (‖g‖₂ + 1e-6)) (``torch.nn.utils.clip_grad_norm_``, the norm taken over all parameters
at once).
"""

from __future__ import annotations

import contextlib
import math
import numbers
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
from torch import nn

from ..errors import InvalidInputError

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw", "rmsprop", "sam", "adahessian")

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
    role). ``weight_decay=None`` means 0, except AdamW's own default 0.01. ``rho`` and
    ``adaptive`` belong to SAM only.
    """
    if not isinstance(name, str) or name not in OPTIMIZERS:
        raise _fail("optimizer", f"unknown optimizer {name!r}; choose from {OPTIMIZERS}")
    if momentum is not None:
        if not _real(momentum) or not 0.0 <= momentum < 1.0:
            raise _fail("momentum", f"must be a number in [0, 1), got {momentum!r}")
        if momentum != 0.0 and name not in _TAKES_MOMENTUM:
            hint = " (plain SGD; use optimizer='momentum')" if name == "sgd" else ""
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
    return AdaHessian(params, lr=lr, weight_decay=wd, seed=seed)


# ------------------------------------------------------------------------------------------------
# Gradient clipping
# ------------------------------------------------------------------------------------------------

def clip_gradients(params: Sequence[torch.Tensor], clip_norm: float | None = None,
                   clip_value: float | None = None) -> float | None:
    """Clip ``p.grad`` in place: first by value (each entry to [−clip_value, clip_value]), then by
    the global 2-norm (g ← g · min(1, clip_norm / (‖g‖₂ + 1e-6)), ``torch.nn.utils.clip_grad_norm_``).

    Returns the total gradient norm before norm clipping (after value clipping), or None when
    ``clip_norm`` is None.
    """
    with_grad = [p for p in params if p.grad is not None]
    if clip_value is not None:
        torch.nn.utils.clip_grad_value_(with_grad, clip_value)
    if clip_norm is not None:
        return float(torch.nn.utils.clip_grad_norm_(with_grad, clip_norm))
    return None


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


# ------------------------------------------------------------------------------------------------
# AdaHessian
# ------------------------------------------------------------------------------------------------

def rademacher_like(p: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A tensor of independent ±1 entries shaped like ``p``, drawn on the CPU from ``generator``
    (so the stream is the same on every device), then moved to ``p``'s device and dtype."""
    z = torch.randint(0, 2, p.shape, generator=generator, dtype=torch.int8)
    return (2 * z - 1).to(device=p.device, dtype=p.dtype)


def spatial_average(d: torch.Tensor) -> torch.Tensor:
    """Average a parameter's diagonal estimate over its kernel dimensions (Yao et al. 2021, eq. 10).

    A tensor with 3 or more dimensions is taken to be a convolution kernel (out, in, *kernel), and
    every entry is replaced by the mean over its kernel window; 0–2-D tensors are returned unchanged.
    """
    if d.dim() < 3:
        return d
    return d.mean(dim=tuple(range(2, d.dim())), keepdim=True).expand_as(d)


def hutchinson_diagonal(grads: Sequence[torch.Tensor], params: Sequence[torch.Tensor], generator: torch.Generator,
                        *, spatial: bool = False, retain_graph: bool = False) -> list[torch.Tensor]:
    """One Hutchinson estimate of diag(H): z ⊙ (H z), z Rademacher (Bekas et al. 2007).

    ``grads`` must be ∇L with respect to ``params`` computed with ``create_graph=True``; H z is
    then one more backward pass, ∇(gᵀz). E[z ⊙ Hz]_i = Σ_j H_ij E[z_i z_j] = H_ii, so the estimate
    is unbiased, with variance Σ_{j≠i} H_ij² per entry. ``spatial=True`` applies
    :func:`spatial_average`. A parameter the gradient does not depend on gets a zero diagonal.
    ``retain_graph=True`` keeps the gradient's graph for further probes.
    """
    zs = [rademacher_like(p, generator) for p in params]
    hzs = torch.autograd.grad(grads, params, grad_outputs=zs, allow_unused=True, retain_graph=retain_graph)
    out = []
    for z, hz, p in zip(zs, hzs, params):
        d = torch.zeros_like(p) if hz is None else (z * hz).detach()
        out.append(spatial_average(d) if spatial else d)
    return out


class AdaHessian(torch.optim.Optimizer):
    """AdaHessian (Yao et al. 2021, arXiv 2006.00719): Adam with the squared gradient replaced by a
    squared Hutchinson estimate of the Hessian diagonal.

    At step t with gradient g_t and diagonal estimate D_t (:func:`hutchinson_diagonal`, one
    Rademacher probe per step from a ``torch.Generator`` seeded with ``seed``, spatially averaged
    over convolution kernels):

        m_t = β₁ m_{t−1} + (1 − β₁) g_t,          v_t = β₂ v_{t−1} + (1 − β₂) D_t ⊙ D_t,
        m̂_t = m_t / (1 − β₁ᵗ),                    v̂_t = v_t / (1 − β₂ᵗ),
        w_t = w_{t−1} − η (m̂_t / ((√v̂_t)^k + ε) + λ w_{t−1}),

    with Hessian power k (``hessian_power``, default 1 as in the paper's experiments) and
    decoupled weight decay λ (as in the authors' code). Defaults follow the paper: η = 0.15,
    β = (0.9, 0.999), ε = 1e-4. The raw estimate z ⊙ Hz is averaged before squaring (eq. 10–11);
    the authors' code averages |z ⊙ Hz| instead, which differs only for convolution kernels.

    The diagonal needs the gradient's graph. Compute it with :meth:`backward`, which replaces
    ``loss.backward()``::

        opt.zero_grad()
        loss = loss_fn(model(x), y)
        opt.backward(loss)     # sets p.grad and the diagonal estimate
        opt.step()

    ``loss.backward(create_graph=True)`` followed by ``step()`` also works (the graph is read
    from ``p.grad``, which is then detached).
    """

    def __init__(self, params: Iterable[Any], lr: float = 0.15, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-4, weight_decay: float = 0.0, hessian_power: float = 1.0,
                 spatial_averaging: bool = True, seed: int = 0):
        if not lr > 0:
            raise InvalidInputError(f"lr: must be > 0, got {lr!r}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise InvalidInputError(f"betas: must lie in [0, 1), got {betas!r}")
        if not eps >= 0:
            raise InvalidInputError(f"eps: must be >= 0, got {eps!r}")
        if not 0.0 <= hessian_power <= 1.0:
            raise InvalidInputError(f"hessian_power: must lie in [0, 1], got {hessian_power!r}")
        if not weight_decay >= 0:
            raise InvalidInputError(f"weight_decay: must be >= 0, got {weight_decay!r}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      hessian_power=hessian_power, spatial_averaging=spatial_averaging))
        self.generator = torch.Generator().manual_seed(seed)

    def _params(self) -> list[torch.Tensor]:
        return [p for g in self.param_groups for p in g["params"] if p.requires_grad]

    def _spatial(self) -> dict[torch.Tensor, bool]:
        return {p: g["spatial_averaging"] for g in self.param_groups for p in g["params"]}

    def _store(self, params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None]) -> None:
        used = [(p, g) for p, g in zip(params, grads) if g is not None and g.requires_grad]
        spatial = self._spatial()
        if used:
            ps, gs = zip(*used)
            diags = hutchinson_diagonal(gs, ps, self.generator, spatial=False)
            for p, d in zip(ps, diags):
                self.state[p]["hessian_diag"] = spatial_average(d) if spatial[p] else d
        for p, g in zip(params, grads):
            if g is not None and not g.requires_grad:
                # The gradient does not depend on the parameters: that block of H is zero.
                self.state[p]["hessian_diag"] = torch.zeros_like(p)

    def backward(self, loss: torch.Tensor) -> None:
        """∇loss into ``p.grad`` (accumulated, like ``loss.backward()``) plus a fresh diagonal estimate."""
        params = self._params()
        grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        self._store(params, grads)
        with torch.no_grad():
            for p, g in zip(params, grads):
                if g is None:
                    continue
                if p.grad is None:
                    p.grad = g.detach().clone()
                else:
                    p.grad.add_(g.detach())

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        params = [p for p in self._params() if p.grad is not None]
        pending = [p for p in params if "hessian_diag" not in self.state[p]]
        if pending:
            if any(p.grad.grad_fn is None for p in pending):
                raise InvalidInputError("AdaHessian needs the gradient's graph: call optimizer.backward(loss) "
                                        "(or loss.backward(create_graph=True)) before step()")
            with torch.enable_grad():
                self._store(pending, [p.grad for p in pending])
            for p in pending:
                p.grad = p.grad.detach()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                d = state.pop("hessian_diag")
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_hessian_diag_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                m, v = state["exp_avg"], state["exp_hessian_diag_sq"]
                m.mul_(beta1).add_(p.grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(d, d, value=1 - beta2)
                denom = (v / (1 - beta2 ** t)).sqrt().pow(group["hessian_power"]).add_(group["eps"])
                update = (m / (1 - beta1 ** t)) / denom
                if group["weight_decay"]:
                    update = update.add(p, alpha=group["weight_decay"])
                p.sub_(update, alpha=group["lr"])
        return loss
