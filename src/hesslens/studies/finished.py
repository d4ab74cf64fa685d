"""The finished runs a study's analysis reads, from its results table.

A results table comes from the store (flags are booleans) or from ``results.csv`` (flags are text):
:func:`finished_runs` parses the flag columns, keeps the finished runs (``done``/``diverged``) and
separates the smoke runs — a report of a folder holding both decides on the full runs only, and a
folder of smoke runs alone is analysed as such (and prints no verdicts, study standard 7).
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from ..errors import InvalidInputError
from .declaration import FINISHED

__all__ = ["finished_runs", "flags"]


def flags(df: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """A copy of ``df`` with each of ``columns`` (those present) as booleans: True, "True", 1 → True."""
    out = df.copy()
    for col in columns:
        if col in out:
            out[col] = out[col].map(lambda v: str(v).strip().lower() in ("true", "1", "1.0", "yes"))
    return out


def finished_runs(df: pd.DataFrame, flag_columns: Iterable[str] = ()) -> tuple[pd.DataFrame, bool]:
    """``(runs, smoke)``: the finished non-smoke runs of ``df`` — or, when it has none, its smoke runs and
    ``smoke = True`` — with ``flag_columns`` (and ``smoke``) parsed as booleans."""
    if not isinstance(df, pd.DataFrame):
        raise InvalidInputError(f"the results table must be a DataFrame, got {type(df).__name__}")
    runs = flags(df, ("smoke", *flag_columns))
    if "status" in runs:
        runs = runs[runs["status"].isin(FINISHED)]
    full = runs[~runs["smoke"]] if "smoke" in runs else runs
    smoke = full.empty and not runs.empty
    return (runs if smoke else full), smoke
