"""Synthetic families: names, determinism, and that each noise parameter means what it says."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hesslens import datasets
from hesslens.datasets import registry, synthetic
from hesslens.errors import InvalidInputError

from _datasets_fixtures import isolated_registry, no_network  # noqa: F401  (pytest fixtures)


def test_grid_names_round_trip_through_the_parser():
    for name in synthetic.grid_names():
        canonical, _ = synthetic.resolve(name)
        assert canonical == name
        assert datasets.info(name).source == "synthetic"


def test_any_member_loads_and_names_are_canonicalised():
    ds = datasets.load("teacher_cls_d7_c3_noise0.05_n300", seed=0)
    assert ds.info.name == "teacher_cls_d7_c3_noise0.05_n300"
    assert (ds.info.n_samples, ds.info.n_features, ds.num_classes) == (300, 7, 3)
    # Spelling variants of the same parameters are the same dataset.
    a = datasets.load("synth_cls_d10_c2_noise0.10", seed=1)
    b = datasets.load("synth_cls_d10_c2_noise0.1", seed=1)
    assert a.info.name == "synth_cls_d10_c2_noise0.1"
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert datasets.info("moons_sd0.2_n2000").name == "moons_sd0.2"
    assert datasets.info("friedman1_noise0").name == "friedman1_noise0.0"


def test_data_depend_on_the_name_only():
    name = "blobs_d3_c4_sd1.5_n400"
    first = synthetic.resolve(name)[1]()
    second = synthetic.resolve(name)[1]()  # an independent second generation
    assert np.array_equal(registry.raw(name)[1].x, first.x)
    assert np.array_equal(first.x, second.x) and np.array_equal(first.y, second.y)
    other = registry.raw("blobs_d3_c4_sd1.5_n401")[1]
    assert not np.array_equal(first.x[:400], other.x[:400])


@pytest.mark.parametrize("name, match", [
    ("synth_cls_d10_c1_noise0.1", "at least 2"),
    ("synth_cls_d10_c2_noise1.0", r"\[0, 1\)"),
    ("teacher_cls_d0_c2_noise0.1", "d must be"),
    ("synth_cls_d2_c10_noise0.1", "informative"),
    ("moons_sd0.1_n5", "minimum"),
    ("blobs_d2_c10_sd1.0_n30", "too few"),
])
def test_invalid_parameters_name_the_dataset(name, match):
    with pytest.raises(InvalidInputError, match=match) as err:
        datasets.load(name)
    assert repr(name) in str(err.value)


def test_flip_labels_flips_the_stated_fraction_to_other_classes():
    n, c, p = 40_000, 5, 0.3
    y = np.repeat(np.arange(c), n // c)
    flipped = synthetic.flip_labels(y, c, p, seed=11)
    changed = flipped != y
    # Binomial(n, p): 5 standard deviations.
    assert abs(changed.mean() - p) < 5 * math.sqrt(p * (1 - p) / n)
    # A flipped label is uniform over the c − 1 other classes.
    shift = (flipped[changed] - y[changed]) % c
    counts = np.bincount(shift, minlength=c)
    assert counts[0] == 0
    m, q = changed.sum(), 1 / (c - 1)
    assert np.all(np.abs(counts[1:] - m * q) < 5 * math.sqrt(m * q * (1 - q)))


@pytest.mark.parametrize("make, params", [
    (synthetic._synth_cls, dict(d=12, c=3)),
    (synthetic._teacher_cls, dict(d=12, c=3)),
])
def test_label_noise_changes_only_labels(make, params):
    clean = make(n=4000, seed=5, noise=0.0, **params)
    noisy = make(n=4000, seed=5, noise=0.25, **params)
    assert np.array_equal(clean.x, noisy.x)
    frac = np.mean(clean.y != noisy.y)
    assert abs(frac - 0.25) < 5 * math.sqrt(0.25 * 0.75 / 4000)


@pytest.mark.parametrize("make, params", [
    (synthetic._synth_reg, dict(d=8)),
    (synthetic._teacher_reg, dict(d=8)),
    (synthetic._friedman(1), {}),
    (synthetic._friedman(3), {}),
])
def test_regression_noise_is_a_noise_to_signal_ratio(make, params):
    n, r = 4000, 0.4
    clean = make(n=n, seed=9, noise=0.0, **params)
    noisy = make(n=n, seed=9, noise=r, **params)
    assert np.array_equal(clean.x, noisy.x)
    ratio = np.std(noisy.y - clean.y) / np.std(clean.y)
    # The sample std of n Gaussians has relative standard error ≈ 1/√(2n).
    assert abs(ratio / r - 1) < 5 / math.sqrt(2 * n)


@pytest.mark.parametrize("d, c, n", [(10, 2, 2000), (20, 5, 2000), (3, 10, 1000), (1, 4, 500), (50, 10, 2000)])
def test_teacher_classes_are_balanced(d, c, n):
    raw = synthetic._teacher_cls(n=n, seed=synthetic.data_seed(f"check{d}{c}"), d=d, c=c, noise=0.0)
    counts = np.bincount(raw.y, minlength=c)
    assert np.all(np.abs(counts - n / c) <= 0.02 * n / c)


def test_balance_biases_on_a_planted_imbalance():
    """Logits favouring class 0 by a constant: the biases must undo it (up to the tolerance)."""
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((6000, 3))
    logits[:, 0] += 2.0
    assert np.bincount(np.argmax(logits, 1))[0] > 4000
    counts = np.bincount(np.argmax(logits + synthetic.balance_biases(logits), 1), minlength=3)
    assert np.all(np.abs(counts - 2000) <= 0.02 * 2000)


def test_geometric_noise_is_input_noise():
    """moons/circles with sd 0 lie exactly on their curves; with sd s the radial spread is ≈ s."""
    clean = synthetic._circles(n=2000, seed=1, sd=0.0)
    radius = np.linalg.norm(clean.x, axis=1)
    assert np.allclose(np.where(clean.y == 0, radius, radius / 0.5), 1.0)
    noisy = synthetic._circles(n=2000, seed=1, sd=0.05)
    outer = np.linalg.norm(noisy.x[noisy.y == 0], axis=1) - 1.0
    assert abs(outer.std() / 0.05 - 1) < 0.15
