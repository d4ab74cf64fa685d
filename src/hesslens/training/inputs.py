"""Validation and conversion of ``hl.train``'s inputs: the shared field checks and the duck-typed dataset.

Every check raises :class:`~hesslens.errors.InvalidInputError` whose message starts with the name of
the argument at fault (``"lr: must be ..."``), so a bad configuration is reported before any step.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..errors import InvalidInputError

TASKS = ("classification", "regression")


def _fail(field: str, message: str) -> InvalidInputError:
    return InvalidInputError(f"{field}: {message}")


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _positive_int(field: str, v: Any, allow_none: bool = False) -> int | None:
    if v is None and allow_none:
        return None
    if not _is_int(v) or v < 1:
        raise _fail(field, f"must be a positive integer{' or None' if allow_none else ''}, got {v!r}")
    return int(v)


def _positive_float(field: str, v: Any, allow_none: bool = True) -> float | None:
    if v is None and allow_none:
        return None
    if not _is_number(v) or not math.isfinite(v) or v <= 0:
        raise _fail(field, f"must be a finite number > 0{' or None' if allow_none else ''}, got {v!r}")
    return float(v)


def _task_of(dataset: Any) -> str:
    info = getattr(dataset, "info", None)
    task = getattr(info, "task", None) if info is not None else None
    if task is None:
        task = getattr(dataset, "task", None)
    if task not in TASKS:
        raise _fail("dataset", f"needs info.task (or task) in {TASKS}, got {task!r}")
    return task


def _tensors(dataset: Any, task: str, device: torch.device, dtype: torch.dtype):
    missing = [a for a in ("x_train", "y_train", "x_test", "y_test") if not hasattr(dataset, a)]
    if missing:
        raise _fail("dataset", f"missing attributes {missing}; expected x_train, y_train, x_test, y_test and info.task")

    def convert(name: str, v: Any, is_x: bool) -> torch.Tensor:
        try:
            t = torch.as_tensor(v)
        except Exception as exc:  # noqa: BLE001 - anything unconvertible is a bad input
            raise _fail(f"dataset.{name}", f"cannot be converted to a tensor ({exc})") from exc
        if t.is_floating_point() and (is_x or task == "regression"):
            t = t.to(dtype)
        return t.to(device)

    out = {}
    for split in ("train", "test"):
        xv, yv = getattr(dataset, f"x_{split}"), getattr(dataset, f"y_{split}")
        if split == "test" and xv is None and yv is None:
            out["test"] = None
            continue
        if xv is None or yv is None:
            raise _fail(f"dataset.{'x' if xv is None else 'y'}_{split}", "is None")
        x, y = convert(f"x_{split}", xv, True), convert(f"y_{split}", yv, False)
        if x.dim() == 0 or y.dim() == 0 or len(x) != len(y):
            raise _fail(f"dataset.y_{split}", f"x_{split} has shape {tuple(x.shape)} and y_{split} "
                                              f"{tuple(y.shape)}: need the same first dimension")
        if split == "train" and len(x) == 0:
            raise _fail("dataset.x_train", "is empty")
        if task == "classification" and (y.is_floating_point() or y.is_complex() or y.dim() != 1):
            raise _fail(f"dataset.y_{split}", f"classification targets must be integer class indices of shape (N,), "
                                              f"got dtype {y.dtype} shape {tuple(y.shape)}")
        if task == "regression" and not y.is_floating_point():
            raise _fail(f"dataset.y_{split}", f"regression targets must be floating point, got {y.dtype}")
        out[split] = (x, y) if len(x) else None
    return out["train"], out["test"]


def _non_negative_float(field: str, v: Any) -> float:
    """A finite number >= 0; None means 0 (the manipulation is off)."""
    if v is None:
        return 0.0
    if not _is_number(v) or not math.isfinite(v) or v < 0:
        raise _fail(field, f"must be a finite number >= 0 or None, got {v!r}")
    return float(v)
