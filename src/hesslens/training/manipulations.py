"""Gradient manipulations applied between the backward pass and the optimiser step: clipping and noise.

``hl.train`` applies them in this order to the gradient g that the step uses (for SAM the gradient
at the perturbed point w + ε; for AdaHessian the gradient entering its first moment — its
Hessian-diagonal estimate comes from the unmanipulated graph):

1. :func:`clip_gradients` — by value, each entry clamped to [−c_v, c_v]
   (``torch.nn.utils.clip_grad_value_``), then by the global 2-norm,
   g ← g · min(1, c_n / (‖g‖₂ + 1e-6)) (``torch.nn.utils.clip_grad_norm_``, one norm over all
   parameters at once);
2. :func:`add_gradient_noise` — g ← g + σ ξ with ξ ~ N(0, I) drawn afresh at every step.

Gradient noise follows Neelakantan et al. (2015), "Adding gradient noise improves learning for very
deep networks" (arXiv 1511.06807), with one difference: they anneal the variance,
σ_t² = η / (1 + t)^γ, while here σ is constant over the run. Sign-SGD (Bernstein et al. 2018) is an
optimiser, ``"signsgd"`` (:class:`~hesslens.training.optimizers.SignSGD`), since it replaces the
update rule rather than the gradient.
"""

from __future__ import annotations

from typing import Sequence

import torch


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


@torch.no_grad()
def add_gradient_noise(params: Sequence[torch.Tensor], sigma: float, generator: torch.Generator) -> None:
    """Add independent Gaussian noise of standard deviation ``sigma`` to every gradient entry, in place.

    For each parameter p of ``params`` whose ``p.grad`` is not None, in order:
    ξ = ``torch.randn(p.grad.shape, generator=generator, dtype=p.grad.dtype)`` (drawn on the CPU, so
    the stream is the same on every device, then moved to the gradient's device) and
    g ← g + (σ · ξ), the product rounded first. A fixed constant σ (Neelakantan et al. 2015,
    arXiv 1511.06807, anneal it instead). ``sigma == 0`` draws nothing and changes nothing.
    """
    if not sigma:
        return
    for p in params:
        if p.grad is None:
            continue
        xi = torch.randn(p.grad.shape, generator=generator, dtype=p.grad.dtype)
        p.grad.add_(xi.mul_(sigma).to(p.grad.device))
