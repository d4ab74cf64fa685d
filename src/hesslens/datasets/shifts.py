"""Dataset shifts: the same dataset with noisier or corrupted inputs, or changed labels.

``shift(dataset, kind, level, seed=0, splits=("train", "test"))`` returns a new dataset object of
the same structure — same ``info`` (and ``scaling``), same shapes and dtypes — whose chosen splits
are shifted; the original is left untouched and every tensor of the result is a new one. With x the
inputs (already standardised with training statistics by :func:`hesslens.datasets.load`, so
"units" are training standard deviations and 0 is the training mean), y the labels, C the number
of classes, F the number of input features of one sample and n the rows of a split:

``"noise"``       x ← x + level · ξ, ξ ~ N(0, I) i.i.d. per entry (level ≥ 0 is the noise std in
                  standardised units) — the Gaussian-noise corruption of Hendrycks & Dietterich
                  (2019, "Benchmarking neural network robustness to common corruptions and
                  perturbations", arXiv 1903.12261), here on any input;
``"corruption"``  in every sample, exactly m = round(level · F) input features, chosen uniformly
                  without replacement per sample, are set to 0 — the training mean of the feature
                  after standardisation (a "missing, mean-imputed" feature); level ∈ [0, 1];
``"label"``       exactly m = round(level · n) samples, chosen uniformly without replacement, get a
                  label drawn uniformly from the C − 1 *other* classes, y ← (y + r) mod C with
                  r ~ U{1, …, C − 1}, so every chosen label changes (symmetric label noise, Zhang et
                  al. 2017, arXiv 1611.03530); level ∈ [0, 1], classification only;
``"permute"``     a new task on the same inputs: for exactly m = round(level · n) samples, chosen as
                  for ``"label"``, y ← (y + 1) mod C; ``level=1`` (the intended use) relabels the
                  whole split deterministically, so a model of the original task is wrong on every
                  sample; level ∈ [0, 1], classification only.

round() is round-half-to-even (Python's). Randomness: each split draws from its own NumPy
Generator, ``numpy.random.default_rng([seed, k, s])`` with k the index of ``kind`` in :data:`KINDS`
and s = 0 for the training split, 1 for the test split — so the two splits are independent, a
split's shift does not depend on whether the other is shifted too, and no global random stream is
touched. The draws, in order: ``"noise"`` ``rng.standard_normal(x.shape)`` (float64, added in
float64, cast back to the input dtype); ``"corruption"`` ``rng.random((n, F))``, whose m smallest
entries of each row (``argsort``, stable) mark the zeroed features; ``"label"`` and ``"permute"``
``rng.permutation(n)[:m]`` for the rows, and for ``"label"`` then ``rng.integers(1, C, size=m)`` for r.

A model trained on a dataset is then evaluated on ``shift(ds, ..., splits=("test",))``; shifting
``"train"`` too trains on the shifted distribution.

>>> import torch
>>> from hesslens.datasets import Dataset
>>> ds = Dataset.from_tensors(torch.zeros(8, 2), torch.arange(8) % 4, torch.ones(4, 2), torch.arange(4), name="toy")
>>> shift(ds, "permute", 1.0).y_test.tolist()
[1, 2, 3, 0]
>>> int((shift(ds, "label", 0.5, seed=1).y_train != ds.y_train).sum())
4
"""

from __future__ import annotations

import copy
import dataclasses
import math
import numbers
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import InvalidInputError

#: The kinds of shift, in the order that numbers their random streams.
KINDS = ("noise", "corruption", "label", "permute")
SPLITS = ("train", "test")


def _fail(field: str, message: str) -> InvalidInputError:
    return InvalidInputError(f"{field}: {message}")


def _exact_count(level: float, n: int) -> int:
    return int(round(level * n))


def shift_rng(seed: int, kind: str, split: str) -> np.random.Generator:
    """The generator of one split's shift: ``numpy.random.default_rng([seed, KINDS.index(kind), s])``."""
    return np.random.default_rng([seed, KINDS.index(kind), SPLITS.index(split)])


def _check(dataset: Any, kind: Any, level: Any, seed: Any, splits: Any) -> tuple[str, float, int, tuple[str, ...]]:
    if not isinstance(kind, str) or kind not in KINDS:
        raise _fail("kind", f"must be one of {KINDS}, got {kind!r}")
    if not isinstance(level, numbers.Real) or isinstance(level, bool) or not math.isfinite(level):
        raise _fail("level", f"must be a finite number, got {level!r}")
    level = float(level)
    if kind == "noise" and level < 0:
        raise _fail("level", f"the noise standard deviation must be >= 0, got {level!r}")
    if kind != "noise" and not 0.0 <= level <= 1.0:
        raise _fail("level", f"the fraction of {'features' if kind == 'corruption' else 'samples'} "
                             f"shifted by {kind!r} must lie in [0, 1], got {level!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise _fail("seed", f"must be a non-negative integer, got {seed!r}")
    if isinstance(splits, str):
        splits = (splits,)
    try:
        splits = tuple(splits)
    except TypeError:
        raise _fail("splits", f"must be a sequence of 'train' and/or 'test', got {splits!r}") from None
    if not splits or any(s not in SPLITS for s in splits) or len(set(splits)) != len(splits):
        raise _fail("splits", f"must be a non-empty sequence of distinct names from {SPLITS}, got {splits!r}")
    missing = [a for a in ("x_train", "y_train", "x_test", "y_test") if not hasattr(dataset, a)]
    if missing:
        raise _fail("dataset", f"missing attributes {missing}; expected x_train, y_train, x_test, y_test and info")
    for split in splits:
        for part in ("x", "y"):
            if getattr(dataset, f"{part}_{split}") is None:
                raise _fail("splits", f"asks to shift {split!r} but dataset.{part}_{split} is None")
    return kind, level, int(seed), splits


def _task_and_classes(dataset: Any) -> tuple[str | None, int | None]:
    info = getattr(dataset, "info", None)
    task = getattr(info, "task", None) if info is not None else None
    task = task if task is not None else getattr(dataset, "task", None)
    n_classes = getattr(info, "n_classes", None) if info is not None else None
    return task, n_classes


def _labels_to_shift(dataset: Any, kind: str, splits: Sequence[str]) -> int:
    """C, after checking that the labels can be shifted."""
    task, n_classes = _task_and_classes(dataset)
    name = getattr(getattr(dataset, "info", None), "name", "the dataset")
    if task != "classification":
        raise _fail("kind", f"{kind!r} changes class labels and needs a classification dataset; "
                            f"{name!r} has task {task!r} (for regression shift the inputs: 'noise', 'corruption')")
    ys = [torch.as_tensor(getattr(dataset, f"y_{s}")) for s in SPLITS if getattr(dataset, f"y_{s}") is not None]
    if n_classes is None:
        n_classes = int(max(int(y.max()) for y in ys if y.numel())) + 1
    for split in splits:
        y = torch.as_tensor(getattr(dataset, f"y_{split}"))
        if y.is_floating_point() or y.dim() != 1 or (y.numel() and (int(y.min()) < 0 or int(y.max()) >= n_classes)):
            raise _fail("dataset", f"y_{split} must hold integer class indices 0 … {n_classes - 1} of shape (N,)")
    if n_classes < 2:
        raise _fail("dataset", f"{kind!r} needs at least 2 classes, the dataset has {n_classes}")
    return int(n_classes)


def _shift_inputs(x: torch.Tensor, kind: str, level: float, rng: np.random.Generator) -> torch.Tensor:
    out = x.detach().clone(memory_format=torch.contiguous_format)
    if kind == "noise":
        values = out.cpu().numpy().astype(np.float64) + level * rng.standard_normal(tuple(out.shape))
        return torch.as_tensor(values).to(dtype=x.dtype, device=x.device)
    n = len(out)
    features = math.prod(out.shape[1:])
    m = _exact_count(level, features)
    flat = out.reshape(n, features)  # a view of the fresh copy
    if m and n:
        chosen = np.argsort(rng.random((n, features)), axis=1, kind="stable")[:, :m]
        rows = np.repeat(np.arange(n), m)
        flat[torch.as_tensor(rows), torch.as_tensor(chosen.reshape(-1))] = 0
    return out


def _shift_labels(y: torch.Tensor, kind: str, level: float, n_classes: int, rng: np.random.Generator) -> torch.Tensor:
    out = y.detach().clone()
    n = len(out)
    m = _exact_count(level, n)
    rows = torch.as_tensor(rng.permutation(n)[:m], dtype=torch.long)
    if kind == "label":
        r = torch.as_tensor(rng.integers(1, n_classes, size=m), dtype=out.dtype)
    else:
        r = torch.ones(m, dtype=out.dtype)
    out[rows] = (out[rows] + r.to(out.device)) % n_classes
    return out


def shift(dataset: Any, kind: str, level: float, *, seed: int = 0, splits: Sequence[str] = SPLITS) -> Any:
    """A copy of ``dataset`` with ``splits`` shifted by ``kind`` at ``level`` (see the module docstring).

    Parameters
    ----------
    dataset : a :class:`~hesslens.datasets.Dataset` (what ``load`` returns) or any object with
        ``x_train``, ``y_train``, ``x_test``, ``y_test`` (tensors or arrays) and ``info`` (``task``,
        ``n_classes``; used by the label shifts). A dataclass is copied with
        :func:`dataclasses.replace`, anything else with :func:`copy.copy`; arrays come back as tensors.
    kind : ``"noise"``, ``"corruption"``, ``"label"`` or ``"permute"``.
    level : noise std (≥ 0) for ``"noise"``; the fraction in [0, 1] of features (``"corruption"``)
        or samples (``"label"``, ``"permute"``) changed, as an exact count.
    seed : a non-negative integer; the streams are derived from it per kind and split.
    splits : which splits to shift, ``("train", "test")`` by default, e.g. ``("test",)``.

    Raises
    ------
    InvalidInputError
        Naming the bad argument (``kind``, ``level``, ``seed``, ``splits``, ``dataset``); a label
        shift of a regression dataset is refused.
    """
    kind, level, seed, splits = _check(dataset, kind, level, seed, splits)
    n_classes = _labels_to_shift(dataset, kind, splits) if kind in ("label", "permute") else None
    changes: dict[str, torch.Tensor | None] = {}
    for split in SPLITS:
        x, y = getattr(dataset, f"x_{split}"), getattr(dataset, f"y_{split}")
        x = None if x is None else torch.as_tensor(x).detach().clone()
        y = None if y is None else torch.as_tensor(y).detach().clone()
        if split in splits:
            rng = shift_rng(seed, kind, split)
            if kind in ("noise", "corruption"):
                if not x.is_floating_point():
                    raise _fail("dataset", f"x_{split} must be floating point to be shifted by {kind!r}, got {x.dtype}")
                x = _shift_inputs(x, kind, level, rng)
            else:
                y = _shift_labels(y, kind, level, n_classes, rng)
        changes[f"x_{split}"], changes[f"y_{split}"] = x, y
    if dataclasses.is_dataclass(dataset) and not isinstance(dataset, type):
        return dataclasses.replace(dataset, **changes)
    out = copy.copy(dataset)
    for name, value in changes.items():
        setattr(out, name, value)
    return out
