"""MNIST-1D variants ``mnist1d_<param><value>…[_n<N>]``: other distortion parameters of the same generator,
offline, deterministic, same shape, and ``mnist1d`` itself unchanged."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from _datasets_fixtures import no_network  # noqa: F401 - autouse: these tests run offline
from hesslens import datasets
from hesslens.datasets import real, registry
from hesslens.errors import InvalidInputError


def _generator(**overrides):
    """The mnist1d package's generator called directly with ``overrides``, pooled like hesslens pools it."""
    from mnist1d.data import get_dataset_args, make_dataset

    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        args = get_dataset_args()
        for key, value in overrides.items():
            setattr(args, key, value)
        data = make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return np.concatenate([data["x"], data["x_test"]]), np.concatenate([data["y"], data["y_test"]])


def test_the_documented_defaults_are_the_package_defaults():
    from mnist1d.data import get_dataset_args

    args = get_dataset_args(as_dict=True)
    for _, argument, kind, default in real.MNIST1D_PARAMS:
        assert args[argument] == default and isinstance(args[argument], kind), argument
    assert args["template_len"] + args["padding"][1] == real.MNIST1D_PADDED_LENGTH


def test_a_noisier_variant_is_the_generator_with_that_argument_and_leaves_global_rngs_alone():
    random.seed(5)
    np.random.seed(6)
    expect = (random.random(), np.random.rand())
    random.seed(5)
    np.random.seed(6)
    registry.clear_cache()
    ds = datasets.load("mnist1d_iid0.1", seed=0)
    assert (random.random(), np.random.rand()) == expect
    assert ds.name == "mnist1d_iid0.1" and ds.info.source == "mnist1d"
    assert (ds.input_shape, ds.num_classes, ds.n_train, ds.n_test) == ((1, 40), 10, 3750, 1250)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    x, y = _generator(iid_noise_scale=0.1)
    _, raw = registry.raw("mnist1d_iid0.1")
    assert np.array_equal(raw.x[:, 0, :], x.astype(np.float64)) and np.array_equal(raw.y, y.astype(np.int64))
    # Deterministic: a fresh generation (cache cleared) gives the same tensors.
    registry.clear_cache()
    again = datasets.load("mnist1d_iid0.1", seed=0)
    assert torch.equal(again.x_train, ds.x_train) and torch.equal(again.y_test, ds.y_test)


def test_variant_differs_from_mnist1d_but_pairs_its_signals():
    base, noisy = datasets.load("mnist1d", seed=0), datasets.load("mnist1d_iid0.1", seed=0)
    assert base.x_train.shape == noisy.x_train.shape
    # Same random stream: same labels in the same order, so the same split; the signals differ.
    assert torch.equal(base.y_train, noisy.y_train) and torch.equal(base.y_test, noisy.y_test)
    assert not torch.equal(base.x_test, noisy.x_test)
    corr = np.corrcoef(base.x_test.reshape(-1).numpy(), noisy.x_test.reshape(-1).numpy())[0, 1]
    assert 0.5 < corr < 0.999
    # max_translation changes the stream: new signals, new labels order.
    _, moved = registry.raw("mnist1d_trans20_n200")
    _, sized = registry.raw("mnist1d_n200")
    assert moved.x.shape == sized.x.shape == (200, 1, 40) and not np.array_equal(moved.y, sized.y)


def test_mnist1d_and_the_sized_sets_stay_exactly_the_generator_defaults():
    x, y = _generator()
    _, raw = registry.raw("mnist1d")
    assert np.array_equal(raw.x[:, 0, :], x.astype(np.float64)) and np.array_equal(raw.y, y.astype(np.int64))
    # Parameters equal to their defaults are dropped: the name resolves to the default set itself.
    assert registry.resolve("mnist1d_shear0.75") is registry.resolve("mnist1d")
    assert registry.resolve("mnist1d_scale0.40_iid0.02").name == "mnist1d"
    assert datasets.info("mnist1d_trans48_n200").name == "mnist1d_n200"
    _, a = registry.raw("mnist1d_corr0.25_n200")
    _, b = registry.raw("mnist1d_n200")
    assert np.array_equal(a.x, b.x)


@pytest.mark.parametrize("name, canonical", [
    ("mnist1d_iid0.10", "mnist1d_iid0.1"), ("mnist1d_shear1.50_n200", "mnist1d_shear1.5_n200"),
    ("mnist1d_scale1_trans10_corr0_iid0.2_shear2", "mnist1d_scale1.0_trans10_corr0.0_iid0.2_shear2.0"),
    ("mnist1d_iid0.1_n5000", "mnist1d_iid0.1"),
])
def test_names_are_canonicalised(name, canonical):
    assert real.mnist1d_variant(name)[0] == canonical
    assert registry.resolve(name).name == canonical and registry.resolve(name).source == "mnist1d"


def test_variants_are_loadable_but_not_listed():
    assert not any(n.startswith("mnist1d_") for n in datasets.names())
    ds = datasets.load("mnist1d_shear3_n200", seed=1, n_test=50)
    assert (ds.n_train, ds.n_test, ds.input_shape, ds.num_classes) == (150, 50, (1, 40), 10)
    assert "shear_scale=3.0 (default 0.75)" in ds.info.description


@pytest.mark.parametrize("name, pattern", [
    ("mnist1d_trans0", "from 1 to 72"), ("mnist1d_trans73", "from 1 to 72"), ("mnist1d_scale2", r"\[0, 2\)"),
    ("mnist1d_iid0.1_n13751", "multiple of 10"), ("mnist1d_iid0.1_n10", "multiple of 10"),
])
def test_invalid_variant_parameters_are_refused(name, pattern):
    with pytest.raises(InvalidInputError, match=rf"{name}.*{pattern}"):
        datasets.load(name)


@pytest.mark.parametrize("name", ["mnist1d_shear-1", "mnist1d_shear1.5_iid0.1", "mnist1d_blur2", "mnist1d_iid"])
def test_misspelt_variants_are_unknown(name):
    # Wrong order, negative or unknown parameters do not spell a variant.
    with pytest.raises(InvalidInputError, match="unknown dataset"):
        datasets.load(name)
