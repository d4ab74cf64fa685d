"""The Dataset structure: from_tensors, batches, splitting edge cases, imputation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import hesslens as hl
from hesslens import datasets
from hesslens.datasets import Dataset, registry
from hesslens.datasets.core import prepare, split_indices
from hesslens.errors import InvalidInputError

from conftest import concatenated_objective, reference_hessian
from _datasets_fixtures import isolated_registry, no_network  # noqa: F401  (pytest fixtures)


@pytest.mark.parametrize("name", ["wine", "engel", "digits_image"])
def test_from_tensors_round_trip(name):
    ds = datasets.load(name, seed=1)
    again = Dataset.from_tensors(ds.x_train, ds.y_train, ds.x_test, ds.y_test, task=ds.task, name=name,
                                 n_classes=ds.num_classes)
    for field in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(again, field), getattr(ds, field))
    i, j = ds.info, again.info
    assert (j.name, j.task, j.n_samples, j.n_features, j.n_classes, j.input_shape) == \
           (i.name, i.task, i.n_samples, i.n_features, i.n_classes, i.input_shape)
    assert j.source == "user" and again.scaling is None
    # The task is inferred from y's dtype when not given.
    assert Dataset.from_tensors(ds.x_train, ds.y_train, ds.x_test, ds.y_test).task == ds.task


@pytest.mark.parametrize("name", ["breast_cancer", "diabetes"])
def test_from_tensors_standardize_equals_load(name):
    _, raw = registry.raw(name)
    train, test = split_indices(raw.y, raw.task, 7)
    mine = Dataset.from_tensors(raw.x[train], raw.y[train], raw.x[test], raw.y[test], standardize=True)
    ds = datasets.load(name, seed=7)
    for field in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(mine, field), getattr(ds, field))


def test_from_tensors_validation():
    x, y = torch.zeros(4, 2), torch.tensor([0, 1, 0, 1])
    with pytest.raises(InvalidInputError, match="rows"):
        Dataset.from_tensors(x, y[:3], x, y)
    with pytest.raises(InvalidInputError, match="shape"):
        Dataset.from_tensors(x, y, torch.zeros(4, 3), y)
    with pytest.raises(InvalidInputError, match="n_classes=2"):
        Dataset.from_tensors(x, y, x, torch.tensor([0, 1, 2, 0]), n_classes=2)
    with pytest.raises(InvalidInputError, match=">= 0"):
        Dataset.from_tensors(x, y, x, torch.tensor([0, -1, 0, 1]))
    with pytest.raises(InvalidInputError, match="task"):
        Dataset.from_tensors(x, y, x, y, task="ranking")
    with pytest.raises(InvalidInputError, match=r"\(N,\) or \(N, 1\)"):
        Dataset.from_tensors(x, torch.zeros(4, 2), x, torch.zeros(4, 2), task="regression")
    reg = Dataset.from_tensors(x.numpy(), np.arange(4.0), x, torch.arange(4.0))
    assert reg.task == "regression" and reg.y_train.shape == (4, 1) and reg.y_train.dtype == torch.float32


def test_batches_cover_the_training_set():
    ds = datasets.load("iris", seed=0)
    full = ds.train_batches()
    assert len(full) == 1 and torch.equal(full[0][0], ds.x_train)
    parts = ds.train_batches(50)
    assert [len(b[0]) for b in parts] == [50, 50, 12]
    assert torch.equal(torch.cat([b[0] for b in parts]), ds.x_train)
    shuffled = ds.train_batches(50, shuffle=True, seed=3)
    xs = torch.cat([b[0] for b in shuffled])
    assert not torch.equal(xs, ds.x_train)
    assert torch.equal(xs.sort(dim=0).values, ds.x_train.sort(dim=0).values)  # a permutation of the rows
    again = torch.cat([b[0] for b in ds.train_batches(50, shuffle=True, seed=3)])
    assert torch.equal(xs, again)
    assert sum(len(b[1]) for b in ds.test_batches(10)) == ds.n_test
    with pytest.raises(InvalidInputError, match="batch_size"):
        ds.train_batches(0)


def test_batches_feed_a_hessian_operator():
    """Mini-batches of a Dataset are valid operator data: the operator, weighting batches n_b/N,
    reproduces torch.func.hessian of the mean loss over the whole training set."""
    ds = datasets.load("iris", seed=0)
    torch.manual_seed(0)
    model = nn.Linear(4, 3).double()
    loss = nn.CrossEntropyLoss()
    batches = [(x.double(), y) for x, y in ds.train_batches(40)]
    op = hl.HessianOperator(model, loss, batches, check_determinism=False, engine="streaming")
    assert op.data.total == ds.n_train
    expected = reference_hessian(model, concatenated_objective(loss, batches))
    assert torch.allclose(torch.as_tensor(op.dense()), expected, atol=1e-10)


def test_split_without_stratification_when_a_class_is_too_small():
    y = np.array([0] * 10 + [1])  # class 1 has a single row: stratification is impossible
    train, test = split_indices(y, "classification", seed=0)
    assert len(test) == 3 and len(np.intersect1d(train, test)) == 0
    with pytest.raises(InvalidInputError, match="cannot be split"):
        split_indices(np.array([0]), "classification", seed=0)


def test_missing_values_are_imputed_with_training_means():
    x = np.array([[1.0], [np.nan], [3.0], [5.0], [np.nan], [7.0], [9.0], [11.0]])
    y = np.arange(8.0)
    info = datasets.DatasetInfo("t", "regression", "user", 8, 1, None, (1,), "")
    ds = prepare(info, x, y, seed=0, test_fraction=0.25, standardize=False)
    train, test = split_indices(y, "regression", 0)
    fill = np.nanmean(x[train, 0])
    np.testing.assert_allclose(ds.x_train.double().numpy()[:, 0], np.where(np.isnan(x[train, 0]), fill, x[train, 0]),
                               rtol=1e-6)
    np.testing.assert_allclose(ds.x_test.double().numpy()[:, 0], np.where(np.isnan(x[test, 0]), fill, x[test, 0]),
                               rtol=1e-6)
