"""AdaHessian (Yao et al. 2021, arXiv 2006.00719) and the Hutchinson diagonal estimate it steps with.

Why AdaHessian is written here rather than taken from ``torch-optimizer`` (0.3.0, the package
that carries it): that release dates from October 2021 and is no longer maintained. With torch 2.13
it still imports and steps, but it requires ``loss.backward(create_graph=True)`` (which torch now
warns leaks a parameter↔gradient reference cycle), it calls ``torch.manual_seed`` in its
constructor (re-seeding the caller's global stream), and its Hessian-diagonal routine handles only
0–2-D and 4-D parameters, so a ``Conv1d`` kernel (3-D, as in MNIST-1D nets) fails with an unbound
local variable. The implementation below avoids all three.

Used by name as ``hl.train(optimizer="adahessian")`` / ``build_optimizer("adahessian", ...)``
(:mod:`hesslens.training.optimizers`, which re-exports this module's names).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import torch

from ..errors import InvalidInputError


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
