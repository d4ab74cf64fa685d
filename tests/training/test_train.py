"""hl.train: conventions (full batch = GD, data order, until_train_acc), divergence, determinism,
validation, callbacks and the result record."""

from __future__ import annotations

import copy
import dataclasses
import types

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from _training_cases import ToyInfo, blobs, flat_params, linear_regression, mlp
from hesslens.errors import InvalidInputError
from hesslens.training import StopTraining, TrainResult, train
from hesslens.training.results import HISTORY_COLUMNS

DT = torch.float64


def test_full_batch_is_gradient_descent():
    data = blobs(seed=0, dtype=DT)
    model = mlp(seed=0, dtype=DT)
    manual = copy.deepcopy(model)
    lr, epochs = 0.3, 5
    result = train(model, data, "sgd", lr=lr, epochs=epochs)

    losses = []
    for _ in range(epochs):
        loss = nn.functional.cross_entropy(manual(data.x_train), data.y_train)
        losses.append(float(loss.detach()))
        grads = torch.autograd.grad(loss, list(manual.parameters()))
        with torch.no_grad():
            for p, g in zip(manual.parameters(), grads):
                p -= lr * g
    final_loss = float(nn.functional.cross_entropy(manual(data.x_train), data.y_train).detach())
    torch.testing.assert_close(flat_params(model), flat_params(manual), rtol=0, atol=1e-14)
    np.testing.assert_allclose(result.history["train_loss"], losses + [final_loss], rtol=1e-13)
    assert result.steps == epochs and result.epochs == epochs
    assert list(result.history["step"]) == list(range(epochs + 1))


def test_batch_size_at_least_n_is_full_batch():
    data = blobs(seed=1, dtype=DT)
    a, b = mlp(seed=1, dtype=DT), mlp(seed=1, dtype=DT)
    train(a, data, lr=0.2, epochs=3)
    train(b, data, lr=0.2, epochs=3, batch_size=10 * len(data.x_train))
    assert torch.equal(flat_params(a), flat_params(b))


def test_minibatch_order_is_a_fresh_seeded_permutation_each_epoch():
    data = blobs(n_train=50, seed=2, dtype=DT)
    model = mlp(seed=2, dtype=DT)
    manual = copy.deepcopy(model)
    lr, bs, epochs, seed = 0.1, 16, 3, 7
    result = train(model, data, "sgd", lr=lr, batch_size=bs, epochs=epochs, seed=seed)

    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(manual.parameters(), lr=lr)
    steps = 0
    for _ in range(epochs):
        order = torch.randperm(50, generator=gen)
        for start in range(0, 50, bs):  # 16, 16, 16, 2: the last batch is kept
            idx = order[start:start + bs]
            opt.zero_grad()
            nn.functional.cross_entropy(manual(data.x_train[idx]), data.y_train[idx]).backward()
            opt.step()
            steps += 1
    assert result.steps == steps == 12
    torch.testing.assert_close(flat_params(model), flat_params(manual), rtol=0, atol=1e-14)


def test_until_train_acc_stops_at_the_first_epoch_reaching_it():
    data = blobs(seed=3, spread=1.5)
    target = 0.9
    result = train(mlp(seed=3), data, "sgd", lr=0.05, batch_size=8, until_train_acc=target, max_epochs=200, seed=1)
    acc = result.history["train_acc"].to_numpy()
    assert result.stop_reason == "until_train_acc" and result.reached_target
    assert acc[-1] >= target and (acc[:-1] < target).all()
    assert result.train_acc == acc[-1] and result.epochs == len(acc) - 1 > 1
    # The same run for a fixed number of epochs follows the same path and only then continues.
    longer = train(mlp(seed=3), data, "sgd", lr=0.05, batch_size=8, epochs=result.epochs + 2, seed=1)
    pd.testing.assert_frame_equal(longer.history.iloc[:len(acc)].drop(columns="seconds"),
                                  result.history.drop(columns="seconds"))
    # epochs caps until_train_acc; max_epochs caps it when epochs is None.
    capped = train(mlp(seed=3), data, "sgd", lr=0.05, batch_size=8, until_train_acc=target, epochs=1, seed=1)
    assert capped.stop_reason == "epochs" and capped.epochs == 1
    capped = train(mlp(seed=3), data, "sgd", lr=0.05, batch_size=8, until_train_acc=target, max_epochs=1, seed=1)
    assert capped.stop_reason == "max_epochs" and not capped.reached_target


def test_divergence_is_recorded_not_raised():
    data = linear_regression(seed=4)
    model = nn.Linear(3, 1)
    result = train(model, data, "sgd", lr=1e3, epochs=500)
    assert result.diverged and result.stop_reason == "diverged"
    assert result.epochs < 500
    # The run stops at the first non-finite loss: every earlier evaluation was finite.
    losses = result.history["train_loss"].to_numpy()
    assert np.isfinite(losses[:-1]).all() and not np.isfinite(losses[-1])
    assert result.steps <= result.epochs


class NaNOnForward(nn.Module):
    """Linear model whose n-th training-mode forward returns NaN (eval forwards are untouched)."""

    def __init__(self, n):
        super().__init__()
        self.linear, self.n, self.count = nn.Linear(4, 3), n, 0

    def forward(self, x):
        out = self.linear(x)
        if self.training:
            self.count += 1
            if self.count == self.n:
                return out * float("nan")
        return out


def test_a_non_finite_minibatch_loss_stops_before_its_step():
    data = blobs(seed=5)  # 96 samples, 6 batches of 16 per epoch
    torch.manual_seed(0)
    model = NaNOnForward(5)
    steps = Recorder(every_step=True)
    result = train(model, data, "sgd", lr=0.1, batch_size=16, epochs=3, callbacks=[steps])
    assert result.diverged and result.stop_reason == "diverged"
    assert result.steps == 4 and result.epochs == 1
    assert [c[1] for c in steps.calls] == [0, 1, 2, 3, 4]
    assert torch.isfinite(flat_params(model)).all()
    assert list(result.history["step"]) == [0, 4] and np.isfinite(result.train_loss)


def test_a_non_finite_initial_loss_is_divergence_at_step_zero():
    data = linear_regression(seed=5)
    bad = dataclasses.replace(data, y_train=data.y_train.clone().index_fill_(0, torch.tensor([3]), float("nan")))
    result = train(nn.Linear(3, 1), bad, lr=0.1, epochs=3)
    assert result.diverged and result.steps == 0 and result.epochs == 0


def test_regression_uses_mse_and_has_no_accuracy():
    data = linear_regression(seed=6, dtype=DT)
    model = nn.Linear(3, 1).to(DT)
    result = train(model, data, "sgd", lr=0.1, epochs=3)
    with torch.no_grad():
        expected = float(((model(data.x_train) - data.y_train) ** 2).mean())
        expected_test = float(((model(data.x_test) - data.y_test) ** 2).mean())
    assert result.train_loss == pytest.approx(expected, rel=1e-13)
    assert result.test_loss == pytest.approx(expected_test, rel=1e-13)
    assert result.train_acc is None and result.test_acc is None
    assert result.history["train_acc"].isna().all()


def test_same_seed_gives_bitwise_identical_parameters():
    data = blobs(seed=7)

    def run(seed, optimizer):
        model = mlp(seed=0, dropout=0.3)
        train(model, data, optimizer, lr=0.05, batch_size=16, epochs=3, seed=seed)
        return flat_params(model)

    rng_before = torch.random.get_rng_state()
    for optimizer in ("sgd", "sam", "adahessian"):
        a, b, c = run(0, optimizer), run(0, optimizer), run(1, optimizer)
        assert torch.equal(a, b), optimizer
        assert not torch.equal(a, c), optimizer
    # run() re-seeds the global stream to build its model; train() itself must not consume it.
    torch.random.set_rng_state(rng_before)
    model = mlp(seed=0)
    state = torch.random.get_rng_state()
    train(model, data, "sgd", lr=0.05, batch_size=16, epochs=1)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_model_mode_and_gradients_are_restored():
    data = blobs(seed=8)
    model = mlp(seed=8, dropout=0.2).eval()
    train(model, data, lr=0.1, epochs=1)
    assert not any(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())


def test_numpy_arrays_and_simple_namespaces_are_accepted():
    data = blobs(seed=9)
    ns = types.SimpleNamespace(x_train=data.x_train.numpy(), y_train=data.y_train.numpy(), x_test=None,
                               y_test=None, task="classification")
    result = train(mlp(seed=9), ns, lr=0.1, epochs=2)
    assert result.test_loss is None and result.test_acc is None
    assert result.history["test_loss"].isna().all()
    # float64 model on float32 data: inputs are cast to the model's dtype.
    result = train(mlp(seed=9, dtype=DT), data, lr=0.1, epochs=1)
    assert np.isfinite(result.train_loss)


# ---- validation ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, field", [
    (dict(optimizer="lbfgs"), "optimizer"),
    (dict(lr=0.0), "lr"), (dict(lr=-1.0), "lr"), (dict(lr=float("nan")), "lr"),
    (dict(epochs=None, until_train_acc=None), "epochs"), (dict(epochs=0), "epochs"), (dict(epochs=2.5), "epochs"),
    (dict(until_train_acc=1.5), "until_train_acc"), (dict(until_train_acc=0.0), "until_train_acc"),
    (dict(max_epochs=0), "max_epochs"),
    (dict(batch_size=0), "batch_size"), (dict(batch_size=True), "batch_size"),
    (dict(clip_norm=0.0), "clip_norm"), (dict(clip_value=-1.0), "clip_value"),
    (dict(optimizer="sam", rho=-0.1), "rho"), (dict(optimizer="sgd", rho=0.1), "rho"),
    (dict(optimizer="adam", adaptive=True), "adaptive"),
    (dict(optimizer="sgd", momentum=0.9), "momentum"), (dict(optimizer="momentum", momentum=1.0), "momentum"),
    (dict(optimizer="adam", momentum=0.5), "momentum"),
    (dict(weight_decay=-1.0), "weight_decay"),
    (dict(seed=-1), "seed"), (dict(seed=1.5), "seed"),
    (dict(eval_every=0), "eval_every"),
    (dict(callbacks=[3]), "callbacks"), (dict(loss="mse"), "loss"),
])
def test_bad_configuration_fails_before_training_naming_the_field(kwargs, field):
    data = blobs(seed=10)
    model = mlp(seed=10)
    before = flat_params(model)
    kwargs = {"epochs": 1, **kwargs}
    optimizer = kwargs.pop("optimizer", "sgd")
    with pytest.raises(InvalidInputError, match=rf"^{field}\b"):
        train(model, data, optimizer, **kwargs)
    assert torch.equal(flat_params(model), before)


def test_bad_datasets_fail_naming_the_field():
    data = blobs(seed=11)
    model = mlp(seed=11)
    with pytest.raises(InvalidInputError, match="until_train_acc"):
        train(nn.Linear(3, 1), linear_regression(), until_train_acc=0.9)
    with pytest.raises(InvalidInputError, match="dataset"):
        train(model, types.SimpleNamespace(x_train=data.x_train, y_train=data.y_train), epochs=1)
    with pytest.raises(InvalidInputError, match="dataset"):
        train(model, dataclasses.replace(data, info=ToyInfo("ranking", None)), epochs=1)
    with pytest.raises(InvalidInputError, match="dataset.y_train"):
        train(model, dataclasses.replace(data, y_train=data.y_train.float()), epochs=1)
    with pytest.raises(InvalidInputError, match="dataset.y_train"):
        train(model, dataclasses.replace(data, y_train=data.y_train[:-1]), epochs=1)
    reg = linear_regression()
    with pytest.raises(InvalidInputError, match="dataset.y_train"):  # (N,) targets vs (N, 1) outputs
        train(nn.Linear(3, 1), dataclasses.replace(reg, y_train=reg.y_train[:, 0]), epochs=1)
    with pytest.raises(InvalidInputError, match="model"):
        train(mlp(d=5, seed=11), data, epochs=1)  # wrong input width
    with pytest.raises(InvalidInputError, match="model"):
        train("not a model", data, epochs=1)


# ---- callbacks, history, result ----------------------------------------------------------------

class Recorder:
    def __init__(self, every_step=False):
        self.every_step = every_step
        self.calls = []

    def __call__(self, model, *, epoch, step, metrics):
        assert model.training
        self.calls.append((epoch, step, dict(metrics)))


def test_epoch_and_step_callbacks():
    data = blobs(n_train=40, seed=12)
    per_epoch, per_step = Recorder(), Recorder(every_step=True)
    result = train(mlp(seed=12), data, lr=0.1, batch_size=16, epochs=3, callbacks=[per_epoch, per_step])
    history = result.history
    assert [c[0] for c in per_epoch.calls] == [0, 1, 2, 3]
    for (epoch, step, metrics), (_, row) in zip(per_epoch.calls, history.iterrows()):
        assert step == row["step"] and metrics["train_loss"] == row["train_loss"]
    # 3 batches per epoch (16, 16, 8): every step once, in order; epoch ends carry the epoch's metrics.
    assert [c[1] for c in per_step.calls] == list(range(0, 10))
    assert [c[0] for c in per_step.calls] == [0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    ends = [c for c in per_step.calls if c[1] in (3, 6, 9)]
    assert all("train_loss" in m and "loss" in m for _, _, m in ends)
    assert all("train_loss" not in m for _, s, m in per_step.calls if s not in (0, 3, 6, 9))


def test_stop_training_from_a_callback():
    def stop_at_two(model, *, epoch, step, metrics):
        if epoch == 2:
            raise StopTraining

    result = train(mlp(seed=13), blobs(seed=13), lr=0.1, epochs=10, callbacks=[stop_at_two])
    assert result.stop_reason == "callback" and result.epochs == 2 and not result.diverged


def test_eval_every_and_the_final_row():
    result = train(mlp(seed=14), blobs(seed=14), lr=0.1, epochs=7, eval_every=3)
    assert list(result.history["epoch"]) == [0, 3, 6, 7]
    calls = Recorder()
    train(mlp(seed=14), blobs(seed=14), lr=0.1, epochs=4, eval_every=2, callbacks=[calls])
    assert [("train_loss" in m) for _, _, m in calls.calls] == [True, False, True, False, True]
    assert "epoch_loss" in calls.calls[1][2]


def test_result_is_frozen_and_summarises():
    data = blobs(seed=15)
    result = train(mlp(seed=15), data, "adam", lr=0.01, epochs=2)
    assert isinstance(result, TrainResult)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.epochs = 3
    assert list(result.history.columns) == list(HISTORY_COLUMNS)
    assert result.history["lr"].eq(0.01).all()
    summary = result.summary()
    assert summary["epochs"] == 2 and summary["steps"] == 2 and summary["diverged"] is False
    assert summary["test_acc"] == result.history["test_acc"].iloc[-1]
    assert 0.0 <= result.train_acc <= 1.0 and result.seconds > 0


def test_tracker_plugs_into_the_callback_seam():
    from hesslens.training import Tracker

    data = blobs(n_train=30, seed=16, dtype=DT)
    per_epoch = Tracker(nn.CrossEntropyLoss(), (data.x_train, data.y_train), every=2, tol=1e-6)
    per_step = Tracker(nn.CrossEntropyLoss(), (data.x_train, data.y_train), every=3, unit="step", tol=1e-6)
    result = train(mlp(seed=16, dtype=DT), data, lr=0.1, batch_size=10, epochs=4, callbacks=[per_epoch, per_step])
    assert list(per_epoch.history["epoch"]) == [0, 2, 4]
    assert list(per_step.history["step"]) == [0, 3, 6, 9, 12] and result.steps == 12
    assert (per_epoch.history["lambda_max"] > 0).all()
    # Epoch-end rows carry the training metrics of that epoch.
    np.testing.assert_allclose(per_epoch.history["train_loss"], result.history["train_loss"].iloc[[0, 2, 4]])
