"""hesslens.datasets.shift: exact counts, the documented streams, independence of the splits, the
original left alone, and bad arguments refused by name."""

from __future__ import annotations

import math
import types

import numpy as np
import pytest
import torch

from _datasets_fixtures import no_network  # noqa: F401 - autouse: these tests run offline
from hesslens import datasets
from hesslens.datasets import Dataset, shift
from hesslens.datasets.shifts import KINDS, shift_rng
from hesslens.errors import InvalidInputError


@pytest.fixture(scope="module")
def digits():
    return datasets.load("digits_image", seed=0)  # 1×8×8 inputs, 10 classes


def _snapshot(ds):
    return {f: getattr(ds, f).clone() for f in ("x_train", "y_train", "x_test", "y_test")}


def _same(ds, snap) -> bool:
    return all(torch.equal(getattr(ds, f), v) for f, v in snap.items())


@pytest.mark.parametrize("kind, level", [("noise", 0.3), ("corruption", 0.25), ("label", 0.2), ("permute", 1.0)])
def test_structure_is_kept_and_the_original_untouched(digits, kind, level):
    snap = _snapshot(digits)
    out = shift(digits, kind, level, seed=1)
    assert isinstance(out, Dataset) and out is not digits
    assert out.info is digits.info and out.scaling is digits.scaling
    for f in snap:
        a, b = getattr(out, f), getattr(digits, f)
        assert a.shape == b.shape and a.dtype == b.dtype
        assert a.data_ptr() != b.data_ptr()  # new tensors: editing the result cannot reach the original
    assert _same(digits, snap)
    changed = [f for f in snap if not torch.equal(getattr(out, f), snap[f])]
    assert changed == (["x_train", "x_test"] if kind in ("noise", "corruption") else ["y_train", "y_test"])


def test_noise_is_the_documented_draw(digits):
    out = shift(digits, "noise", 0.5, seed=3)
    for split in ("train", "test"):
        x = getattr(digits, f"x_{split}")
        xi = shift_rng(3, "noise", split).standard_normal(tuple(x.shape))
        expected = torch.as_tensor(x.double().numpy() + 0.5 * xi).float()
        assert torch.equal(getattr(out, f"x_{split}"), expected)
        assert shift_rng(3, "noise", split).bit_generator.state == \
            np.random.default_rng([3, KINDS.index("noise"), ("train", "test").index(split)]).bit_generator.state
    d = (out.x_train - digits.x_train).double()
    assert abs(float(d.std()) - 0.5) < 0.01 and abs(float(d.mean())) < 0.01
    assert torch.equal(shift(digits, "noise", 0.0).x_test, digits.x_test)


@pytest.mark.parametrize("level", [0.0, 0.1, 0.5, 0.97, 1.0])
def test_corruption_zeroes_an_exact_count_of_features_per_sample(level):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 2, 3, 5, generator=g) + 10.0  # no zeros to begin with
    ds = Dataset.from_tensors(x, torch.arange(50) % 3, x[:20] - 20.0, torch.arange(20) % 3, name="toy")
    out = shift(ds, "corruption", level, seed=2)
    m = round(level * 30)
    for split in ("train", "test"):
        before, after = getattr(ds, f"x_{split}").reshape(-1, 30), getattr(out, f"x_{split}").reshape(-1, 30)
        zeroed = after == 0
        assert (zeroed.sum(1) == m).all()
        assert torch.equal(after[~zeroed], before[~zeroed])  # the others are untouched
        # Which ones: the m smallest of the documented uniform draws of each row.
        u = shift_rng(2, "corruption", split).random((len(before), 30))
        expected = np.zeros((len(before), 30), bool)
        np.put_along_axis(expected, np.argsort(u, axis=1, kind="stable")[:, :m], True, axis=1)
        assert np.array_equal(zeroed.numpy(), expected)


def test_corruption_picks_features_uniformly():
    x = torch.rand(2000, 1, 40, generator=torch.Generator().manual_seed(1)) + 1.0
    ds = Dataset.from_tensors(x, torch.arange(2000) % 2, x[:10], torch.arange(10) % 2, name="signals")
    freq = (shift(ds, "corruption", 0.25, seed=4, splits=("train",)).x_train == 0).double().mean(0).reshape(-1)
    # Each feature is zeroed with probability 1/4 (exactly 10 of 40 per sample): binomial spread over 2000 rows.
    assert (freq - 0.25).abs().max() < 5 * math.sqrt(0.25 * 0.75 / 2000)


@pytest.mark.parametrize("level", [0.0, 0.13, 0.5, 1.0])
def test_label_changes_an_exact_count_of_labels_to_other_classes(digits, level):
    out = shift(digits, "label", level, seed=5)
    for split in ("train", "test"):
        y, new = getattr(digits, f"y_{split}"), getattr(out, f"y_{split}")
        changed = new != y
        assert int(changed.sum()) == round(level * len(y))  # every chosen label differs from the original
        assert int(new.min()) >= 0 and int(new.max()) < 10
        rng = shift_rng(5, "label", split)
        rows = rng.permutation(len(y))[:round(level * len(y))]
        r = rng.integers(1, 10, size=len(rows))
        expected = y.clone()
        expected[torch.as_tensor(rows)] = (y[torch.as_tensor(rows)] + torch.as_tensor(r)) % 10
        assert torch.equal(new, expected)


def test_label_draws_the_other_classes_uniformly(digits):
    out = shift(digits, "label", 1.0, seed=6, splits=("train",))
    offsets = ((out.y_train - digits.y_train) % 10).numpy()
    counts = np.bincount(offsets, minlength=10)
    assert counts[0] == 0
    expected = len(offsets) / 9
    assert (np.abs(counts[1:] - expected) < 5 * math.sqrt(expected)).all()


def test_permute_is_a_new_task_and_its_fraction_is_exact(digits):
    out = shift(digits, "permute", 1.0)
    assert torch.equal(out.y_train, (digits.y_train + 1) % 10) and torch.equal(out.y_test, (digits.y_test + 1) % 10)
    assert torch.equal(shift(digits, "permute", 1.0, seed=9).y_test, out.y_test)  # level 1 draws nothing that matters
    part = shift(digits, "permute", 0.3, seed=7)
    moved = part.y_test != digits.y_test
    assert int(moved.sum()) == round(0.3 * digits.n_test)
    assert torch.equal(part.y_test[moved], (digits.y_test[moved] + 1) % 10)


def test_splits_are_independent_and_selectable(digits):
    both = shift(digits, "noise", 1.0, seed=8)
    only_test = shift(digits, "noise", 1.0, seed=8, splits=("test",))
    only_train = shift(digits, "noise", 1.0, seed=8, splits="train")
    assert torch.equal(only_test.x_test, both.x_test) and torch.equal(only_test.x_train, digits.x_train)
    assert torch.equal(only_train.x_train, both.x_train) and torch.equal(only_train.x_test, digits.x_test)
    # Independent streams: the test noise is not the beginning of the training noise.
    d_train = (both.x_train - digits.x_train).reshape(-1)[:1000]
    d_test = (both.x_test - digits.x_test).reshape(-1)[:1000]
    assert abs(float(np.corrcoef(d_train.numpy(), d_test.numpy())[0, 1])) < 0.15
    same = Dataset.from_tensors(digits.x_test, digits.y_test, digits.x_test, digits.y_test, name="twice")
    twice = shift(same, "label", 0.5, seed=8)
    assert not torch.equal(twice.y_train, twice.y_test)


def test_seed_reproduces_and_changes_the_shift(digits):
    a, b, c = (shift(digits, "corruption", 0.3, seed=s) for s in (1, 1, 2))
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.x_test, b.x_test)
    assert not torch.equal(a.x_train, c.x_train)
    np_state, torch_state = np.random.get_state(), torch.random.get_rng_state()
    shift(digits, "label", 0.5, seed=3)
    assert np.array_equal(np.random.get_state()[1], np_state[1]) and torch.equal(torch.random.get_rng_state(), torch_state)


def test_duck_typed_datasets_and_arrays():
    x = np.arange(24, dtype=np.float32).reshape(6, 4) + 1
    ns = types.SimpleNamespace(x_train=x, y_train=np.array([0, 1, 2, 0, 1, 2]), x_test=x[:3].copy(),
                               y_test=np.array([2, 1, 0]), info=types.SimpleNamespace(task="classification", n_classes=3))
    out = shift(ns, "corruption", 0.5, seed=0)
    assert isinstance(out, types.SimpleNamespace) and out.info is ns.info
    assert isinstance(out.x_train, torch.Tensor) and out.x_train.dtype == torch.float32
    assert ((out.x_train == 0).sum(1) == 2).all() and (ns.x_train != 0).all()
    assert torch.equal(shift(ns, "permute", 1.0).y_test, torch.tensor([0, 2, 1]))


@pytest.mark.parametrize("kwargs, field", [
    (dict(kind="blur"), "kind"), (dict(kind=None), "kind"),
    (dict(kind="noise", level=-0.1), "level"), (dict(kind="noise", level=float("nan")), "level"),
    (dict(kind="noise", level=float("inf")), "level"), (dict(kind="noise", level="0.1"), "level"),
    (dict(kind="noise", level=True), "level"),
    (dict(kind="corruption", level=1.5), "level"), (dict(kind="label", level=-0.01), "level"),
    (dict(kind="permute", level=2.0), "level"),
    (dict(kind="noise", seed=-1), "seed"), (dict(kind="noise", seed=1.5), "seed"), (dict(kind="noise", seed=True), "seed"),
    (dict(kind="noise", splits=()), "splits"), (dict(kind="noise", splits=("validation",)), "splits"),
    (dict(kind="noise", splits=("test", "test")), "splits"), (dict(kind="noise", splits=3), "splits"),
])
def test_bad_arguments_are_refused_by_name(digits, kwargs, field):
    snap = _snapshot(digits)
    kwargs = {"level": 0.1, **kwargs}
    with pytest.raises(InvalidInputError, match=rf"^{field}\b"):
        shift(digits, **kwargs)
    assert _same(digits, snap)


def test_label_shifts_of_regression_and_bad_datasets_are_refused():
    reg = datasets.load("diabetes", seed=0)
    for kind in ("label", "permute"):
        with pytest.raises(InvalidInputError, match=r"^kind\b.*classification.*'diabetes'.*regression"):
            shift(reg, kind, 0.5)
    assert not torch.equal(shift(reg, "noise", 0.1).x_train, reg.x_train)  # inputs of a regression set do shift
    with pytest.raises(InvalidInputError, match=r"^dataset\b"):
        shift(types.SimpleNamespace(x_train=torch.zeros(2, 1)), "noise", 0.1)
    ns = types.SimpleNamespace(x_train=torch.zeros(4, 2), y_train=torch.tensor([0, 1, 0, 1]), x_test=None, y_test=None,
                               info=types.SimpleNamespace(task="classification", n_classes=2))
    with pytest.raises(InvalidInputError, match=r"^splits\b.*x_test"):
        shift(ns, "noise", 0.1)
    assert shift(ns, "label", 1.0, splits=("train",)).y_train.tolist() == [1, 0, 1, 0]
