"""Small problems for the training tests, built without hesslens.datasets.

``ToyData`` has exactly the attributes ``hl.train`` relies on (x_train, y_train, x_test, y_test,
info.task, info.n_classes), so these tests also pin down the duck-typed dataset contract.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ToyInfo:
    task: str
    n_classes: int | None


@dataclass(frozen=True)
class ToyData:
    info: ToyInfo
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor | None
    y_test: torch.Tensor | None


def blobs(n_train=96, n_test=48, d=4, classes=3, seed=0, dtype=torch.float32, spread=1.0) -> ToyData:
    """Gaussian blobs around random centres: separable enough to train in a few epochs."""
    g = torch.Generator().manual_seed(seed)
    centres = 2.0 * torch.randn(classes, d, generator=g)
    n = n_train + n_test
    y = torch.arange(n) % classes
    x = centres[y] + spread * torch.randn(n, d, generator=g)
    x = x.to(dtype)
    return ToyData(ToyInfo("classification", classes), x[:n_train], y[:n_train], x[n_train:], y[n_train:])


def linear_regression(n_train=64, n_test=32, d=3, seed=0, dtype=torch.float32, noise=0.1) -> ToyData:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, 1, generator=g)
    x = torch.randn(n_train + n_test, d, generator=g)
    y = x @ w + noise * torch.randn(n_train + n_test, 1, generator=g)
    x, y = x.to(dtype), y.to(dtype)
    return ToyData(ToyInfo("regression", None), x[:n_train], y[:n_train], x[n_train:], y[n_train:])


def mlp(d=4, hidden=8, out=3, seed=0, dtype=torch.float32, dropout=0.0, batchnorm=False) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Linear(d, hidden)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(hidden))
    layers.append(nn.Tanh())
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(hidden, out))
    return nn.Sequential(*layers).to(dtype)


def flat_params(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def set_flat_params(model: nn.Module, theta: torch.Tensor) -> None:
    with torch.no_grad():
        offset = 0
        for p in model.parameters():
            p.copy_(theta[offset:offset + p.numel()].view_as(p))
            offset += p.numel()
