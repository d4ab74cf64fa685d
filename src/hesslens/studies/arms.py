"""The arms of a comparison and the per-seed statistics built from them.

A claim reads a results table (one row per finished run, with a ``seed`` column) through a
:class:`Statistic`: a function from that table to one value per seed, with a readable description
and the rows it reads. The helpers build the common ones declaratively:

* :func:`paired_difference` — metric(arm a) − metric(arm b), paired by seed (and by the ``match``
  columns, averaged over the declared cells per seed: a region, not one edge cell);
* :func:`interaction` — (a − b) − (c − d) per seed;
* :func:`rank_correlation` — Kendall's τ_b between two columns over the runs of one seed;
* :func:`run_value` — a summary one run computed itself; :func:`pooled_value` — the mean, minimum or
  maximum of a metric over a declared region of runs, per seed.

An arm is a filter ``{column: value or list of values}`` (:func:`select`); unknown columns, unpaired or
duplicate runs, empty arms and NaN metrics are errors naming the runs, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidInputError
from .stats import kendall_tau

__all__ = ["AGGREGATES", "Statistic", "Where", "format_where", "interaction", "is_flag", "normalise_where",
           "paired_difference", "pooled_value", "rank_correlation", "row_mask", "run_value", "select", "versus_best"]


Where = tuple  # normalised filter: ((column, value or tuple of values), ...)


def normalise_where(where: Mapping[str, Any], what: str) -> Where:
    """A filter mapping as a hashable, sorted tuple of (column, value) pairs; lists become tuples."""
    if not isinstance(where, Mapping):
        raise InvalidInputError(f"{what} must be a mapping column → value (or list of values), got {where!r}")
    out = []
    for col, val in where.items():
        if not isinstance(col, str):
            raise InvalidInputError(f"{what}: column names must be strings, got {col!r}")
        if isinstance(val, (list, tuple, set, frozenset)):
            val = tuple(sorted(val, key=repr)) if isinstance(val, (set, frozenset)) else tuple(val)
        out.append((col, val))
    return tuple(sorted(out))


def format_where(where: Where) -> str:
    if not where:
        return "all runs"
    return ", ".join(f"{c} ∈ {{{', '.join(map(repr, v))}}}" if isinstance(v, tuple) else f"{c} = {v!r}"
                     for c, v in where)


def row_mask(df: pd.DataFrame, where: Where) -> pd.Series:
    missing = [c for c, _ in where if c not in df.columns]
    if missing:
        raise InvalidInputError(f"unknown column(s) {missing} in filter ({format_where(where)}); "
                                f"the runs have {list(df.columns)}")
    mask = pd.Series(True, index=df.index)
    for col, val in where:
        mask &= df[col].isin(val) if isinstance(val, tuple) else (df[col] == val)
    return mask


def select(df: pd.DataFrame, where: Mapping[str, Any]) -> pd.DataFrame:
    """The rows of ``df`` matching every ``column: value`` (a list/tuple/set value means "any of")."""
    return df[row_mask(df, normalise_where(where, "filter"))]


def _need_columns(df: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InvalidInputError(f"{what}: unknown column(s) {missing}; the runs have {list(df.columns)}")


def is_flag(v: Any) -> bool:
    """True/False, a NumPy boolean, or the number 0 or 1 (NaN, None and strings are not flags)."""
    return isinstance(v, (bool, np.bool_)) or (isinstance(v, (int, float, np.integer, np.floating)) and v in (0, 1))


@dataclass(frozen=True)
class Statistic:
    """A per-seed statistic: ``compute(df)`` → pandas Series of one value per seed, indexed by seed.

    ``rows(df)`` returns the rows the statistic reads (used to flag capped runs); ``description`` is
    printed in every verdict's rule.
    """

    description: str
    compute: Callable[[pd.DataFrame], pd.Series]
    rows: Callable[[pd.DataFrame], pd.DataFrame]
    seed_column: str = "seed"

    def __call__(self, df: pd.DataFrame) -> pd.Series:
        return self.compute(df)


def _arm_values(df: pd.DataFrame, metric: str, where: Where, keys: list[str], label: str) -> pd.DataFrame:
    """The arm's rows (keys + metric), refusing an empty arm, duplicate keys and non-finite metrics."""
    _need_columns(df, [metric, *keys], f"arm {label} ({format_where(where)})")
    sub = df.loc[row_mask(df, where), [*keys, metric]]
    if sub.empty:
        raise InvalidInputError(f"arm {label} ({format_where(where)}) matches no runs")
    dup = sub[sub.duplicated(keys, keep=False)]
    if not dup.empty:
        raise InvalidInputError(f"arm {label} ({format_where(where)}) has several runs for the same {keys}: "
                                f"{dup[keys].drop_duplicates().to_dict('records')[:5]}; narrow the arm or add "
                                "the distinguishing column to match=")
    bad = sub[~np.isfinite(sub[metric].astype(float))]
    if not bad.empty:
        raise InvalidInputError(f"arm {label} ({format_where(where)}): {metric} is NaN or inf for "
                                f"{bad[keys].to_dict('records')[:10]}; exclude those runs explicitly")
    return sub


def paired_difference(metric: str, arm_a: Mapping[str, Any], arm_b: Mapping[str, Any], *,
                      match: Sequence[str] = (), seed_column: str = "seed") -> Statistic:
    """Per seed, ``metric`` in arm a minus ``metric`` in arm b (arms are column filters).

    Without ``match`` each arm must hold exactly one run per seed. With ``match`` (e.g. ``("batch_size",)``)
    runs are paired by seed *and* those columns, and the per-seed value is the mean of the paired
    differences over the matched cells — how a claim about a declared region ("at large batch sizes",
    rule 4) averages over the region instead of resting on its most extreme cell. A seed or cell present
    in one arm only is an error naming it, never silently dropped.
    """
    a, b = normalise_where(arm_a, "arm_a"), normalise_where(arm_b, "arm_b")
    if a == b:
        raise InvalidInputError(f"arm_a and arm_b are the same filter ({format_where(a)})")
    keys = [seed_column, *match]
    desc = (f"paired difference of {metric}: ({format_where(a)}) − ({format_where(b)}), paired by {seed_column}"
            + (f" and {list(match)}, averaged over the matched cells" if match else ""))

    def compute(df: pd.DataFrame) -> pd.Series:
        va = _arm_values(df, metric, a, keys, "a")
        vb = _arm_values(df, metric, b, keys, "b")
        m = va.merge(vb, on=keys, how="outer", suffixes=("_a", "_b"), indicator=True)
        lone = m[m["_merge"] != "both"]
        if not lone.empty:
            raise InvalidInputError(f"{desc}: unpaired runs (present in one arm only) at "
                                    f"{lone[keys + ['_merge']].to_dict('records')[:10]}")
        diff = m[f"{metric}_a"].astype(float) - m[f"{metric}_b"].astype(float)
        return diff.groupby(m[seed_column]).mean().rename(metric)

    def rows(df: pd.DataFrame) -> pd.DataFrame:
        return df[row_mask(df, a) | row_mask(df, b)]

    return Statistic(desc, compute, rows, seed_column)


def interaction(metric: str, a: Mapping[str, Any], b: Mapping[str, Any], c: Mapping[str, Any],
                d: Mapping[str, Any], *, match: Sequence[str] = (), seed_column: str = "seed") -> Statistic:
    """Per seed, the difference of two paired differences: (a − b) − (c − d) of ``metric``.

    Each difference is :func:`paired_difference` (with the same ``match``); both must cover the same
    seeds. Positive when the effect a − b exceeds the effect c − d.
    """
    d1 = paired_difference(metric, a, b, match=match, seed_column=seed_column)
    d2 = paired_difference(metric, c, d, match=match, seed_column=seed_column)
    desc = f"interaction of {metric}: [{d1.description}] − [{d2.description}]"

    def compute(df: pd.DataFrame) -> pd.Series:
        s1, s2 = d1(df), d2(df)
        only = sorted(set(s1.index) ^ set(s2.index), key=repr)
        if only:
            raise InvalidInputError(f"{desc}: the two differences cover different seeds; unpaired {only[:10]}")
        return (s1 - s2.reindex(s1.index)).rename(metric)

    def rows(df: pd.DataFrame) -> pd.DataFrame:
        return df[df.index.isin(d1.rows(df).index.union(d2.rows(df).index))]

    return Statistic(desc, compute, rows, seed_column)


def rank_correlation(x: str, y: str, within: Mapping[str, Any], *, seed_column: str = "seed") -> Statistic:
    """Per seed, Kendall's τ_b between columns ``x`` and ``y`` over the runs selected by ``within``.

    Each seed's τ is one replicate (:func:`hesslens.studies.stats.kendall_taus`); a seed whose τ is
    undefined (one run, or a constant x or y) is an error naming the seed.
    """
    w = normalise_where(within, "within")
    desc = f"Kendall τ_b between {x} and {y} over runs with {format_where(w)}, per {seed_column}"

    def compute(df: pd.DataFrame) -> pd.Series:
        _need_columns(df, [x, y, seed_column], desc)
        sub = df[row_mask(df, w)]
        if sub.empty:
            raise InvalidInputError(f"{desc}: no runs match")
        taus = {}
        for seed, g in sub.groupby(seed_column, sort=True):
            try:
                taus[seed] = kendall_tau(g[x].to_numpy(), g[y].to_numpy())
            except InvalidInputError as exc:
                raise InvalidInputError(f"{desc}: {seed_column} = {seed!r}: {exc}") from None
        return pd.Series(taus, name="kendall_tau", dtype=float)

    return Statistic(desc, compute, lambda df: df[row_mask(df, w)], seed_column)


def versus_best(metric: str, arm: Mapping[str, Any], candidates: Sequence[Mapping[str, Any]], *,
                seed_column: str = "seed") -> Statistic:
    """Per seed, ``metric`` in ``arm`` minus ``metric`` in the best candidate arm, paired by seed.

    The best candidate is the one with the highest mean ``metric`` over seeds, chosen once for all
    seeds (not per seed, which would pick each seed's luckiest run). It is chosen on the same runs it
    is then compared with, so the difference is biased towards the arm looking worse; a claim that the
    arm is worse than "the best" alternative must say so (the description does).
    """
    cands = [normalise_where(c, f"candidate {i}") for i, c in enumerate(candidates)]
    if len(cands) < 2:
        raise InvalidInputError(f"versus_best needs at least 2 candidate arms, got {len(cands)}")
    a = normalise_where(arm, "arm")
    names = "; ".join(f"({format_where(c)})" for c in cands)
    desc = (f"{metric} of ({format_where(a)}) − {metric} of the best of {names} by mean {metric} over seeds, paired "
            f"by {seed_column} (the best is chosen on these runs, which favours a negative difference)")

    def best(df: pd.DataFrame) -> Where:
        means = [_arm_values(df, metric, c, [seed_column], f"candidate {i}")[metric].astype(float).mean()
                 for i, c in enumerate(cands)]
        return cands[int(np.argmax(means))]

    def compute(df: pd.DataFrame) -> pd.Series:
        return paired_difference(metric, dict(a), dict(best(df)), seed_column=seed_column)(df)

    def rows(df: pd.DataFrame) -> pd.DataFrame:
        mask = row_mask(df, a)
        for c in cands:
            mask |= row_mask(df, c)
        return df[mask]

    return Statistic(desc, compute, rows, seed_column)


def run_value(metric: str, where: Mapping[str, Any], *, minus: float = 0.0, seed_column: str = "seed") -> Statistic:
    """Per seed, ``metric − minus`` of the one run matching ``where`` (a statistic of single runs, e.g. a
    summary the run computed itself); several or no runs for a seed are an error naming the filter."""
    w = normalise_where(where, "runs")
    desc = f"{metric} − {minus:g} of the run with {format_where(w)}" if minus else f"{metric} of the run with {format_where(w)}"

    def compute(df: pd.DataFrame) -> pd.Series:
        sub = _arm_values(df, metric, w, [seed_column], "runs")
        return (sub.set_index(seed_column)[metric].astype(float) - minus).rename(metric)

    return Statistic(desc, compute, lambda df: df[row_mask(df, w)], seed_column)


#: How :func:`pooled_value` combines the runs of one seed.
AGGREGATES = ("mean", "min", "max")


def pooled_value(metric: str, where: Mapping[str, Any], *, how: str = "mean", minus: float = 0.0,
                 seed_column: str = "seed", per_seed: int | None = None) -> Statistic:
    """Per seed, the ``how`` (mean, min or max) of ``metric − minus`` over every run matching ``where``.

    The region is declared by the filter, so a claim about "every run" (``how="min"`` against a threshold)
    or "on average over the cells" (``"mean"``) reads all of it, not its most favourable cell. ``per_seed``
    (optional) is the number of runs each seed must have there: a seed with fewer or more (a study still
    running, or a filter that matches more than intended) is an error naming it, never silently averaged.
    """
    if how not in AGGREGATES:
        raise InvalidInputError(f"how must be one of {AGGREGATES}, got {how!r}")
    w = normalise_where(where, "runs")
    shift = f" − {minus:g}" if minus else ""
    desc = f"{how} of {metric}{shift} over {'the runs with ' if w else ''}{format_where(w)}, per {seed_column}"

    def compute(df: pd.DataFrame) -> pd.Series:
        _need_columns(df, [metric, seed_column], desc)
        sub = df.loc[row_mask(df, w), [seed_column, metric]]
        if sub.empty:
            raise InvalidInputError(f"{desc}: no runs match")
        bad = sub[~np.isfinite(sub[metric].astype(float))]
        if not bad.empty:
            raise InvalidInputError(f"{desc}: {metric} is NaN or inf for {seed_column}s "
                                    f"{sorted(set(bad[seed_column]), key=repr)[:10]}; exclude those runs explicitly")
        if per_seed is not None:
            counts = sub.groupby(seed_column).size()
            off = counts[counts != per_seed]
            if not off.empty:
                raise InvalidInputError(f"{desc}: expected {per_seed} runs per seed, got {off.to_dict()}")
        return (sub[metric].astype(float) - minus).groupby(sub[seed_column]).agg(how).rename(metric)

    return Statistic(desc, compute, lambda df: df[row_mask(df, w)], seed_column)
