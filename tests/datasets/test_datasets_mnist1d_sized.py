"""Sized MNIST-1D sets (``mnist1d_n<N>``) and exact test-set sizes (``load(..., n_test=)``)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from _datasets_fixtures import no_network  # noqa: F401 - autouse: these tests run offline
from hesslens import datasets
from hesslens.datasets import registry
from hesslens.datasets.core import split_indices
from hesslens.errors import InvalidInputError


def _generator(num_samples: int | None = None):
    """The mnist1d package's generator called directly, pooled like hesslens pools it."""
    from mnist1d.data import get_dataset_args, make_dataset

    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        args = get_dataset_args()
        if num_samples is not None:
            args.num_samples = num_samples
        data = make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return np.concatenate([data["x"], data["x_test"]]), np.concatenate([data["y"], data["y_test"]])


def test_mnist1d_is_unchanged():
    """``mnist1d`` is still the generator's default output (untouched args), split 3750/1250."""
    x, y = _generator()
    _, raw = registry.raw("mnist1d")
    assert raw.x.dtype == np.float64 and raw.x.shape == (5000, 1, 40)
    assert np.array_equal(raw.x[:, 0, :], x.astype(np.float64)) and np.array_equal(raw.y, y.astype(np.int64))
    ds = datasets.load("mnist1d", seed=0)
    assert (ds.n_train, ds.n_test) == (3750, 1250)
    assert torch.equal(ds.x_train, datasets.load("mnist1d", seed=0, test_fraction=0.25).x_train)
    # The split of the committed behaviour: the default 1/4 fraction through split_indices.
    train, test = split_indices(raw.y, "classification", 0, 0.25)
    assert torch.equal(ds.y_test, torch.as_tensor(raw.y[test]))
    assert torch.equal(ds.y_train, torch.as_tensor(raw.y[train]))
    assert registry.resolve("mnist1d_n5000") is registry.resolve("mnist1d")
    assert datasets.info("mnist1d_n5000").name == "mnist1d"


def test_sized_mnist1d_for_the_sharpness_study():
    """13,750 signals split 3,750 / 10,000, from the generator only, offline and deterministic."""
    random.seed(7)
    np.random.seed(8)
    expect = (random.random(), np.random.rand())
    random.seed(7)
    np.random.seed(8)
    registry.clear_cache()
    ds = datasets.load("mnist1d_n13750", seed=0, n_test=10000)
    assert (random.random(), np.random.rand()) == expect  # the caller's global streams are untouched
    assert (ds.n_train, ds.n_test, ds.input_shape, ds.num_classes) == (3750, 10000, (1, 40), 10)
    assert ds.name == "mnist1d_n13750" and ds.info.source == "mnist1d" and ds.info.n_samples == 13750
    assert np.array_equal(np.bincount(ds.y_test.numpy()), np.full(10, 1000))  # stratified
    assert np.array_equal(np.bincount(ds.y_train.numpy()), np.full(10, 375))

    x, y = _generator(13750)
    _, raw = registry.raw("mnist1d_n13750")
    assert np.array_equal(raw.x[:, 0, :], x.astype(np.float64)) and np.array_equal(raw.y, y.astype(np.int64))
    again = datasets.load("mnist1d_n13750", seed=0, n_test=10000)
    assert torch.equal(again.x_train, ds.x_train) and torch.equal(again.y_test, ds.y_test)
    other = datasets.load("mnist1d_n13750", seed=1, n_test=10000)
    assert not torch.equal(other.y_test, ds.y_test)
    assert "mnist1d_n13750" not in datasets.names()  # loadable, like off-grid synthetic members


@pytest.mark.parametrize("name", ["mnist1d_n13751", "mnist1d_n10", "mnist1d_n0"])
def test_sized_mnist1d_refuses_counts_the_generator_cannot_make(name):
    with pytest.raises(InvalidInputError, match="multiple of 10"):
        datasets.load(name)


def test_n_test_gives_an_exact_stratified_test_set():
    ds = datasets.load("iris", seed=3, n_test=50)
    assert (ds.n_train, ds.n_test) == (100, 50)
    assert sorted(np.bincount(ds.y_test.numpy()).tolist()) == [16, 17, 17]  # 3 classes of 50: stratified
    assert torch.equal(ds.x_test, datasets.load("iris", seed=3, n_test=50).x_test)
    # n_test equal to the default fraction's count gives the default split.
    default = datasets.load("iris", seed=3)
    same = datasets.load("iris", seed=3, n_test=default.n_test)
    assert torch.equal(default.x_train, same.x_train) and torch.equal(default.y_test, same.y_test)


@pytest.mark.parametrize("n_test", [0, 150, 151, -1, 2.5, True, "10"])
def test_bad_n_test(n_test):
    with pytest.raises(InvalidInputError, match="n_test"):
        datasets.load("iris", n_test=n_test)


def test_n_test_and_test_fraction_are_exclusive():
    with pytest.raises(InvalidInputError, match="not both"):
        datasets.load("iris", test_fraction=0.3, n_test=40)
