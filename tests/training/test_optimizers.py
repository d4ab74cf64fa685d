"""Optimisers of the training harness against hand-computed updates (float64, torch.func references)."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
from torch import nn

from _training_cases import ToyData, blobs, flat_params, mlp, set_flat_params
from conftest import reference_gradient, reference_hessian
from hesslens.errors import InvalidInputError
from hesslens.training import OPTIMIZERS, SAM, AdaHessian, build_optimizer, frozen_buffers, hutchinson_diagonal, train
from hesslens.training.optimizers import rademacher_like, spatial_average

DT = torch.float64


def _ce_objective(data: ToyData):
    return lambda call: nn.functional.cross_entropy(call(data.x_train), data.y_train)


def _gradient_at(model: nn.Module, theta: torch.Tensor, objective) -> torch.Tensor:
    m = copy.deepcopy(model)
    set_flat_params(m, theta)
    return reference_gradient(m, objective)


# ---- every optimiser trains ----------------------------------------------------------------------

@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_reduces_the_training_loss(name):
    data = blobs(seed=1)
    model = mlp(seed=1)
    lr = {"adahessian": 0.05}.get(name, 0.05 if name in ("sgd", "momentum", "sam") else 0.01)
    result = train(model, data, name, batch_size=16, lr=lr, epochs=8, seed=0)
    losses = result.history["train_loss"].to_numpy()
    assert not result.diverged and result.stop_reason == "epochs"
    assert losses[-1] < 0.8 * losses[0], losses


def test_build_optimizer_defaults_per_name():
    p = [nn.Parameter(torch.zeros(2))]
    assert build_optimizer("momentum", p, lr=0.1).param_groups[0]["momentum"] == 0.9
    assert build_optimizer("sgd", p, lr=0.1).param_groups[0]["momentum"] == 0.0
    assert build_optimizer("adamw", p, lr=0.1).param_groups[0]["weight_decay"] == 0.01
    assert build_optimizer("adam", p, lr=0.1).param_groups[0]["weight_decay"] == 0.0
    sam = build_optimizer("sam", p, lr=0.1)
    assert isinstance(sam, SAM) and sam.param_groups[0]["rho"] == 0.05 and not sam.param_groups[0]["adaptive"]
    assert isinstance(build_optimizer("adahessian", p, lr=0.1), AdaHessian)


# ---- SAM / ASAM ----------------------------------------------------------------------------------

@pytest.mark.parametrize("adaptive", [False, True])
def test_sam_step_matches_hand_computed_two_pass_update(adaptive):
    data = blobs(n_train=10, d=3, classes=3, seed=2, dtype=DT)
    model = nn.Linear(3, 3).to(DT)
    torch.manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p))
    objective = _ce_objective(data)
    rho, lr = 0.3, 0.2
    w = flat_params(model)
    g = reference_gradient(model, objective)
    t = w.abs() if adaptive else torch.ones_like(w)
    e = rho * t ** 2 * g / ((t * g).norm() + 1e-12)
    expected = w - lr * _gradient_at(model, w + e, objective)

    result = train(model, data, "sam", lr=lr, rho=rho, adaptive=adaptive, epochs=1)
    assert result.steps == 1
    torch.testing.assert_close(flat_params(model), expected, rtol=0, atol=1e-12)
    # The perturbation must matter: plain gradient descent lands elsewhere.
    assert (expected - (w - lr * g)).abs().max() > 1e-4


def test_sam_with_rho_zero_is_sgd():
    data = blobs(seed=4, dtype=DT)
    a, b = mlp(seed=4, dtype=DT), mlp(seed=4, dtype=DT)
    train(a, data, "sam", rho=0.0, lr=0.1, batch_size=32, epochs=2, momentum=0.5, weight_decay=1e-3)
    train(b, data, "momentum", lr=0.1, batch_size=32, epochs=2, momentum=0.5, weight_decay=1e-3)
    torch.testing.assert_close(flat_params(a), flat_params(b), rtol=0, atol=1e-14)


def test_sam_closure_api_equals_half_steps():
    data = blobs(seed=5, dtype=DT)
    a, b = mlp(seed=5, dtype=DT), mlp(seed=5, dtype=DT)
    loss = lambda m: nn.functional.cross_entropy(m(data.x_train), data.y_train)  # noqa: E731
    oa, ob = SAM(a.parameters(), lr=0.1, rho=0.1), SAM(b.parameters(), lr=0.1, rho=0.1)
    loss(a).backward()
    oa.step(lambda: loss(a).backward())
    loss(b).backward()
    ob.first_step(zero_grad=True)
    loss(b).backward()
    ob.second_step()
    assert torch.equal(flat_params(a), flat_params(b))
    with pytest.raises(InvalidInputError):
        oa.step()


def test_sam_perturbed_pass_leaves_batchnorm_statistics_alone():
    data = blobs(n_train=40, seed=6)
    model = mlp(seed=6, batchnorm=True)
    bn = model[1]
    reference = copy.deepcopy(model).train()
    with torch.no_grad():
        reference(data.x_train)  # one plain forward in train mode: what one step should leave
    two_forwards = copy.deepcopy(reference)
    with torch.no_grad():
        two_forwards(data.x_train + 0.5)
    # Sanity: a second (perturbed) forward would have moved the statistics.
    assert not torch.allclose(two_forwards[1].running_mean, reference[1].running_mean)

    train(model, data, "sam", lr=0.5, rho=0.5, epochs=1)
    assert torch.equal(bn.running_mean, reference[1].running_mean)
    assert torch.equal(bn.running_var, reference[1].running_var)
    assert int(bn.num_batches_tracked) == 1


def test_frozen_buffers_restores_cumulative_batchnorm():
    bn = nn.BatchNorm1d(3, momentum=None)
    bn(torch.randn(8, 3))
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    with frozen_buffers(bn):
        bn(torch.randn(8, 3) + 3)
    for k, v in bn.state_dict().items():
        assert torch.equal(v, before[k]), k


# ---- gradient clipping ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["norm", "value", "both", "norm_inactive"])
def test_clipping_matches_clip_grad_semantics_on_one_step(mode):
    data = blobs(n_train=12, seed=7, dtype=DT)
    model = mlp(seed=7, dtype=DT)
    w = flat_params(model)
    g = reference_gradient(model, _ce_objective(data))
    lr = 0.3
    clip_value = 0.5 * float(g.abs().max()) if mode in ("value", "both") else None
    if mode == "norm_inactive":
        clip_norm = 2 * float(g.norm())
    elif mode in ("norm", "both"):
        clip_norm = 0.25 * float(g.norm())
    else:
        clip_norm = None
    expected_g = g.clone()
    if clip_value is not None:  # clip_grad_value_: clamp every entry
        expected_g = expected_g.clamp(-clip_value, clip_value)
    if clip_norm is not None:  # clip_grad_norm_: scale by min(1, c / (‖g‖ + 1e-6))
        expected_g = expected_g * min(1.0, clip_norm / (float(expected_g.norm()) + 1e-6))
    train(model, data, "sgd", lr=lr, epochs=1, clip_norm=clip_norm, clip_value=clip_value)
    torch.testing.assert_close(flat_params(model), w - lr * expected_g, rtol=0, atol=1e-13)
    if mode != "norm_inactive":
        assert (expected_g - g).abs().max() > 1e-6  # the clip was active


# ---- AdaHessian ----------------------------------------------------------------------------------

def _tiny_problem(seed=8):
    data = blobs(n_train=12, d=3, classes=3, seed=seed, dtype=DT)
    model = mlp(d=3, hidden=3, out=3, seed=seed, dtype=DT)
    return data, model


def _grads_with_graph(model, data):
    loss = nn.functional.cross_entropy(model(data.x_train), data.y_train)
    params = list(model.parameters())
    return torch.autograd.grad(loss, params, create_graph=True), params


def test_hutchinson_single_probe_is_z_times_exact_hessian_times_z():
    data, model = _tiny_problem()
    H = reference_hessian(model, _ce_objective(data))
    grads, params = _grads_with_graph(model, data)
    d = hutchinson_diagonal(grads, params, torch.Generator().manual_seed(11))
    g = torch.Generator().manual_seed(11)
    z = torch.cat([rademacher_like(p, g).reshape(-1) for p in params])
    torch.testing.assert_close(torch.cat([x.reshape(-1) for x in d]), z * (H @ z), rtol=0, atol=1e-12)


def test_hutchinson_diagonal_is_unbiased_for_the_exact_hessian_diagonal():
    data, model = _tiny_problem()
    H = reference_hessian(model, _ce_objective(data))
    diag = H.diagonal()
    # Var(z_i (Hz)_i) = Σ_{j≠i} H_ij²: the tolerance is 5 standard errors of the probe mean.
    probes = 400
    stderr = ((H ** 2).sum(1) - diag ** 2).clamp_min(0).div(probes).sqrt()
    gen = torch.Generator().manual_seed(12)
    total = torch.zeros_like(diag)
    grads, params = _grads_with_graph(model, data)
    for _ in range(probes):
        total += torch.cat([x.reshape(-1) for x in hutchinson_diagonal(grads, params, gen, retain_graph=True)])
    mean = total / probes
    assert ((mean - diag).abs() <= 5 * stderr + 1e-12).all(), (mean - diag).abs() / (stderr + 1e-30)
    # The estimate is not trivially exact: single probes scatter.
    assert stderr.max() > 1e-3


def test_adahessian_spatially_averages_conv_kernels():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(2 * 6, 2)).to(DT)
    x = torch.randn(5, 1, 8, dtype=DT)
    y = torch.tensor([0, 1, 0, 1, 1])
    opt = AdaHessian(model.parameters(), seed=3)
    loss = nn.functional.cross_entropy(model(x), y)
    opt.backward(loss)
    stored = opt.state[model[0].weight]["hessian_diag"]
    grads, params = _grads_with_graph_conv(model, x, y)
    raw = hutchinson_diagonal(grads, params, torch.Generator().manual_seed(3))[0]
    assert raw.shape == (2, 1, 3)
    torch.testing.assert_close(stored, raw.mean(dim=2, keepdim=True).expand_as(raw), rtol=0, atol=1e-14)
    torch.testing.assert_close(spatial_average(raw), stored, rtol=0, atol=0)
    assert not torch.allclose(raw, stored)  # averaging changed something
    opt.step()  # a 3-D kernel steps without error


def _grads_with_graph_conv(model, x, y):
    params = list(model.parameters())
    loss = nn.functional.cross_entropy(model(x), y)
    return torch.autograd.grad(loss, params, create_graph=True), params


def test_adahessian_two_steps_match_the_update_formula():
    data, model = _tiny_problem(9)
    objective = _ce_objective(data)
    lr, (b1, b2), eps, wd, seed = 0.1, (0.9, 0.999), 1e-4, 0.01, 5
    params = list(model.parameters())
    # Reference: same probe stream, exact Hessian-vector products.
    gen = torch.Generator().manual_seed(seed)
    w = flat_params(model)
    m = torch.zeros_like(w)
    v = torch.zeros_like(w)
    for t in (1, 2):
        shadow = copy.deepcopy(model)
        set_flat_params(shadow, w)
        g = reference_gradient(shadow, objective)
        H = reference_hessian(shadow, objective)
        z = torch.cat([rademacher_like(p, gen).reshape(-1) for p in params])
        d = z * (H @ z)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * d * d
        denom = (v / (1 - b2 ** t)).sqrt() + eps
        w = w - lr * ((m / (1 - b1 ** t)) / denom + wd * w)

    opt = AdaHessian(model.parameters(), lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd, seed=seed)
    for _ in range(2):
        opt.zero_grad()
        opt.backward(nn.functional.cross_entropy(model(data.x_train), data.y_train))
        opt.step()
    torch.testing.assert_close(flat_params(model), w, rtol=0, atol=1e-12)


def test_adahessian_accepts_backward_with_create_graph():
    data, a = _tiny_problem(10)
    b = copy.deepcopy(a)
    oa, ob = AdaHessian(a.parameters(), seed=1), AdaHessian(b.parameters(), seed=1)
    oa.backward(nn.functional.cross_entropy(a(data.x_train), data.y_train))
    oa.step()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns about the grad↔param cycle; step() detaches p.grad
        nn.functional.cross_entropy(b(data.x_train), data.y_train).backward(create_graph=True)
    ob.step()
    assert all(p.grad.grad_fn is None for p in b.parameters())
    torch.testing.assert_close(flat_params(a), flat_params(b), rtol=0, atol=1e-14)
    ob.zero_grad()
    nn.functional.cross_entropy(b(data.x_train), data.y_train).backward()
    with pytest.raises(InvalidInputError, match="graph"):
        ob.step()


@pytest.mark.parametrize("kwargs, field", [
    (dict(lr=0.0), "lr"), (dict(betas=(1.0, 0.9)), "betas"), (dict(hessian_power=1.5), "hessian_power"),
    (dict(eps=-1.0), "eps"), (dict(weight_decay=-0.1), "weight_decay"),
])
def test_adahessian_rejects_bad_hyperparameters(kwargs, field):
    with pytest.raises(InvalidInputError, match=field):
        AdaHessian([nn.Parameter(torch.zeros(1))], **kwargs)


def test_adahessian_probes_are_seeded():
    data, a = _tiny_problem(13)
    b, c = copy.deepcopy(a), copy.deepcopy(a)
    for model, seed in ((a, 0), (b, 0), (c, 1)):
        opt = AdaHessian(model.parameters(), lr=0.05, seed=seed)
        for _ in range(3):
            opt.zero_grad()
            opt.backward(nn.functional.cross_entropy(model(data.x_train), data.y_train))
            opt.step()
    assert torch.equal(flat_params(a), flat_params(b))
    assert not torch.equal(flat_params(a), flat_params(c))
    assert math.isfinite(float(flat_params(a).sum()))
