"""OpenML datasets by id or by benchmark suite, fetched once and then available offline.

A user with a network connection can do::

    from hesslens import datasets
    datasets.register_openml(61)                  # iris on OpenML → "openml:61"
    datasets.register_openml_suite(99)            # the OpenML-CC18 suite → ["openml:3", …]
    ds = datasets.load("openml:61", seed=0)

``load("openml:<id>")`` also works without registering. Data come from
``sklearn.datasets.fetch_openml`` (no extra dependency; its raw downloads are kept under the cache
directory too) and are converted once into ``<cache>/openml/<id>.npz``: numeric features as they
are, categorical features one-hot encoded (a missing category makes all of that feature's columns
missing), missing values kept as NaN and imputed with *training* means at load time, rows with a
missing target dropped. The dataset's default target decides the task: nominal → classification
(classes in sorted order), numeric → regression. Suite listings are cached in
``<cache>/openml/suites/<suite>.json`` and read through the ``openml`` package when it is installed,
else through OpenML's JSON REST API.

The cache root is ``$HESSLENS_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/hesslens``, else
``~/.cache/hesslens``. Once a file is cached, nothing touches the network again; only
:func:`download` and :func:`download_suite` do, which is what tests replace.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import HesslensError, InvalidInputError
from ..progress import progress_bar
from .core import Raw
from .registry import Entry, register

CACHE_ENV = "HESSLENS_CACHE_DIR"
FORMAT_VERSION = 1
API_URL = "https://www.openml.org/api/v1/json"


class OpenMLUnavailableError(HesslensError, OSError):
    """An OpenML dataset is not in the cache and could not be fetched (offline, or no such id)."""


def cache_dir() -> Path:
    """``<root>/openml`` where OpenML data are cached (see the module docstring for the root)."""
    root = os.environ.get(CACHE_ENV)
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "hesslens")
    return Path(root) / "openml"


def cache_path(data_id: int) -> Path:
    """The ``.npz`` file holding OpenML dataset ``data_id`` once fetched."""
    return cache_dir() / f"{_check_id(data_id)}.npz"


def cached_ids() -> list[int]:
    """Ids of the OpenML datasets present in the cache (loadable offline)."""
    folder = cache_dir()
    if not folder.is_dir():
        return []
    return sorted(int(p.stem) for p in folder.glob("*.npz") if p.stem.isdigit())


# -- network (the only two functions that use it) ------------------------------------------------------

def download(data_id: int, data_home: Path):
    """``(features DataFrame, target Series, metadata dict)`` of OpenML dataset ``data_id``."""
    from sklearn.datasets import fetch_openml

    bunch = fetch_openml(data_id=data_id, as_frame=True, data_home=str(data_home), parser="auto")
    details = dict(getattr(bunch, "details", {}) or {})
    meta = {"name": details.get("name", ""), "version": str(details.get("version", "")),
            "target": list(getattr(bunch, "target_names", []) or [])}
    return bunch.data, bunch.target, meta


def download_suite(suite: int | str) -> list[int]:
    """Dataset ids of an OpenML benchmark suite (id or alias, e.g. 99 or ``"OpenML-CC18"``)."""
    try:
        import openml  # optional: used when installed
    except ImportError:
        openml = None
    if openml is not None:
        return [int(i) for i in openml.study.get_suite(suite).data]
    import urllib.request

    with urllib.request.urlopen(f"{API_URL}/study/{suite}", timeout=60) as response:  # noqa: S310
        study = json.load(response)["study"]
    ids = study["data"]["data_id"]
    return [int(i) for i in (ids if isinstance(ids, list) else [ids])]


# -- conversion and cache ----------------------------------------------------------------------------

def encode(features, target) -> tuple[np.ndarray, np.ndarray, dict]:
    """Numeric arrays from an OpenML frame: ``(x float64 with NaN, y, meta)`` (see module docstring)."""
    import pandas as pd

    if isinstance(target, pd.DataFrame):
        if target.shape[1] != 1:
            raise InvalidInputError(f"OpenML dataset has {target.shape[1]} target columns; only one is supported")
        target = target.iloc[:, 0]
    if target is None:
        raise InvalidInputError("OpenML dataset has no default target")
    keep = target.notna().to_numpy()
    features, target = features.loc[keep], target.loc[keep]
    nominal = not pd.api.types.is_numeric_dtype(target) or pd.api.types.is_bool_dtype(target)
    if nominal:
        codes, classes = pd.factorize(target.astype(str), sort=True)
        y = codes.astype(np.int64)
        meta = {"task": "classification", "n_classes": len(classes), "classes": [str(c) for c in classes]}
    else:
        y = target.to_numpy(np.float64)
        meta = {"task": "regression", "n_classes": None, "classes": []}
    columns, names, categorical = [], [], 0
    for col in features.columns:
        series = features[col]
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            columns.append(series.to_numpy(np.float64)[:, None])
            names.append(str(col))
            continue
        categorical += 1
        missing = series.isna().to_numpy()
        values = series.astype(str).where(~missing)
        levels = sorted(values.dropna().unique())
        block = np.stack([(values == lv).to_numpy(np.float64) for lv in levels], axis=1) if levels else \
            np.zeros((len(series), 0))
        block[missing] = np.nan
        columns.append(block)
        names.extend(f"{col}={lv}" for lv in levels)
    x = np.concatenate(columns, axis=1) if columns else np.zeros((len(y), 0))
    if x.shape[1] == 0:
        raise InvalidInputError("OpenML dataset has no usable feature")
    meta.update(features=names, categorical=categorical)
    return x, y, meta


def write_cache(path: Path, x: np.ndarray, y: np.ndarray, meta: dict) -> None:
    """Write atomically (temporary file + rename), so an interrupted fetch leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {**meta, "format": FORMAT_VERSION}
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    os.close(fd)
    try:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, x=x, y=y, meta=np.array(json.dumps(meta)))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_cache(path: Path) -> Raw:
    """The :class:`Raw` data stored in a cache file written by :func:`write_cache`."""
    with np.load(path, allow_pickle=False) as f:
        x, y, meta = f["x"], f["y"], json.loads(str(f["meta"]))
    if meta.get("format") != FORMAT_VERSION:
        raise InvalidInputError(f"{path}: cache format {meta.get('format')!r} is not {FORMAT_VERSION}; "
                                f"delete the file to fetch it again")
    task = meta["task"]
    y = y.astype(np.int64 if task == "classification" else np.float64)
    target = ", ".join(meta.get("target") or []) or "default"
    description = (f"OpenML dataset {meta.get('data_id')} '{meta.get('name', '')}' (version "
                   f"{meta.get('version', '?')}), target '{target}'; {meta.get('categorical', 0)} categorical "
                   f"feature(s) one-hot encoded, missing values imputed with training means.")
    return Raw(x.astype(np.float64), y, task, meta["n_classes"], description)


def fetch(data_id: int, *, refresh: bool = False) -> Path:
    """Make sure OpenML dataset ``data_id`` is cached (downloading it if needed); return the file."""
    path = cache_path(data_id)
    if path.exists() and not refresh:
        return path
    try:
        features, target, meta = download(int(data_id), cache_dir() / "sklearn")
    except InvalidInputError:
        raise
    except Exception as exc:
        raise OpenMLUnavailableError(
            f"OpenML dataset {data_id} is not cached at {path} and could not be fetched "
            f"({type(exc).__name__}: {exc}); connect to the network once, or check the id") from exc
    x, y, encoded = encode(features, target)
    write_cache(path, x, y, {**meta, **encoded, "data_id": int(data_id)})
    return path


def entry(data_id: int) -> Entry:
    """Registry entry ``openml:<id>``: reads the cache, fetching on first use."""
    data_id = _check_id(data_id)
    return Entry(f"openml:{data_id}", "openml", lambda: read_cache(fetch(data_id)))


def register_openml(data_id: int, *, fetch_now: bool = True) -> str:
    """Add OpenML dataset ``data_id`` to :func:`hesslens.datasets.names` as ``openml:<id>``.

    ``fetch_now`` downloads it immediately (if not cached) so that a bad id or a missing network
    fails here rather than at the first load.
    """
    e = entry(data_id)
    if fetch_now:
        fetch(data_id)
    register(e)
    return e.name


def suite_ids(suite: int | str, *, refresh: bool = False) -> list[int]:
    """Dataset ids of a benchmark suite, cached in ``<cache>/openml/suites/<suite>.json``."""
    if not str(suite) or not str(suite).replace("-", "").replace("_", "").isalnum():
        raise InvalidInputError(f"OpenML suite must be an id or an alias, got {suite!r}")
    path = cache_dir() / "suites" / f"{suite}.json"
    if path.exists() and not refresh:
        return [int(i) for i in json.loads(path.read_text())["data_ids"]]
    try:
        ids = download_suite(suite)
    except Exception as exc:
        raise OpenMLUnavailableError(f"OpenML suite {suite!r} is not cached at {path} and could not be "
                                     f"fetched ({type(exc).__name__}: {exc})") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"suite": str(suite), "data_ids": [int(i) for i in ids]}))
    return [int(i) for i in ids]


def register_openml_suite(suite: int | str, *, fetch_now: bool = False,
                          progress: bool | None = None) -> list[str]:
    """Register every dataset of an OpenML suite; returns their names.

    By default the data are fetched lazily (at the first ``load``/``info`` of each); ``fetch_now``
    downloads them all now, with a progress bar.
    """
    ids = suite_ids(suite)
    out: list[str] = []
    with progress_bar(len(ids), f"OpenML suite {suite}", enabled=progress if fetch_now else False,
                      unit="dataset") as bar:
        for data_id in ids:
            out.append(register_openml(data_id, fetch_now=fetch_now))
            bar.update(1)
    return out


def _check_id(data_id) -> int:
    if isinstance(data_id, bool) or not isinstance(data_id, (int, np.integer, str)) or \
            not str(data_id).isdigit() or int(data_id) < 1:
        raise InvalidInputError(f"OpenML dataset id must be a positive integer, got {data_id!r}")
    return int(data_id)


__all__: Iterable[str] = ["OpenMLUnavailableError", "cache_dir", "cache_path", "cached_ids", "fetch",
                          "register_openml", "register_openml_suite", "suite_ids"]
