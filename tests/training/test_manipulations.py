"""External gradient manipulations of hl.train: sign-SGD and gradient noise, against hand-written updates."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from _training_cases import ToyData, blobs, flat_params, mlp, set_flat_params
from conftest import reference_gradient
from hesslens.errors import InvalidInputError
from hesslens.training import build_optimizer, train
from hesslens.training.loop import STREAMS, _derived_seed
from hesslens.training.manipulations import add_gradient_noise
from hesslens.training.optimizers import SignSGD

DT = torch.float64


def _objective(data: ToyData):
    return lambda call: nn.functional.cross_entropy(call(data.x_train), data.y_train)


def _gradient_at(model: nn.Module, theta: torch.Tensor, objective) -> torch.Tensor:
    m = copy.deepcopy(model)
    set_flat_params(m, theta)
    return reference_gradient(m, objective)


def _noise_stream(seed: int) -> torch.Generator:
    """The documented gradient-noise stream of a run with this seed."""
    return torch.Generator().manual_seed(_derived_seed(seed, STREAMS["grad_noise"]))


def _flat_noise(model: nn.Module, gen: torch.Generator, sigma: float) -> torch.Tensor:
    """σ·ξ for every parameter in order, drawn as add_gradient_noise documents."""
    return torch.cat([(torch.randn(p.shape, generator=gen, dtype=p.dtype) * sigma).reshape(-1)
                      for p in model.parameters()])


# ---- sign-SGD ------------------------------------------------------------------------------------

@pytest.mark.parametrize("weight_decay", [None, 0.05])
def test_signsgd_steps_match_the_hand_written_update(weight_decay):
    data = blobs(n_train=20, seed=1, dtype=DT)
    model = mlp(seed=1, dtype=DT)
    objective = _objective(data)
    lr, wd = 0.03, weight_decay or 0.0
    w = flat_params(model)
    moved = []
    for _ in range(3):  # full batch: three steps of w ← w − η sign(g + λ w)
        g = _gradient_at(model, w, objective)
        new = w - lr * torch.sign(g + wd * w)
        moved.append((new - w).abs())
        w = new
    result = train(model, data, "signsgd", lr=lr, weight_decay=weight_decay, epochs=3)
    assert result.steps == 3
    assert torch.equal(flat_params(model), w)
    # Every coordinate moved by exactly η in each step (no gradient entry is exactly 0 here).
    for step in moved:
        torch.testing.assert_close(step, torch.full_like(step, lr), rtol=0, atol=1e-15)


def test_signsgd_leaves_zero_gradients_alone_and_skips_parameters_without_gradient():
    a, b, c = (nn.Parameter(torch.tensor([1.0, 2.0, 3.0], dtype=DT)) for _ in range(3))
    opt = SignSGD([a, b, c], lr=0.5)
    a.grad = torch.tensor([-2.0, 0.0, 1e-30], dtype=DT)
    b.grad = torch.tensor([3.0, -0.0, -4.0], dtype=DT)
    opt.step()
    assert torch.equal(a.detach(), torch.tensor([1.5, 2.0, 2.5], dtype=DT))
    assert torch.equal(b.detach(), torch.tensor([0.5, 2.0, 3.5], dtype=DT))
    assert torch.equal(c.detach(), torch.tensor([1.0, 2.0, 3.0], dtype=DT))


def test_signsgd_refuses_momentum_and_bad_hyperparameters():
    p = [nn.Parameter(torch.zeros(2))]
    assert isinstance(build_optimizer("signsgd", p, lr=0.1, momentum=0.0), SignSGD)
    with pytest.raises(InvalidInputError, match=r"^momentum\b.*signsgd"):
        build_optimizer("signsgd", p, lr=0.1, momentum=0.9)
    data, model = blobs(seed=2), mlp(seed=2)
    before = flat_params(model)
    with pytest.raises(InvalidInputError, match=r"^momentum\b"):
        train(model, data, "signsgd", lr=0.1, momentum=0.5, epochs=1)
    assert torch.equal(flat_params(model), before)
    for kwargs, field in ((dict(lr=0.0), "lr"), (dict(lr=float("inf")), "lr"), (dict(weight_decay=-1.0), "weight_decay")):
        with pytest.raises(InvalidInputError, match=rf"^{field}\b"):
            SignSGD(p, **{"lr": 0.1, **kwargs})


def test_clipping_does_not_change_a_signsgd_step():
    data = blobs(seed=3, dtype=DT)
    plain, clipped = mlp(seed=3, dtype=DT), mlp(seed=3, dtype=DT)
    train(plain, data, "signsgd", lr=0.01, batch_size=16, epochs=2)
    train(clipped, data, "signsgd", lr=0.01, batch_size=16, epochs=2, clip_norm=1e-3, clip_value=1e-4)
    assert torch.equal(flat_params(plain), flat_params(clipped))


# ---- gradient noise ------------------------------------------------------------------------------

def test_add_gradient_noise_draws_the_documented_stream():
    torch.manual_seed(0)
    params = [nn.Parameter(torch.randn(3, 2, dtype=DT)), nn.Parameter(torch.randn(4)), nn.Parameter(torch.randn(2))]
    params[0].grad, params[1].grad = torch.randn(3, 2, dtype=DT), torch.randn(4)  # params[2] has no gradient
    before = [None if p.grad is None else p.grad.clone() for p in params]
    add_gradient_noise(params, 0.3, torch.Generator().manual_seed(7))
    gen = torch.Generator().manual_seed(7)
    xi0 = torch.randn((3, 2), generator=gen, dtype=DT)
    xi1 = torch.randn((4,), generator=gen, dtype=torch.float32)
    assert torch.equal(params[0].grad, before[0] + 0.3 * xi0)
    assert torch.equal(params[1].grad, before[1] + 0.3 * xi1)
    assert params[2].grad is None
    # sigma = 0 draws nothing and changes nothing.
    gen = torch.Generator().manual_seed(7)
    state = gen.get_state()
    grads = [p.grad.clone() for p in params[:2]]
    add_gradient_noise(params, 0.0, gen)
    assert torch.equal(gen.get_state(), state) and all(torch.equal(p.grad, g) for p, g in zip(params, grads))


def test_grad_noise_sgd_steps_match_the_hand_written_update():
    data = blobs(n_train=50, seed=4, dtype=DT)
    model = mlp(seed=4, dtype=DT)
    reference = copy.deepcopy(model)
    lr, sigma, bs, seed = 0.1, 0.5, 16, 3
    train(model, data, "sgd", lr=lr, batch_size=bs, epochs=2, grad_noise=sigma, seed=seed)

    order_gen, noise_gen = torch.Generator().manual_seed(seed), _noise_stream(seed)
    w, no_noise = flat_params(reference), flat_params(reference)
    for _ in range(2):
        order = torch.randperm(50, generator=order_gen)
        for start in range(0, 50, bs):
            idx = order[start:start + bs]
            objective = lambda call, idx=idx: nn.functional.cross_entropy(call(data.x_train[idx]),  # noqa: E731
                                                                           data.y_train[idx])
            g = _gradient_at(reference, w, objective)
            w = w - lr * (g + _flat_noise(reference, noise_gen, sigma))
            no_noise = no_noise - lr * _gradient_at(reference, no_noise, objective)
    torch.testing.assert_close(flat_params(model), w, rtol=0, atol=1e-13)
    assert (w - no_noise).abs().max() > 1e-2  # the noise mattered, far beyond the tolerance


def test_grad_noise_after_clipping_and_at_the_perturbed_point_for_sam():
    data = blobs(n_train=10, d=3, classes=3, seed=5, dtype=DT)
    model = nn.Linear(3, 3).to(DT)
    torch.manual_seed(5)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p))
    objective = _objective(data)
    rho, lr, sigma, clip_value, seed = 0.3, 0.2, 0.1, 0.05, 9
    w = flat_params(model)
    g = reference_gradient(model, objective)
    e = rho * g / (g.norm() + 1e-12)  # the ascent uses the clean gradient
    g_perturbed = _gradient_at(model, w + e, objective).clamp(-clip_value, clip_value)
    expected = w - lr * (g_perturbed + _flat_noise(model, _noise_stream(seed), sigma))
    train(model, data, "sam", lr=lr, rho=rho, clip_value=clip_value, grad_noise=sigma, epochs=1, seed=seed)
    torch.testing.assert_close(flat_params(model), expected, rtol=0, atol=1e-14)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "sam", "adahessian", "signsgd"])
def test_zero_grad_noise_is_plain_training_bit_for_bit(optimizer):
    data = blobs(seed=6)

    def run(**kw):
        model = mlp(seed=6, dropout=0.2)
        train(model, data, optimizer, lr=0.02, batch_size=16, epochs=2, seed=1, **kw)
        return flat_params(model)

    plain = run()
    assert torch.equal(run(grad_noise=0.0), plain) and torch.equal(run(grad_noise=None), plain)
    noisy = run(grad_noise=0.05)
    assert torch.equal(run(grad_noise=0.05), noisy) and not torch.equal(noisy, plain)


def test_grad_noise_is_seeded_and_leaves_the_global_streams_alone():
    data = blobs(seed=7)

    def run(seed):
        model = mlp(seed=7)
        train(model, data, "sgd", lr=0.05, batch_size=16, epochs=2, grad_noise=0.1, seed=seed)
        return flat_params(model)

    a = run(0)
    assert torch.equal(a, run(0)) and not torch.equal(a, run(1))
    model = mlp(seed=7)
    state, np_state = torch.random.get_rng_state(), np.random.get_state()
    train(model, data, "sgd", lr=0.05, batch_size=16, epochs=2, grad_noise=0.1, seed=0)
    assert torch.equal(flat_params(model), a)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert np.array_equal(np.random.get_state()[1], np_state[1])


@pytest.mark.parametrize("value", [-0.1, float("nan"), float("inf"), "0.1", True, [0.1]])
def test_bad_grad_noise_is_refused_before_any_step(value):
    data, model = blobs(seed=8), mlp(seed=8)
    before = flat_params(model)
    with pytest.raises(InvalidInputError, match=r"^grad_noise\b"):
        train(model, data, "sgd", lr=0.1, epochs=1, grad_noise=value)
    assert torch.equal(flat_params(model), before)
