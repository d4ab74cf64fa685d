"""The embedded default problem of ``hesslens analyze``: a small tanh MLP trained on scikit-learn's digits.

Nothing is downloaded: ``sklearn.datasets.load_digits`` ships with scikit-learn (1,797 8×8 images,
10 classes, 64 features with values 0–16). The problem is fully determined by ``seed``:

* split: a seeded permutation puts 80% of the images in the training set, 20% in the test set;
* features are standardised with the *training* mean and standard deviation (constant pixels,
  whose standard deviation is 0, are only centred);
* the MLP 64 → 16 → 10 with tanh (smooth, so its Hessian exists everywhere) is initialised from
  ``seed`` inside a forked RNG, leaving the caller's global random stream untouched;
* training is full-batch Adam on the mean cross-entropy for a fixed number of epochs, so there is
  no sampling order to reproduce.

Everything is float64: the default model then doubles as an exact reference (its Hessian-vector
products carry no float32 rounding), and a rebuilt model matches the one ``hesslens analyze``
analysed to the last bits on the same machine.

The analysis set is the training set, one batch: the Hessian of the training loss is the
curvature the optimiser saw. The functions :func:`build_model` and :func:`analysis_data` have the
signatures ``--model`` and ``--data`` expect, so a saved ``model.pt`` can be re-analysed with::

    hesslens analyze --model hesslens.defaults:build_model --checkpoint model.pt \\
                     --data hesslens.defaults:analysis_data
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

DATASET = "scikit-learn digits (load_digits)"
HIDDEN = 16
EPOCHS = 200
LEARNING_RATE = 1e-2
TEST_FRACTION = 0.2
DTYPE = torch.float64


@dataclass(frozen=True)
class DigitsSplit:
    """Standardised float64 features and int64 labels of the seeded train/test split."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


@dataclass(frozen=True)
class DefaultProblem:
    """The trained default model, its analysis batch, its criterion and a description."""

    model: nn.Module
    data: tuple[torch.Tensor, torch.Tensor]
    loss_fn: nn.Module
    split: DigitsSplit
    info: dict[str, Any] = field(default_factory=dict)


def digits_split(seed: int = 0) -> DigitsSplit:
    """The seeded 80/20 split of the digits, standardised with the training statistics."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(TEST_FRACTION * len(y)))
    test, train = order[:n_test], order[n_test:]
    mean = x[train].mean(axis=0)
    std = x[train].std(axis=0)
    # Pixels that are blank in every training image have std 0: centre them, do not divide by 0.
    std = np.where(std > 0, std, 1.0)
    z = (x - mean) / std

    def as_tensors(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.tensor(z[idx], dtype=DTYPE), torch.tensor(y[idx], dtype=torch.int64)

    return DigitsSplit(*as_tensors(train), *as_tensors(test))


def build_model(seed: int = 0) -> nn.Module:
    """The untrained 64 → 16 → 10 tanh MLP, initialised from ``seed`` without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(64, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, 10))
    return model.to(DTYPE)


def analysis_data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The analysis batch (training inputs, labels) of the default problem."""
    split = digits_split(seed)
    return split.x_train, split.y_train


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(dim=1) == y).double().mean())


@contextlib.contextmanager
def _single_thread():
    """Run intra-op work on one thread, then restore the caller's setting.

    The matrices here are tiny (1438×64 by 64×16): a second thread buys nothing, and on a busy
    machine the threads' synchronisation made training ten times slower. One thread also makes the
    trained bits independent of the machine's core count.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: nn.Module, epochs: int) -> float:
    """Full-batch Adam; returns the training loss after the last step. Deterministic: no sampling."""
    opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    model.train()
    with _single_thread():
        for _ in range(epochs):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
    model.zero_grad(set_to_none=True)
    model.eval()
    with torch.no_grad():
        return float(loss_fn(model(x), y))


def default_problem(seed: int = 0, epochs: int = EPOCHS) -> DefaultProblem:
    """Train the default model (under a second on 2 cores) and describe it.

    The same ``seed`` and ``epochs`` give the same parameters, so a test can rebuild exactly the
    model the CLI analysed.
    """
    split = digits_split(seed)
    model = build_model(seed)
    loss_fn = nn.CrossEntropyLoss()
    t0 = time.perf_counter()
    final_loss = _train(model, split.x_train, split.y_train, loss_fn, epochs)
    seconds = time.perf_counter() - t0
    info = {
        "name": f"MLP 64-{HIDDEN}-10 (tanh)",
        "dataset": DATASET,
        "parameters": sum(p.numel() for p in model.parameters()),
        "dtype": str(DTYPE).replace("torch.", ""),
        "train_samples": len(split.y_train),
        "test_samples": len(split.y_test),
        "train_accuracy": accuracy(model, split.x_train, split.y_train),
        "test_accuracy": accuracy(model, split.x_test, split.y_test),
        "train_loss": final_loss,
        "training": f"full-batch Adam, lr={LEARNING_RATE}, {epochs} epochs, seed {seed}",
        "train_seconds": seconds,
        "seed": seed,
    }
    return DefaultProblem(model, (split.x_train, split.y_train), loss_fn, split, info)
