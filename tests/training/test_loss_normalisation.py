"""hl.train(loss_normalisation=...): "mean" (default, per-batch mean) and "nominal" (the authors'
sum over the batch divided by the nominal batch size B, so a short last batch is weighted |b|/B)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from _training_cases import blobs, flat_params, mlp
from hesslens.errors import InvalidInputError
from hesslens.training import train

DT = torch.float64
N, B, LR, SEED = 22, 8, 0.3, 3  # batches of 8, 8 and a short last one of 6


def _manual_epoch(model: nn.Module, data, normalisation: str, rho: float | None = None) -> list[torch.Tensor]:
    """One epoch of plain SGD (or SAM with radius ``rho``) by hand, in hl.train's data order;
    the parameters after every step."""
    params = list(model.parameters())
    order = torch.randperm(N, generator=torch.Generator().manual_seed(SEED))

    def objective(xb, yb):
        if normalisation == "nominal":
            return nn.functional.cross_entropy(model(xb), yb, reduction="sum") / B
        return nn.functional.cross_entropy(model(xb), yb)

    after = []
    for start in range(0, N, B):
        idx = order[start:start + B]
        xb, yb = data.x_train[idx], data.y_train[idx]
        grads = torch.autograd.grad(objective(xb, yb), params)
        if rho is not None:
            norm = float(torch.sqrt(sum((g ** 2).sum() for g in grads)))
            saved = [p.detach().clone() for p in params]
            with torch.no_grad():
                for p, g in zip(params, grads):
                    p += g * (rho / (norm + 1e-12))
            grads = torch.autograd.grad(objective(xb, yb), params)
            with torch.no_grad():
                for p, s in zip(params, saved):
                    p.copy_(s)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p -= LR * g
        after.append(flat_params(model).clone())
    return after


@pytest.mark.parametrize("optimizer,rho", [("sgd", None), ("sam", 0.05)])
def test_nominal_is_sum_over_nominal_batch_size_and_differs_from_mean_on_the_short_batch(optimizer, rho):
    data = blobs(n_train=N, n_test=6, seed=1, dtype=DT)
    model = mlp(seed=0, dtype=DT)
    manual_nominal, manual_mean = copy.deepcopy(model), copy.deepcopy(model)
    nominal = _manual_epoch(manual_nominal, data, "nominal", rho)
    mean = _manual_epoch(manual_mean, data, "mean", rho)
    # The two objectives coincide on the full batches and part only at the short last one.
    assert len(nominal) == 3
    for k in range(2):
        torch.testing.assert_close(nominal[k], mean[k], rtol=0, atol=1e-13)
    assert (nominal[2] - mean[2]).abs().max() > 1e-4

    kwargs = dict(batch_size=B, lr=LR, epochs=1, seed=SEED, rho=rho, progress=False)
    by_nominal = copy.deepcopy(model)
    train(by_nominal, data, optimizer, loss_normalisation="nominal", **kwargs)
    torch.testing.assert_close(flat_params(by_nominal), nominal[2], rtol=0, atol=1e-12)
    by_mean = copy.deepcopy(model)
    train(by_mean, data, optimizer, loss_normalisation="mean", **kwargs)
    torch.testing.assert_close(flat_params(by_mean), mean[2], rtol=0, atol=1e-12)
    by_default = copy.deepcopy(model)
    train(by_default, data, optimizer, **kwargs)
    assert torch.equal(flat_params(by_default), flat_params(by_mean))


@pytest.mark.parametrize("optimizer", ["sgd", "sam", "momentum"])
@pytest.mark.parametrize("batch_size", [None, 11, 100])  # full batch, B dividing N, B > N
def test_nominal_equals_mean_bit_for_bit_without_a_short_batch(optimizer, batch_size):
    data = blobs(n_train=N, n_test=6, seed=2, dtype=DT)
    model = mlp(seed=1, dtype=DT)
    runs = {}
    for normalisation in ("mean", "nominal"):
        m = copy.deepcopy(model)
        r = train(m, data, optimizer, batch_size=batch_size, lr=LR, epochs=3, seed=0,
                  loss_normalisation=normalisation, progress=False)
        runs[normalisation] = (flat_params(m), r.history)
    assert torch.equal(runs["mean"][0], runs["nominal"][0])
    assert runs["mean"][1].drop(columns="seconds").equals(runs["nominal"][1].drop(columns="seconds"))


def test_nominal_reports_batch_means():
    """The per-step loss reported to callbacks stays the batch mean under either option."""
    data = blobs(n_train=N, n_test=6, seed=1, dtype=DT)
    model = mlp(seed=0, dtype=DT)
    seen = {}
    for normalisation in ("mean", "nominal"):
        losses = []

        def on_step(m, *, epoch, step, metrics, _losses=losses):
            if step > 0:
                _losses.append(metrics["loss"])
        on_step.every_step = True
        train(copy.deepcopy(model), data, "sgd", batch_size=B, lr=LR, epochs=1, seed=SEED, progress=False,
              callbacks=[on_step], loss_normalisation=normalisation)
        seen[normalisation] = losses
    # Weights before each of the 3 steps agree bit for bit (only the last step's update differs).
    assert len(seen["mean"]) == 3 and seen["mean"] == seen["nominal"]


@pytest.mark.parametrize("bad", ["sum", "Mean", None, 1])
def test_loss_normalisation_is_validated(bad):
    data = blobs(n_train=N, n_test=6, seed=1, dtype=DT)
    with pytest.raises(InvalidInputError, match="loss_normalisation"):
        train(mlp(seed=0, dtype=DT), data, "sgd", batch_size=B, epochs=1, loss_normalisation=bad)
