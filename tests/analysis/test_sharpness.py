"""hl.sharpness against references built by hand: exact spectra of operators on the protocol's data.

Every reference below is an explicit construction of what the protocol (Kaur, Cohen & Lipton 2023)
says — the evenly spaced analysis set, the mode, the physical batches, the extra SGD step — measured
with ``exact_spectrum`` (a dense eigendecomposition), so a wrong subset, mode, split, weighting or
step changes the expected value and the test fails.
"""

from __future__ import annotations

import contextlib
import copy
import importlib

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import hesslens as hl
from hesslens.analysis import SharpnessResult, sharpness
from hesslens.models import mlp

REL = 1e-6
TOL = 1e-10  # Lanczos residual tolerance: the eigenvalue error is far below REL
# A fixed engine skips the engine timing of "auto" (seconds per operator on these tiny nets); the
# engines themselves are tested against torch.func.hessian in tests/operators.
ENGINE = "double_backward+vmap"


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _data(n: int, d: int = 5, classes: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, classes, (n,), generator=g)
    return x, y


def _indices(n_total: int, n: int = 1000) -> torch.Tensor:
    # Written out independently of hesslens: round(linspace(0, N-1, n)), or all indices.
    if n_total <= n:
        return torch.arange(n_total)
    return torch.from_numpy(np.rint(np.linspace(0, n_total - 1, n)).astype(np.int64))


def _op(model, loss_fn, data, mode="eval"):
    return hl.HessianOperator(model, loss_fn, data, mode=mode, engine=ENGINE)


def _top(op) -> float:
    return float(hl.exact_spectrum(op)[-1])


def _bn_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3)).double()


def _snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "rng": torch.random.get_rng_state(),
        "track": [getattr(m, "track_running_stats", None) for m in model.modules()],
    }


def _assert_same(before: dict, after: dict) -> None:
    assert before["state"].keys() == after["state"].keys()
    for k in before["state"]:
        assert torch.equal(before["state"][k], after["state"][k]), k
    assert before["training"] == after["training"]
    assert before["requires_grad"] == after["requires_grad"]
    assert before["track"] == after["track"]
    for a, b in zip(before["grads"], after["grads"]):
        assert (a is None and b is None) or torch.equal(a, b)
    assert torch.equal(before["rng"], after["rng"])


def test_lambda_max_is_top_of_exact_spectrum_on_1000_evenly_spaced_samples():
    x, y = _data(1500)
    model = mlp(5, (6,), 3, seed=0).double()
    res = sharpness(model, F.cross_entropy, (x, y), engine=ENGINE, tol=TOL)
    idx = _indices(1500)
    # the same subset as the Tracker's evenly_spaced helper
    xt, _ = hl.training.evenly_spaced(x, y, 1000)
    assert torch.equal(xt, x[idx])
    exact = hl.exact_spectrum(_op(model, F.cross_entropy, (x[idx], y[idx])))
    assert res.lambda_max == pytest.approx(exact[-1], rel=REL)
    assert np.allclose(res.values, exact[::-1][:6], rtol=1e-6, atol=1e-9 * exact[-1])
    assert len(res.values) == 6 and res.residual <= 1e-6 * abs(res.lambda_max)
    assert res.settings["samples"] == 1000 and res.settings["mode"] == "eval"
    assert res.settings["protocol"] == "kaur2023" and res.settings["interpolate"] is False
    assert isinstance(res, SharpnessResult) and res.matvecs > 0 and res.seconds > 0
    # It is really the subset: the Hessian over all 1500 samples has a different top eigenvalue.
    full_top = _top(_op(model, F.cross_entropy, (x, y)))
    assert abs(full_top - res.lambda_max) > 1e-4 * res.lambda_max


def test_all_samples_when_fewer_than_1000_and_full_protocol():
    x, y = _data(300)
    model = mlp(5, (6,), 3, seed=1).double()
    res = sharpness(model, F.cross_entropy, (x, y), engine=ENGINE, tol=TOL)
    ref = _top(_op(model, F.cross_entropy, (x, y)))
    assert res.settings["samples"] == 300
    assert res.lambda_max == pytest.approx(ref, rel=REL)

    x, y = _data(1500, seed=3)
    full = sharpness(model, F.cross_entropy, (x, y), "full", tol=TOL, engine=ENGINE)
    assert full.settings["samples"] == 1500 and full.settings["mode"] == "eval"
    assert full.lambda_max == pytest.approx(_top(_op(model, F.cross_entropy, (x, y))), rel=REL)


def test_dataset_object_uses_the_training_split():
    ds = hl.datasets.load("iris")
    model = mlp(4, (5,), 3, seed=0).double()
    res = sharpness(model, F.cross_entropy, ds, tol=TOL, engine=ENGINE)
    x, y = ds.x_train.double(), ds.y_train
    assert res.settings["samples"] == len(x)
    assert res.lambda_max == pytest.approx(_top(_op(model, F.cross_entropy, (x, y))), rel=REL)


def test_batchnorm_net_train_mode_with_physical_batches():
    x, y = _data(1500, seed=4)
    model = _bn_net()
    model.eval()  # the caller's mode must not matter
    res = sharpness(model, F.cross_entropy, (x, y), engine=ENGINE, batch_size=64, tol=TOL)
    idx = _indices(1500)
    xs, ys = x[idx], y[idx]
    batches = [(xs[i:i + 64], ys[i:i + 64]) for i in range(0, 1000, 64)]  # 15 × 64 + 40
    ref = _top(_op(model, F.cross_entropy, batches, mode="train"))
    assert res.lambda_max == pytest.approx(ref, rel=REL)
    assert res.settings["mode"] == "train" and res.settings["batchnorm"] is True
    assert res.settings["physical_batch"] == 64 and res.settings["num_batches"] == 16
    # Mode and split both matter here, so the comparison above can fail:
    eval_top = _top(_op(model, F.cross_entropy, (xs, ys), mode="eval"))
    one_batch = _top(_op(model, F.cross_entropy, (xs, ys), mode="train"))
    assert abs(eval_top - ref) > 1e-3 * ref and abs(one_batch - ref) > 1e-3 * ref
    # Physical batches are capped at 1000 and cover the set when training was full batch.
    big = sharpness(model, F.cross_entropy, (x, y), engine=ENGINE, batch_size=4096, tol=TOL)
    gd = sharpness(model, F.cross_entropy, (x, y), engine=ENGINE, batch_size=None, tol=TOL)
    assert big.settings["physical_batch"] == gd.settings["physical_batch"] == 1000
    assert big.lambda_max == pytest.approx(one_batch, rel=REL) and gd.lambda_max == pytest.approx(one_batch, rel=REL)


def test_dropout_net_is_measured_in_eval_mode():
    x, y = _data(800, seed=5)
    model = mlp(5, (8, 8), 3, dropout=0.5, seed=2).double()
    model.train()
    res = sharpness(model, F.cross_entropy, (x, y), engine=ENGINE, tol=TOL)  # no NonDeterministicLossError
    assert res.settings["mode"] == "eval" and res.settings["dropout"] is True
    ref = _top(_op(model, F.cross_entropy, (x, y), mode="eval"))
    assert res.lambda_max == pytest.approx(ref, rel=REL)
    with pytest.raises(hl.NonDeterministicLossError):  # what eval mode avoids
        _op(model, F.cross_entropy, (x, y), mode="train")
    assert model.training


def test_batchnorm_and_dropout_together_keep_batch_statistics_and_drop_dropout():
    x, y = _data(400, seed=6)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Dropout(0.3), nn.Linear(6, 3)).double()
    res = sharpness(model, F.cross_entropy, (x, y), engine=ENGINE, batch_size=100, tol=TOL)
    # Reference: the same net without its Dropout layer, BatchNorm in train mode.
    bare = copy.deepcopy(model)
    bare[3] = nn.Identity()
    batches = [(x[i:i + 100], y[i:i + 100]) for i in range(0, 400, 100)]
    ref = _top(_op(bare, F.cross_entropy, batches, mode="train"))
    assert res.settings["mode"] == "train+eval-dropout"
    assert res.lambda_max == pytest.approx(ref, rel=REL)


def test_interpolation_is_the_max_over_8_points_computed_by_hand():
    x, y = _data(1500, seed=7)
    model = _bn_net(seed=3)
    lr, bs = 0.8, 125
    before = _snapshot(model)
    res = sharpness(model, F.cross_entropy, (x, y), engine=ENGINE, batch_size=bs, interpolate=True, lr=lr, tol=TOL)
    _assert_same(before, _snapshot(model))

    # The extra SGD step: gradient of the mean loss on the first 125 training examples, BatchNorm
    # with those examples' batch statistics.
    ref_model = copy.deepcopy(model)
    ref_model.train()
    for m in ref_model.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.track_running_stats = False
    grads = torch.autograd.grad(F.cross_entropy(ref_model(x[:bs]), y[:bs]), list(ref_model.parameters()))
    w0 = [p.detach().clone() for p in model.parameters()]
    idx = _indices(1500)
    xs, ys = x[idx], y[idx]
    batches = [(xs[i:i + bs], ys[i:i + bs]) for i in range(0, 1000, bs)]
    expected = []
    for t in np.linspace(0, 1, 8):
        net = copy.deepcopy(model)
        with torch.no_grad():
            for p, w, g in zip(net.parameters(), w0, grads):
                p.copy_(w - float(t) * lr * g)
        expected.append(_top(_op(net, F.cross_entropy, batches, mode="train")))
    assert len(res.interpolation) == 8
    assert np.allclose(res.interpolation, expected, rtol=REL, atol=0)
    assert res.lambda_max == pytest.approx(max(expected), rel=REL)
    assert res.lambda_max >= res.endpoint
    assert res.endpoint == pytest.approx(expected[0], rel=REL)
    assert res.settings["t"] == tuple(np.linspace(0, 1, 8)) and res.settings["step_batch"] == bs
    # The path is not flat, so taking its maximum is a real choice here.
    assert max(expected) - min(expected) > 1e-3 * max(expected)


def test_no_side_effects_on_a_model_with_gradients_and_train_mode():
    x, y = _data(300, seed=8)
    model = _bn_net(seed=4)
    model.train()
    F.cross_entropy(model(x[:32]), y[:32]).backward()  # leaves .grad and updated running stats
    before = _snapshot(model)
    sharpness(model, F.cross_entropy, (x, y), engine=ENGINE, batch_size=100, interpolate=True, lr=0.1, tol=1e-6)
    sharpness(model, F.cross_entropy, (x, y), "full", tol=1e-6)  # engine "auto": its timing runs too
    _assert_same(before, _snapshot(model))


def test_bad_inputs():
    x, y = _data(50)
    model = mlp(5, (4,), 3, seed=0).double()
    with pytest.raises(hl.InvalidInputError, match="protocol"):
        sharpness(model, F.cross_entropy, (x, y), engine=ENGINE, protocol="pyhessian")
    with pytest.raises(hl.InvalidInputError, match="lr"):
        sharpness(model, F.cross_entropy, (x, y), engine=ENGINE, interpolate=True, batch_size=10)
    with pytest.raises(hl.InvalidInputError, match="batch_size"):
        sharpness(model, F.cross_entropy, (x, y), engine=ENGINE, batch_size=0)
    with pytest.raises(hl.InvalidInputError, match="dataset"):
        sharpness(model, F.cross_entropy, x)


def test_models_are_seeded_and_leave_the_global_stream_alone():
    from hesslens.models import vgg1d, vgg2d

    state = torch.random.get_rng_state()
    a, b = mlp(40, (16,), 10, dropout=0.2, seed=3), mlp(40, (16,), 10, dropout=0.2, seed=3)
    c = mlp(40, (16,), 10, dropout=0.2, seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a[1].weight, c[1].weight)
    assert a(torch.randn(2, 1, 40)).shape == (2, 10)
    assert vgg1d(1, 10, batchnorm=True, seed=0)(torch.randn(3, 1, 40)).shape == (3, 10)
    assert vgg2d(1, 10, seed=0)(torch.randn(3, 1, 8, 8)).shape == (3, 10)
    assert any(isinstance(m, nn.BatchNorm1d) for m in vgg1d(batchnorm=True).modules())
    assert not any(isinstance(m, nn.Dropout) for m in mlp(4, (3,), 2).modules())
    with pytest.raises(hl.InvalidInputError):
        mlp(4, (3,), 2, dropout=1.0)


def test_interpolation_leaves_an_eval_mode_batchnorm_net_exactly_as_found(monkeypatch):
    """The extra SGD step of ``interpolate=True`` runs the net with BatchNorm in *train* mode. Entered
    in eval mode, the state guard finds nothing to switch off (tracking is only disabled for layers
    already training), so that forward pass really updates running_mean, running_var and
    num_batches_tracked; only the guard's buffer restore puts them back. This test pins that down."""
    x, y = _data(300, seed=9)
    model = _bn_net(seed=5)
    model.train()
    F.cross_entropy(model(x[:50]), y[:50]).backward()  # non-trivial running stats and .grad
    model.eval()
    model[0].bias.requires_grad_(False)
    before = _snapshot(model)
    assert not before["training"][0] and before["state"]["1.num_batches_tracked"] == 1

    sharpness(model, F.cross_entropy, (x, y), engine=ENGINE, batch_size=50, interpolate=True, lr=0.5, tol=1e-6)
    _assert_same(before, _snapshot(model))
    assert model[1].weight.grad is not None and model[0].bias.grad is not None  # kept, not cleared

    # The same call with a guard whose buffer restore is broken: the check above must catch it.
    sharpness_module = importlib.import_module("hesslens.analysis.sharpness")  # the name is also the function's
    real = sharpness_module.preserved_state

    @contextlib.contextmanager
    def forgetful(net, mode="as_is"):
        with real(net, mode) as guarded:
            try:
                yield guarded
            finally:
                changed = {k: b.detach().clone() for k, b in net.named_buffers()}
        with torch.no_grad():  # undo the restore: the buffers as the block left them
            for k, b in net.named_buffers():
                b.copy_(changed[k])

    monkeypatch.setattr(sharpness_module, "preserved_state", forgetful)
    sharpness(model, F.cross_entropy, (x, y), engine=ENGINE, batch_size=50, interpolate=True, lr=0.5, tol=1e-6)
    after = _snapshot(model)
    assert after["state"]["1.num_batches_tracked"] == before["state"]["1.num_batches_tracked"] + 1
    assert not torch.equal(after["state"]["1.running_mean"], before["state"]["1.running_mean"])
    with pytest.raises(AssertionError):
        _assert_same(before, after)
