"""The data contract shared with training and studies: :class:`DatasetInfo`, :class:`Dataset`, and the
split-then-standardise step that turns raw arrays into one.

Preparation of a registered dataset (``prepare``), in order:

1. **Split.** A fraction ``test_fraction`` (default 1/4, rounded up) of the rows — or exactly
   ``n_test`` rows when that is given — goes to the test set, chosen by
   ``sklearn.model_selection.train_test_split(random_state=seed)``; classification splits are
   stratified by class (so every class keeps its proportion on both sides), unless some class has
   fewer than two rows, where stratification is impossible and the split is a plain shuffle.
   The same ``seed`` always gives the same rows, in the same order.
2. **Impute.** Missing feature values (only OpenML data can have them) are replaced by the training
   mean of their feature.
3. **Standardise** with training statistics only: for every feature j (every pixel or time step of
   an image- or signal-shaped input), x_j ← (x_j − μ_j) / σ_j with μ_j, σ_j the mean and population
   standard deviation over the *training* rows. A feature constant on the training rows (σ_j = 0)
   is only centred. Regression targets are standardised the same way, y ← (y − μ_y) / σ_y, so that
   losses and curvatures are comparable across datasets; :attr:`Dataset.scaling` keeps μ and σ to
   undo it (``y_original = y · σ_y + μ_y``).
4. **Convert** to torch: x float32 shaped ``(N, *input_shape)``; y int64 class indices ``(N,)`` for
   classification, float32 ``(N, 1)`` for regression.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from ..errors import InvalidInputError

Task = Literal["classification", "regression"]
Source = Literal["sklearn", "statsmodels", "mnist1d", "synthetic", "openml", "user"]
TASKS = ("classification", "regression")

#: Fraction of rows held out for testing by :func:`hesslens.datasets.load`.
DEFAULT_TEST_FRACTION = 0.25


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is, without its data: everything :func:`hesslens.datasets.info` reports.

    ``n_samples`` counts all rows (train + test); ``n_features`` is ``prod(input_shape)``;
    ``n_classes`` is ``None`` for regression.
    """

    name: str
    task: Task
    source: Source
    n_samples: int
    n_features: int
    n_classes: int | None
    input_shape: tuple[int, ...]
    description: str


@dataclass(frozen=True)
class Scaling:
    """Training statistics used for standardisation (float64 numpy arrays).

    ``x_mean``/``x_std`` have the per-sample input shape; ``x_std`` holds the divisor actually used
    (1 for features constant on the training rows). ``y_mean``/``y_std`` are ``None`` for
    classification.
    """

    x_mean: np.ndarray
    x_std: np.ndarray
    y_mean: float | None = None
    y_std: float | None = None


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """Train and test tensors plus their :class:`DatasetInfo`.

    x tensors are float32 ``(N, *input_shape)``; y tensors are int64 ``(N,)`` class indices in
    ``0 … n_classes−1`` for classification and float32 ``(N, 1)`` for regression. ``scaling`` is the
    standardisation applied (``None`` if the tensors were taken as given).

    >>> import torch
    >>> ds = Dataset.from_tensors(torch.zeros(6, 3), torch.tensor([0, 1, 2, 0, 1, 2]),
    ...                           torch.ones(3, 3), torch.tensor([2, 1, 0]), name="toy")
    >>> ds.task, ds.num_classes, ds.input_shape, ds.n_train, ds.n_test
    ('classification', 3, (3,), 6, 3)
    """

    info: DatasetInfo
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    scaling: Scaling | None = field(default=None)

    # -- convenience views of ``info`` ---------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.info.name

    @property
    def task(self) -> Task:
        return self.info.task

    @property
    def num_classes(self) -> int | None:
        return self.info.n_classes

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.info.input_shape

    @property
    def n_train(self) -> int:
        return len(self.x_train)

    @property
    def n_test(self) -> int:
        return len(self.x_test)

    def train_batches(self, batch_size: int | None = None, *, shuffle: bool = False,
                      seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The training set as a list of ``(x, y)`` batches (views when not shuffled).

        ``batch_size=None`` gives one full batch. ``shuffle=True`` permutes the rows first with a
        ``torch.Generator`` seeded by ``seed``. The list is directly usable as the ``data`` of a
        :class:`hesslens.HessianOperator`.
        """
        return _batches(self.x_train, self.y_train, batch_size, shuffle, seed)

    def test_batches(self, batch_size: int | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The test set as a list of ``(x, y)`` batches, in order."""
        return _batches(self.x_test, self.y_test, batch_size, False, 0)

    def __repr__(self) -> str:
        i = self.info
        classes = f", classes={i.n_classes}" if i.n_classes is not None else ""
        return (f"Dataset({i.name!r}, {i.task}, source={i.source}, train={self.n_train}, "
                f"test={self.n_test}, input_shape={i.input_shape}{classes})")

    @classmethod
    def from_tensors(cls, x_train, y_train, x_test, y_test, *, task: Task | None = None,
                     name: str = "custom", n_classes: int | None = None, standardize: bool = False,
                     description: str = "") -> "Dataset":
        """Build a :class:`Dataset` from the user's own arrays or tensors.

        ``task=None`` infers it from y's dtype (integer or bool → classification, floating →
        regression). Classification labels must be integers in ``0 … n_classes−1``; ``n_classes``
        defaults to one more than the largest label seen. Regression targets of shape ``(N,)``
        become ``(N, 1)``. The tensors are used as given (cast to float32 / int64) unless
        ``standardize=True``, which applies the same training-statistics standardisation as
        :func:`hesslens.datasets.load` (a regression target included).
        """
        xs = [_as_numpy(a, what) for a, what in ((x_train, "x_train"), (x_test, "x_test"))]
        ys = [_as_numpy(a, what) for a, what in ((y_train, "y_train"), (y_test, "y_test"))]
        for x, y, part in zip(xs, ys, ("train", "test")):
            if x.ndim < 2:
                raise InvalidInputError(f"x_{part} must have a batch dimension and at least one "
                                        f"feature dimension, got shape {x.shape}")
            if len(x) != len(y):
                raise InvalidInputError(f"x_{part} has {len(x)} rows but y_{part} has {len(y)}")
        if len(xs[0]) == 0:
            raise InvalidInputError("x_train is empty")
        if xs[0].shape[1:] != xs[1].shape[1:]:
            raise InvalidInputError(f"x_train samples have shape {xs[0].shape[1:]} but x_test samples "
                                    f"have shape {xs[1].shape[1:]}")
        if task is None:
            task = "regression" if np.issubdtype(ys[0].dtype, np.floating) else "classification"
        _check_task(task)
        if task == "classification":
            for y, part in zip(ys, ("train", "test")):
                if y.ndim != 1:
                    raise InvalidInputError(f"classification labels y_{part} must be 1-D, got {y.shape}")
                if y.size and not np.array_equal(y, np.round(y)):
                    raise InvalidInputError(f"classification labels y_{part} must be integers")
            seen = int(max(y.max() if y.size else -1 for y in ys)) + 1
            lowest = int(min(y.min() if y.size else 0 for y in ys))
            if lowest < 0:
                raise InvalidInputError(f"classification labels must be >= 0, got {lowest}")
            n_classes = seen if n_classes is None else int(n_classes)
            if seen > n_classes:
                raise InvalidInputError(f"labels go up to {seen - 1} but n_classes={n_classes}")
            ys = [y.astype(np.int64) for y in ys]
        else:
            ys = [_as_column(y, part) for y, part in zip(ys, ("train", "test"))]
            n_classes = None
        info = DatasetInfo(name=name, task=task, source="user", n_samples=len(xs[0]) + len(xs[1]),
                           n_features=math.prod(xs[0].shape[1:]), n_classes=n_classes,
                           input_shape=tuple(int(s) for s in xs[0].shape[1:]), description=description)
        return _finish(info, xs[0], ys[0], xs[1], ys[1], standardize)


# -- preparation -------------------------------------------------------------------------------------

def split_indices(y: np.ndarray, task: Task, seed: int, test_fraction: float = DEFAULT_TEST_FRACTION,
                  *, n_test: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Row indices ``(train, test)`` of a deterministic split (see the module docstring);
    ``n_test``, when given, is the exact number of test rows and ``test_fraction`` is ignored.

    >>> tr, te = split_indices(np.array([0, 0, 0, 0, 1, 1, 1, 1]), "classification", seed=0, test_fraction=0.5)
    >>> np.bincount(np.array([0, 0, 0, 0, 1, 1, 1, 1])[te]).tolist()
    [2, 2]
    """
    from sklearn.model_selection import train_test_split

    n = len(y)
    if n_test is not None:
        if isinstance(n_test, bool) or not isinstance(n_test, (int, np.integer)) or not 1 <= n_test <= n - 1:
            raise InvalidInputError(f"n_test must be an integer from 1 to {n - 1} (the dataset has {n} rows), "
                                    f"got {n_test!r}")
        n_test = int(n_test)
    else:
        if not 0.0 < test_fraction < 1.0:
            raise InvalidInputError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
        n_test = int(math.ceil(test_fraction * n))
        if n_test < 1 or n - n_test < 1:
            raise InvalidInputError(f"{n} rows cannot be split with test_fraction={test_fraction}")
    stratify = None
    if task == "classification":
        counts = np.bincount(y.astype(np.int64))
        counts = counts[counts > 0]
        # Stratification needs >= 2 rows per class and a test set holding at least one per class.
        if counts.min() >= 2 and n_test >= len(counts) and n - n_test >= len(counts):
            stratify = y
    train, test = train_test_split(np.arange(n), test_size=n_test, random_state=seed, shuffle=True,
                                   stratify=stratify)
    return np.asarray(train), np.asarray(test)


def prepare(info: DatasetInfo, x: np.ndarray, y: np.ndarray, seed: int,
            test_fraction: float = DEFAULT_TEST_FRACTION, standardize: bool = True, *,
            n_test: int | None = None) -> Dataset:
    """Split raw arrays by ``seed`` (``n_test`` rows, or a fraction ``test_fraction``, for testing),
    impute, standardise with training statistics, convert to torch."""
    train, test = split_indices(y, info.task, seed, test_fraction, n_test=n_test)
    if info.task == "regression":
        y = _as_column(y, "")
    return _finish(info, x[train], y[train], x[test], y[test], standardize)


def _finish(info: DatasetInfo, x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, y_te: np.ndarray,
            standardize: bool) -> Dataset:
    x_tr = x_tr.astype(np.float64)
    x_te = x_te.astype(np.float64)
    scaling = None
    if np.isnan(x_tr).any() or np.isnan(x_te).any():
        x_tr, x_te = _impute(x_tr, x_te)
    if standardize:
        x_mean, x_std = _moments(x_tr)
        x_tr = (x_tr - x_mean) / x_std
        x_te = (x_te - x_mean) / x_std
        y_mean = y_std = None
        if info.task == "regression":
            m, s = _moments(y_tr.astype(np.float64))
            y_mean, y_std = float(m[0]), float(s[0])
            y_tr = (y_tr - y_mean) / y_std
            y_te = (y_te - y_mean) / y_std
        scaling = Scaling(x_mean=x_mean, x_std=x_std, y_mean=y_mean, y_std=y_std)
    ydtype = torch.int64 if info.task == "classification" else torch.float32
    return Dataset(
        info=info,
        x_train=torch.as_tensor(np.ascontiguousarray(x_tr), dtype=torch.float32),
        y_train=torch.as_tensor(np.ascontiguousarray(y_tr), dtype=ydtype),
        x_test=torch.as_tensor(np.ascontiguousarray(x_te), dtype=torch.float32),
        y_test=torch.as_tensor(np.ascontiguousarray(y_te), dtype=ydtype),
        scaling=scaling,
    )


def _moments(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and the divisor σ (population std, or 1 where σ = 0) over axis 0."""
    mean = a.mean(axis=0)
    std = a.std(axis=0)
    # Relative threshold: a column that is constant up to rounding must not be blown up.
    tiny = std <= 1e-12 * np.maximum(1.0, np.abs(mean))
    return mean, np.where(tiny, 1.0, std)


def _impute(x_tr: np.ndarray, x_te: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Replace NaN by the training mean of the feature (0 if the feature is missing on every training row)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "Mean of empty slice" for all-NaN columns
        fill = np.nanmean(x_tr, axis=0)
    fill = np.where(np.isnan(fill), 0.0, fill)
    return np.where(np.isnan(x_tr), fill, x_tr), np.where(np.isnan(x_te), fill, x_te)


def _batches(x: torch.Tensor, y: torch.Tensor, batch_size: int | None, shuffle: bool,
             seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    n = len(x)
    if batch_size is None:
        batch_size = n
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInputError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    if shuffle:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
        x, y = x[order], y[order]
    return [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, n, batch_size)]


def _as_numpy(a, what: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    try:
        return np.asarray(a)
    except Exception as exc:  # pragma: no cover - numpy's own message is kept
        raise InvalidInputError(f"{what} is not array-like: {exc}") from exc


def _as_column(y: np.ndarray, part: str) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 1:
        return y[:, None]
    if y.ndim == 2 and y.shape[1] == 1:
        return y
    raise InvalidInputError(f"regression targets{' y_' + part if part else ''} must be (N,) or (N, 1), "
                            f"got shape {y.shape}")


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise InvalidInputError(f"task must be one of {TASKS}, got {task!r}")


def check_seed(seed) -> int:
    """Validate a split seed (a non-negative int; numpy ints accepted)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def shapes_of(x: np.ndarray) -> tuple[tuple[int, ...], int]:
    """(input_shape, n_features) of a raw array of samples."""
    shape = tuple(int(s) for s in x.shape[1:])
    return shape, math.prod(shape)



@dataclass(frozen=True, eq=False, repr=False)
class Raw:
    """A dataset before splitting: every row, in a fixed order, as numpy arrays.

    ``x`` is float64 ``(N, *input_shape)`` (NaN marks a missing value); ``y`` is int64 class
    indices ``0 … n_classes−1`` or float64 targets ``(N,)``.
    """

    x: np.ndarray
    y: np.ndarray
    task: Task
    n_classes: int | None
    description: str

    def __post_init__(self) -> None:
        _check_task(self.task)
        if len(self.x) != len(self.y) or self.y.ndim != 1:
            raise InvalidInputError(f"raw data: x has {len(self.x)} rows, y has shape {self.y.shape}")
        # Raw arrays are cached and shared between loads: freeze them so nobody edits the cache.
        self.x.setflags(write=False)
        self.y.setflags(write=False)

    def info(self, name: str, source: Source) -> DatasetInfo:
        shape, n_features = shapes_of(self.x)
        return DatasetInfo(name=name, task=self.task, source=source, n_samples=len(self.x),
                           n_features=n_features, n_classes=self.n_classes, input_shape=shape,
                           description=self.description)
