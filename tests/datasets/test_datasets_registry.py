"""Every registered dataset: loads offline, matches its info, is split and standardised as documented.

References are recomputed here from the raw arrays with plain numpy (mean and population std over
the training rows), so a wrong statistic, a leak of test rows into the statistics, or a split that
depends on anything but the seed makes a test fail.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from hesslens import datasets
from hesslens.datasets import real, registry
from hesslens.datasets.core import DEFAULT_TEST_FRACTION, split_indices
from hesslens.errors import InvalidInputError

from _datasets_fixtures import isolated_registry, no_network  # noqa: F401  (pytest fixtures)

ALL = datasets.names()


def _reference(raw_x: np.ndarray, train: np.ndarray, test: np.ndarray):
    """(x_train, x_test) standardised with the training rows' mean and std (std 0 → divisor 1)."""
    flat = raw_x.reshape(len(raw_x), -1)
    mu = flat[train].mean(axis=0)
    sd = flat[train].std(axis=0)
    sd = np.where(sd == 0, 1.0, sd)
    return (flat[train] - mu) / sd, (flat[test] - mu) / sd


@pytest.mark.parametrize("name", ALL)
def test_dataset_loads_and_matches_its_info(name):
    i = datasets.info(name)
    ds = datasets.load(name, seed=0)
    assert ds.info == i and i.name == name
    n_test = math.ceil(DEFAULT_TEST_FRACTION * i.n_samples)
    assert (ds.n_train, ds.n_test) == (i.n_samples - n_test, n_test)
    assert i.n_features == math.prod(i.input_shape)
    for x, y, n in ((ds.x_train, ds.y_train, ds.n_train), (ds.x_test, ds.y_test, ds.n_test)):
        assert x.dtype == torch.float32 and tuple(x.shape) == (n, *i.input_shape)
        assert torch.isfinite(x).all()
        if i.task == "classification":
            assert y.dtype == torch.int64 and tuple(y.shape) == (n,)
            assert int(y.min()) >= 0 and int(y.max()) < i.n_classes
        else:
            assert i.n_classes is None
            assert y.dtype == torch.float32 and tuple(y.shape) == (n, 1)
            assert torch.isfinite(y).all()
    if i.task == "classification":
        # Every class occurs in the data, and a stratified split keeps each class's share on both sides.
        _, raw = registry.raw(name)
        counts = np.bincount(raw.y, minlength=i.n_classes)
        assert (counts > 0).all() and len(counts) == i.n_classes
        test_counts = np.bincount(ds.y_test.numpy(), minlength=i.n_classes)
        assert np.all(np.abs(test_counts - counts * n_test / i.n_samples) <= 1.0 + 1e-9)


@pytest.mark.parametrize("name", ALL)
def test_standardised_with_training_statistics_only(name):
    entry, raw = registry.raw(name)
    ds = datasets.load(name, seed=2)
    train, test = split_indices(raw.y, raw.task, 2)
    assert len(np.intersect1d(train, test)) == 0
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(len(raw.y)))
    want_train, want_test = _reference(raw.x, train, test)
    got_train = ds.x_train.reshape(ds.n_train, -1).double().numpy()
    got_test = ds.x_test.reshape(ds.n_test, -1).double().numpy()
    # float32 rounding of standardised values: |error| ≤ a few ulps of max(1, |x|).
    np.testing.assert_allclose(got_train, want_train, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(got_test, want_test, rtol=1e-6, atol=1e-5)
    # Hence every training feature has mean 0 and std 1, or is constant (std 0, centred to 0).
    mean, std = got_train.mean(axis=0), got_train.std(axis=0)
    assert np.all(np.abs(mean) < 1e-5)
    assert np.all((np.abs(std - 1) < 1e-4) | ((std == 0) & (mean == 0)))
    if raw.task == "classification":
        assert np.array_equal(ds.y_train.numpy(), raw.y[train])
        assert np.array_equal(ds.y_test.numpy(), raw.y[test])
    else:
        mu, sd = raw.y[train].mean(), raw.y[train].std()
        np.testing.assert_allclose(ds.y_train.double().numpy()[:, 0], (raw.y[train] - mu) / sd, rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(ds.y_test.double().numpy()[:, 0], (raw.y[test] - mu) / sd, rtol=1e-6, atol=1e-5)
        assert ds.scaling.y_mean == pytest.approx(mu) and ds.scaling.y_std == pytest.approx(sd)


@pytest.mark.parametrize("name", ALL)
def test_split_is_a_function_of_the_seed(name):
    a, b, c = datasets.load(name, seed=5), datasets.load(name, seed=5), datasets.load(name, seed=6)
    for field in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    _, raw = registry.raw(name)
    test5 = set(split_indices(raw.y, raw.task, 5)[1].tolist())
    test6 = set(split_indices(raw.y, raw.task, 6)[1].tolist())
    assert test5 != test6
    assert not torch.equal(a.y_test, c.y_test) or not torch.equal(a.x_test, c.x_test)


def test_registry_size_and_sources():
    assert len(ALL) >= 37 and ALL == sorted(ALL)
    real_names = [n for n in ALL if datasets.info(n).source != "synthetic"]
    assert len(real_names) >= 8
    assert {datasets.info(n).source for n in real_names} >= {"sklearn", "statsmodels", "mnist1d"}
    assert set(datasets.names("sklearn")) >= {"iris", "wine", "breast_cancer", "digits", "diabetes"}
    synthetic = [datasets.info(n) for n in datasets.names("synthetic")]
    assert {i.task for i in synthetic} == {"classification", "regression"}
    assert len({i.n_features for i in synthetic}) >= 4 and len({i.n_classes for i in synthetic}) >= 4


def test_image_shaped_data():
    assert datasets.info("mnist1d").input_shape == (1, 40) and datasets.info("mnist1d").n_classes == 10
    assert datasets.info("digits").input_shape == (64,)
    img, flat = datasets.load("digits_image", seed=3), datasets.load("digits", seed=3)
    assert img.info.input_shape == (1, 8, 8)
    # Same rows, same split, same per-pixel standardisation: only the shape differs.
    assert torch.equal(img.x_train.reshape(img.n_train, 64), flat.x_train)
    assert torch.equal(img.y_test, flat.y_test)


def test_mnist1d_comes_from_the_generator_and_leaves_global_rngs_alone():
    random.seed(123)
    np.random.seed(321)
    expect_py, expect_np = random.random(), np.random.rand()
    random.seed(123)
    np.random.seed(321)
    fresh = real._mnist1d()  # the generator seeds the global RNGs internally
    assert (random.random(), np.random.rand()) == (expect_py, expect_np)
    _, cached = registry.raw("mnist1d")
    assert np.array_equal(fresh.x, cached.x) and np.array_equal(fresh.y, cached.y)
    assert fresh.x.shape == (5000, 1, 40) and np.array_equal(np.bincount(fresh.y), np.full(10, 500))


def test_unknown_name_lists_close_matches():
    with pytest.raises(InvalidInputError, match=r"unknown dataset 'irsi'.*'iris'"):
        datasets.load("irsi")
    with pytest.raises(InvalidInputError, match=r"'breast_cancer'"):
        datasets.info("breast_cancr")
    with pytest.raises(InvalidInputError, match="unknown dataset 'zzzzzz'.*names()"):
        datasets.load("zzzzzz")


def test_bad_arguments():
    for seed in (-1, 1.5, "0", True):
        with pytest.raises(InvalidInputError, match="seed"):
            datasets.load("iris", seed=seed)
    with pytest.raises(InvalidInputError, match="test_fraction"):
        datasets.load("iris", test_fraction=1.0)
    with pytest.raises(InvalidInputError, match="string"):
        datasets.load(3)


def test_raw_cache_is_read_only_and_loads_do_not_share_memory():
    _, raw = registry.raw("iris")
    with pytest.raises(ValueError):
        raw.x[0, 0] = 1.0
    a = datasets.load("iris")
    a.x_train.add_(100.0)
    assert torch.all(datasets.load("iris").x_train.abs() < 100)


def test_unstandardised_load_keeps_raw_values():
    _, raw = registry.raw("diabetes")
    ds = datasets.load("diabetes", seed=4, standardize=False)
    train, _ = split_indices(raw.y, "regression", 4)
    assert ds.scaling is None
    np.testing.assert_allclose(ds.y_train.double().numpy()[:, 0], raw.y[train], rtol=1e-6)
