"""hl.train on what hesslens.datasets returns (the contract of issue 3, not a stand-in)."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from hesslens import datasets
from hesslens.training import train


def test_classification_dataset_with_a_conv_net_and_adahessian():
    full = datasets.load("digits_image", seed=0)
    # A slice keeps the double-backward passes of AdaHessian cheap; the structure is unchanged.
    data = dataclasses.replace(full, x_train=full.x_train[:300], y_train=full.y_train[:300])
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 6 * 6, data.num_classes))
    result = train(model, data, "adahessian", lr=0.05, batch_size=100, epochs=2, seed=0)
    h = result.history
    assert not result.diverged and h["train_loss"].iloc[-1] < h["train_loss"].iloc[0]
    assert 0 <= result.test_acc <= 1


def test_regression_dataset_and_from_tensors():
    data = datasets.load("diabetes", seed=0)
    torch.manual_seed(0)
    result = train(nn.Linear(data.info.n_features, 1), data, "sgd", lr=0.05, epochs=20)
    assert result.train_acc is None and result.train_loss < result.history["train_loss"].iloc[0]

    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 2, generator=g)
    y = (x.sum(1) > 0).long()
    own = datasets.Dataset.from_tensors(x[:30], y[:30], x[30:], y[30:], task="classification", name="own")
    torch.manual_seed(0)
    result = train(nn.Linear(2, 2), own, "sam", lr=0.5, until_train_acc=0.9, max_epochs=100)
    assert result.reached_target and np.isfinite(result.test_loss)
