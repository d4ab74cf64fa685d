"""OpenML support without the network: a pre-written cache file, and a replaced download function."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from hesslens import datasets
from hesslens.datasets import openml
from hesslens.errors import InvalidInputError

from _datasets_fixtures import isolated_registry, no_network  # noqa: F401  (pytest fixtures)


def _frame(n: int = 40):
    """A small OpenML-like frame: numeric, categorical with a missing value, nominal target."""
    rng = np.random.default_rng(0)
    num = rng.standard_normal(n)
    num[3] = np.nan
    colour = pd.Series(pd.Categorical(rng.choice(["red", "blue", "green"], n)))
    colour[5] = np.nan
    target = pd.Series(pd.Categorical(np.where(num > 0, "yes", "no")))
    target[7] = np.nan  # rows with a missing target are dropped
    return pd.DataFrame({"num": num, "colour": colour}), target


def _refuse(*args, **kwargs):
    raise AssertionError("download must not be called: the dataset is cached")


def test_encode_one_hot_and_missing_values():
    features, target = _frame()
    x, y, meta = openml.encode(features, target)
    assert x.shape == (39, 4) and meta["features"] == ["num", "colour=blue", "colour=green", "colour=red"]
    assert meta["classes"] == ["no", "yes"] and meta["task"] == "classification" and meta["categorical"] == 1
    kept = np.delete(np.arange(40), 7)
    colour = features["colour"].astype(object).to_numpy()[kept]
    for j, level in enumerate(["blue", "green", "red"], start=1):
        expect = np.where(pd.isna(colour), np.nan, (colour == level).astype(float))
        np.testing.assert_array_equal(x[:, j], expect)
    np.testing.assert_array_equal(y, (target[kept] == "yes").to_numpy().astype(np.int64))


def test_load_from_a_prewritten_cache_file(isolated_registry, monkeypatch):
    features, target = _frame()
    x, y, meta = openml.encode(features, target)
    openml.write_cache(isolated_registry / "4242.npz", x, y, {**meta, "data_id": 4242, "name": "toy",
                                                             "version": "1", "target": ["t"]})
    monkeypatch.setattr(openml, "download", _refuse)
    assert openml.cached_ids() == [4242]
    ds = datasets.load("openml:4242", seed=0)
    assert ds.info.source == "openml" and ds.info.name == "openml:4242"
    assert (ds.info.n_samples, ds.info.n_features, ds.num_classes) == (39, 4, 2)
    assert torch.isfinite(ds.x_train).all() and torch.isfinite(ds.x_test).all()
    assert "'toy'" in ds.info.description
    # Missing values were imputed with the training mean, i.e. standardised to exactly 0.
    train_rows = ds.x_train.numpy()
    assert np.all(np.abs(train_rows.mean(axis=0)) < 1e-6)


def test_register_fetches_once_then_works_offline(isolated_registry, monkeypatch):
    calls = []

    def fake_download(data_id, data_home):
        calls.append((data_id, data_home))
        rng = np.random.default_rng(1)
        frame = pd.DataFrame({"a": rng.standard_normal(30), "b": rng.integers(0, 5, 30)})
        return frame, pd.Series(rng.standard_normal(30), name="y"), {"name": "reg", "version": "2", "target": ["y"]}

    monkeypatch.setattr(openml, "download", fake_download)
    assert datasets.register_openml(77) == "openml:77"
    assert calls == [(77, isolated_registry / "sklearn")]
    assert (isolated_registry / "77.npz").exists()
    assert "openml:77" in datasets.names() and datasets.names("openml") == ["openml:77"]
    monkeypatch.setattr(openml, "download", _refuse)
    ds = datasets.load("openml:77", seed=3)
    assert ds.task == "regression" and ds.y_train.shape == (ds.n_train, 1) and ds.info.n_features == 2
    assert datasets.info("openml:77").n_samples == 30


def test_missing_cache_without_network_is_a_clear_error(isolated_registry, monkeypatch):
    def offline(data_id, data_home):
        raise OSError("no route to host")

    monkeypatch.setattr(openml, "download", offline)
    with pytest.raises(openml.OpenMLUnavailableError, match=r"OpenML dataset 5 is not cached at .*5\.npz"):
        datasets.load("openml:5")
    with pytest.raises(InvalidInputError, match="positive integer"):
        datasets.register_openml(0)


def test_suite_is_listed_once_and_registered_lazily(isolated_registry, monkeypatch):
    monkeypatch.setattr(openml, "download_suite", lambda suite: [11, 12])
    monkeypatch.setattr(openml, "download", _refuse)
    assert datasets.register_openml_suite(99) == ["openml:11", "openml:12"]
    assert json.loads((isolated_registry / "suites" / "99.json").read_text())["data_ids"] == [11, 12]
    monkeypatch.setattr(openml, "download_suite", _refuse)
    assert openml.suite_ids(99) == [11, 12]
    assert {"openml:11", "openml:12"} <= set(datasets.names())


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HESSLENS_CACHE_DIR", str(tmp_path))
    assert openml.cache_path(3) == tmp_path / "openml" / "3.npz"
    monkeypatch.delenv("HESSLENS_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert openml.cache_dir() == tmp_path / "xdg" / "hesslens" / "openml"
