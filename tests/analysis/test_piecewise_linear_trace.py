"""Why a ReLU network without BatchNorm never has an MN spectrum by hesslens's criterion.

H = Gᵀ-part + residual part: H = Σ_i J_iᵀ A_i J_i + Σ_i Σ_k r_ik ∇²_θ f_ik, with f_i the logits of sample i,
J_i = ∂f_i/∂θ, A_i = ∂²ℓ/∂f² (softmax covariance, PSD) and r_i = ∂ℓ/∂f. A network that is piecewise
linear in *each layer's* parameters (ReLU, max-pooling, average pooling, linear layers) has ∇²_θ f_ik with
zero diagonal blocks almost everywhere, so tr(∇²_θ f_ik) = 0 and tr H = tr G ≥ 0: the spectral-mass balance
C = tr H / tr |H| ≥ 0. The identity is checked against dense float64 Hessians (double backward) and the
Gauss–Newton matrix from Jacobians; a tanh net, where it fails, is the control.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call, jacrev

import hesslens as hl
from hesslens.models import mlp, vgg1d


def _traces(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float, np.ndarray]:
    """(tr H, tr G, eigenvalues of H) of the mean cross-entropy, all in float64."""
    model = model.double()
    x = x.double()
    op = hl.HessianOperator(model, nn.CrossEntropyLoss(), (x, y), engine="double_backward+loop")
    spectrum = hl.exact_spectrum(op)
    names = [n for n, _ in model.named_parameters()]
    params = {n: p.detach() for n, p in model.named_parameters()}

    def logits(flat: dict) -> torch.Tensor:
        return functional_call(model, flat, (x,))

    jac = jacrev(logits)(params)  # name → (N, C, *shape)
    J = torch.cat([jac[n].reshape(len(x), -1, params[n].numel()) for n in names], dim=2)  # (N, C, P)
    p = torch.softmax(logits(params), dim=1)
    A = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]  # (N, C, C), the Hessian of ℓ in the logits
    tr_g = float(torch.einsum("ncp,ncd,ndp->", J, A, J) / len(x))
    return float(spectrum.sum()), tr_g, spectrum


@pytest.mark.parametrize("build", [
    lambda: mlp(6, (7, 5), 3, seed=1),
    lambda: vgg1d(1, 3, channels=(2, 3), seed=2),  # conv, ReLU, max-pooling, global average pooling
], ids=["relu-mlp", "relu-cnn"])
def test_relu_nets_have_trace_equal_to_gauss_newton_trace(build):
    g = torch.Generator().manual_seed(0)
    model = build()
    x = torch.randn(40, 6, generator=g) if isinstance(model[1], nn.Linear) else torch.randn(40, 1, 8, generator=g)
    y = torch.randint(0, 3, (40,), generator=g)
    tr_h, tr_g, spectrum = _traces(model, x, y)
    assert (spectrum < -1e-8).any()  # there is negative curvature …
    assert tr_h == pytest.approx(tr_g, rel=1e-9, abs=1e-12)  # … but the trace is the PSD part's
    balance = hl.hesd_type(hl.SpectralDensity.from_spectrum(spectrum)).balance
    assert balance > 0


def test_a_tanh_net_breaks_the_identity():
    g = torch.Generator().manual_seed(0)
    model = mlp(6, (7, 5), 3, activation="tanh", seed=1)
    x, y = torch.randn(40, 6, generator=g), torch.randint(0, 3, (40,), generator=g)
    tr_h, tr_g, _ = _traces(model, x, y)
    assert abs(tr_h - tr_g) > 1e-3 * abs(tr_g)
