"""The registry behind :func:`names`, :func:`info` and :func:`load`.

A name resolves, in this order, to: a built-in real dataset (:mod:`.real`), a registered OpenML
dataset, a sized MNIST-1D set ``mnist1d_n<N>`` (N signals from the package's generator), an MNIST-1D
variant ``mnist1d_<param><value>…[_n<N>]`` (other distortion parameters), a member of a
synthetic family (:mod:`.synthetic`, any valid parameters), or ``openml:<id>``
(read from the on-disk cache, fetched once when online). Raw arrays of the built-in datasets are
generated once per process and cached (``functools.lru_cache``), so repeated loads with different
split seeds are cheap; OpenML files are re-read from disk at every load.
"""

from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass
from typing import Callable

from ..errors import InvalidInputError
from . import real, synthetic
from .core import DEFAULT_TEST_FRACTION, Dataset, DatasetInfo, Raw, check_seed, prepare


@dataclass(frozen=True)
class Entry:
    name: str
    source: str
    make: Callable[[], Raw]


def _builtin() -> dict[str, Entry]:
    entries = {}
    for table in (real.SKLEARN, real.STATSMODELS, real.MNIST1D):
        for name, (source, make) in table.items():
            entries[name] = Entry(name, source, make)
    for name in synthetic.grid_names():
        canonical, make = synthetic.resolve(name)
        entries[canonical] = Entry(canonical, "synthetic", make)
    return entries


_BUILTIN: dict[str, Entry] = _builtin()
#: OpenML datasets registered in this process by :func:`hesslens.datasets.openml.register_openml`.
_EXTRA: dict[str, Entry] = {}

_OPENML_NAME = re.compile(r"^openml:(\d+)$")


def register(entry: Entry) -> None:
    """Add a dataset to :func:`names` (used by the OpenML module); built-in names cannot be replaced."""
    if entry.name in _BUILTIN:
        raise InvalidInputError(f"dataset {entry.name!r} is built in and cannot be re-registered")
    _EXTRA[entry.name] = entry


def names(source: str | None = None) -> list[str]:
    """Sorted names of the registered datasets, optionally only those of one ``source``.

    Synthetic families accept more members than the grid listed here (see :mod:`.synthetic`).

    >>> "iris" in names() and "mnist1d" in names("mnist1d")
    True
    """
    entries = {**_BUILTIN, **_EXTRA}
    return sorted(n for n, e in entries.items() if source is None or e.source == source)


def resolve(name: str) -> Entry:
    """The :class:`Entry` of ``name``; unknown names raise :class:`InvalidInputError` with suggestions."""
    if not isinstance(name, str):
        raise InvalidInputError(f"dataset name must be a string, got {type(name).__name__}")
    if name in _BUILTIN:
        return _BUILTIN[name]
    if name in _EXTRA:
        return _EXTRA[name]
    n = real.mnist1d_size(name)
    if n is not None:
        canonical = real.mnist1d_name(n)
        return _BUILTIN.get(canonical) or Entry(canonical, "mnist1d", real.mnist1d_builder(n))
    variant = real.mnist1d_variant(name)
    if variant is not None:
        canonical, make = variant
        return _BUILTIN.get(canonical) or Entry(canonical, "mnist1d", make)
    found = synthetic.resolve(name)
    if found is not None:
        canonical, make = found
        return _BUILTIN.get(canonical) or Entry(canonical, "synthetic", make)
    m = _OPENML_NAME.match(name)
    if m is not None:
        from . import openml

        return openml.entry(int(m.group(1)))
    close = difflib.get_close_matches(name, names(), n=5, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise InvalidInputError(
        f"unknown dataset {name!r}.{hint} hesslens.datasets.names() lists the {len(names())} registered "
        f"datasets; synthetic families also accept other parameters "
        f"({', '.join(synthetic.templates()[:3])}, …) and OpenML datasets are named 'openml:<id>'.")


@functools.lru_cache(maxsize=None)
def _raw(name: str, source: str) -> Raw:
    return resolve(name).make()


def raw(name: str) -> tuple[Entry, Raw]:
    """The entry and its (cached, read-only) raw arrays."""
    entry = resolve(name)
    if entry.source == "openml":
        # Read from the on-disk cache each time (cheap): a refreshed file is never shadowed.
        return entry, entry.make()
    return entry, _raw(entry.name, entry.source)


def info(name: str) -> DatasetInfo:
    """Task, source, size, features, classes, input shape and description of a dataset.

    Computed from the data themselves (generated or read once per process).

    >>> info("iris").n_classes, info("iris").input_shape
    (3, (4,))
    """
    entry, data = raw(name)
    return data.info(entry.name, entry.source)


def load(name: str, seed: int = 0, *, test_fraction: float | None = None, n_test: int | None = None,
         standardize: bool = True) -> Dataset:
    """Train and test tensors of a dataset, split by ``seed``, standardised with training statistics.

    The data are the same for every call (synthetic data are seeded by their name); ``seed`` only
    chooses which rows go to the test set, stratified by class for classification: a fraction
    ``test_fraction`` of them (None: the default 1/4, rounded up), or exactly ``n_test`` rows — give
    at most one of the two. See :mod:`hesslens.datasets.core` for the exact preparation.

    The training-set size follows from the two: ``load("mnist1d_n13750", n_test=10000)`` has 3,750
    training and 10,000 test signals (the training-set size of ``load("mnist1d")``, a test set 8× larger).

    >>> ds = load("iris", seed=0)
    >>> tuple(ds.x_train.shape), tuple(ds.x_test.shape), ds.y_train.dtype
    ((112, 4), (38, 4), torch.int64)
    >>> ds = load("iris", seed=0, n_test=50)
    >>> ds.n_train, ds.n_test
    (100, 50)
    """
    seed = check_seed(seed)
    if test_fraction is not None and n_test is not None:
        raise InvalidInputError(f"give test_fraction or n_test, not both (got test_fraction={test_fraction!r}, "
                                f"n_test={n_test!r})")
    if test_fraction is None:
        test_fraction = DEFAULT_TEST_FRACTION
    entry, data = raw(name)
    return prepare(data.info(entry.name, entry.source), data.x, data.y, seed, test_fraction, standardize,
                   n_test=n_test)


def clear_cache() -> None:
    """Forget the raw arrays cached in this process."""
    _raw.cache_clear()
