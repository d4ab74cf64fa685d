"""Claims about a paper, declared before the data, decided from per-seed statistics.

A :class:`Claim` states its sentence, the runs it reads, a per-seed statistic and the side it predicts;
:meth:`Claim.decide` turns a results table into a :class:`Verdict` by a rule fixed in code
(the project's study standards, rules 1, 3, 5, 6, 7):

* ``greater`` / ``less``: **supported** when the 95 % Student-t interval of the per-seed statistic over
  seeds lies entirely above / below 0; **contradicted** when it lies entirely on the other side;
  otherwise **inconclusive**.
* ``equivalent`` ("no effect", "vanishes"): **supported** when TOST at α = 0.05 passes against the
  declared margin m (the 90 % interval lies inside (−m, m)); **contradicted** when the 95 % interval lies
  entirely outside (−m, m) (|effect| ≥ m at the usual level); otherwise **inconclusive**. The two
  cannot both hold, since the 90 % interval lies inside the 95 % one.
* **not_decided**, with the reason, for a smoke preset (rule 7), fewer than 2 seeds (no interval), or
  when the rows the statistic reads include capped runs (``capped`` column True) and the claim does not
  allow them (rule 5). A claim that allows capped runs keeps a decisive verdict only if the seeds
  without capped runs give the same verdict, so capped runs never carry a verdict alone.

:func:`robustness` decides again on two disjoint seed subsets (rule 6): a verdict that flips between
supported and contradicted is inconclusive. The per-seed statistics come from :mod:`.arms`
(:func:`paired_difference`, :func:`interaction`, :func:`rank_correlation`, re-exported here).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import pandas as pd

from ..errors import InvalidInputError
from .arms import (Statistic, format_where, interaction, is_flag, normalise_where, paired_difference,
                   rank_correlation, row_mask, select)
from .stats import Interval, as_values, mean_interval, tost

__all__ = ["DIRECTIONS", "LEVEL", "STATUSES", "TOST_ALPHA", "Claim", "Robustness", "Statistic", "Verdict",
           "interaction", "paired_difference", "rank_correlation", "robustness", "select", "split_seeds"]

STATUSES = ("supported", "contradicted", "inconclusive", "not_decided")
DIRECTIONS = ("greater", "less", "equivalent")
#: Level of the decision interval; fixed, not an argument, so the rule cannot be tuned after the fact.
LEVEL = 0.95
#: Level of each one-sided test of TOST (its interval is the 1 − 2α = 90 % one).
TOST_ALPHA = 0.05

@dataclass(frozen=True)
class Verdict:
    """The decision on one claim: status, effect (mean of the per-seed statistic), its 95 % interval,
    the number of seeds, the rule that decided, and notes (reasons, TOST p-values, capped runs)."""

    claim: str
    status: str
    effect: float
    interval: Interval
    n_seeds: int
    rule: str
    notes: tuple[str, ...] = ()

    def line(self) -> str:
        """One line: claim, status, effect with its interval, n seeds, rule, notes."""
        bounds = (f"[{self.interval.low:+.4g}, {self.interval.high:+.4g}]" if self.interval.defined
                  else "[undefined]")
        effect = f"{self.effect:+.4g}" if math.isfinite(self.effect) else "n/a"
        notes = f" Notes: {'; '.join(self.notes)}." if self.notes else ""
        return (f"{self.claim}: {self.status.upper().replace('_', ' ')} — effect {effect}, "
                f"{self.interval.level:.0%} CI {bounds}, n = {self.n_seeds} seeds. Rule: {self.rule}.{notes}")


_NO_INTERVAL = Interval(math.nan, math.nan, math.nan, 0, LEVEL, "t-interval")


@dataclass(frozen=True)
class Claim:
    """A claim declared before the data: sentence, runs read, per-seed statistic, predicted side.

    ``statistic`` maps the finished runs (a DataFrame with a ``seed_column``) to one value per seed (a
    Series indexed by seed); :class:`Statistic` helpers also say which rows they read. ``reads`` is a
    column filter applied before the statistic (a mapping) or a description of the runs read (a str).
    ``margin`` (> 0) is required for ``direction="equivalent"`` and refused otherwise.
    """

    name: str
    sentence: str
    reads: Any
    statistic: Callable[[pd.DataFrame], pd.Series]
    direction: Literal["greater", "less", "equivalent"]
    margin: float | None = None
    allow_capped: bool = False
    seed_column: str = "seed"
    capped_column: str = "capped"

    def __post_init__(self) -> None:
        for field in ("name", "sentence", "seed_column", "capped_column"):
            v = getattr(self, field)
            if not (isinstance(v, str) and v.strip()):
                raise InvalidInputError(f"claim {field} must be a non-empty string, got {v!r}")
        if not callable(self.statistic):
            raise InvalidInputError(f"claim {self.name!r}: statistic must be callable, got {self.statistic!r}")
        if self.direction not in DIRECTIONS:
            raise InvalidInputError(f"claim {self.name!r}: direction must be one of {DIRECTIONS}, got "
                                    f"{self.direction!r}")
        if self.direction == "equivalent":
            m = self.margin
            if isinstance(m, bool) or not (isinstance(m, (int, float)) and math.isfinite(m) and m > 0):
                raise InvalidInputError(f"claim {self.name!r}: direction 'equivalent' needs a margin > 0 declared "
                                        f"in advance, got {m!r}")
        elif self.margin is not None:
            raise InvalidInputError(f"claim {self.name!r}: a margin is only used with direction 'equivalent', "
                                    f"not {self.direction!r}")
        if not isinstance(self.allow_capped, bool):
            raise InvalidInputError(f"claim {self.name!r}: allow_capped must be a bool")
        if isinstance(self.reads, Mapping):
            object.__setattr__(self, "reads", normalise_where(self.reads, f"claim {self.name!r} reads"))
        elif not (isinstance(self.reads, str) and self.reads.strip()):
            raise InvalidInputError(f"claim {self.name!r}: reads must be a column filter (mapping) or a "
                                    f"non-empty description, got {self.reads!r}")
        own = getattr(self.statistic, "seed_column", self.seed_column)
        if own != self.seed_column:
            raise InvalidInputError(f"claim {self.name!r}: the statistic pairs by {own!r} but the claim's "
                                    f"seed column is {self.seed_column!r}")

    @property
    def reads_text(self) -> str:
        return self.reads if isinstance(self.reads, str) else format_where(self.reads)

    @property
    def rule(self) -> str:
        """The decision rule in words, including the statistic it applies to."""
        stat = getattr(self.statistic, "description", getattr(self.statistic, "__name__", "statistic"))
        head = f"per-seed {stat}, over {self.reads_text}; "
        if self.direction == "equivalent":
            m = f"{self.margin:g}"
            return (head + f"supported if TOST (α = {TOST_ALPHA:g}) shows |effect| < {m} (90 % t-interval inside "
                    f"(−{m}, {m})), contradicted if the 95 % t-interval lies outside (−{m}, {m}), else inconclusive")
        side, other = ("above", "below") if self.direction == "greater" else ("below", "above")
        return (head + f"supported if the 95 % t-interval over seeds lies {side} 0, contradicted if it lies "
                f"{other} 0, else inconclusive")

    def _read(self, df: pd.DataFrame) -> pd.DataFrame:
        if not isinstance(df, pd.DataFrame):
            raise InvalidInputError(f"claim {self.name!r}: the runs must be a pandas DataFrame, got {type(df)}")
        if self.seed_column not in df.columns:
            raise InvalidInputError(f"claim {self.name!r}: unknown seed column {self.seed_column!r}; the runs "
                                    f"have {list(df.columns)}")
        return df[row_mask(df, self.reads)] if isinstance(self.reads, tuple) else df

    def _values(self, data: pd.DataFrame) -> pd.Series:
        s = self.statistic(data)
        if not isinstance(s, pd.Series):
            raise InvalidInputError(f"claim {self.name!r}: the statistic must return a pandas Series indexed by "
                                    f"seed, got {type(s).__name__}")
        if s.index.has_duplicates:
            raise InvalidInputError(f"claim {self.name!r}: the statistic returned several values for seeds "
                                    f"{sorted(set(s.index[s.index.duplicated()]), key=repr)}")
        unknown = sorted(set(s.index) - set(data[self.seed_column]), key=repr)
        if unknown:
            raise InvalidInputError(f"claim {self.name!r}: the statistic is indexed by {unknown[:10]}, which are "
                                    f"not values of {self.seed_column!r} in the runs it read")
        as_values(s, f"claim {self.name!r}: per-seed statistic (labels are seeds)")  # NaN → error naming seeds
        return s.astype(float)

    def _capped_seeds(self, data: pd.DataFrame) -> tuple[list, int] | None:
        """Seeds with a capped run among the statistic's rows and the number of such runs (None: no column)."""
        if self.capped_column not in data.columns:
            return None
        rows = self.statistic.rows(data) if isinstance(self.statistic, Statistic) else data
        flags = rows[self.capped_column]
        # Only real booleans (or 0/1): a string "False" is truthy, and a missing flag is not "not capped".
        odd = rows[~flags.map(is_flag).astype(bool)]
        if not odd.empty:
            raise InvalidInputError(f"claim {self.name!r}: {self.capped_column!r} must be True/False; got "
                                    f"{odd[self.capped_column].tolist()[:5]} for seeds "
                                    f"{sorted(set(odd[self.seed_column]), key=repr)[:10]}")
        capped = rows[flags.astype(bool)]
        return sorted(set(capped[self.seed_column]), key=repr), len(capped)

    def _status(self, values: pd.Series, iv: Interval) -> tuple[str, list[str]]:
        if self.direction == "equivalent":
            eq = tost(values.to_numpy(), self.margin, TOST_ALPHA)
            note = (f"TOST p = {eq.p:.3g} (p_lower = {eq.p_lower:.3g}, p_upper = {eq.p_upper:.3g}), 90 % CI "
                    f"[{eq.interval.low:+.4g}, {eq.interval.high:+.4g}] against ±{self.margin:g}")
            if eq.equivalent:
                return "supported", [note]
            if iv.low >= self.margin or iv.high <= -self.margin:
                return "contradicted", [note]
            return "inconclusive", [note]
        above, below = iv.low > 0, iv.high < 0
        if self.direction == "greater":
            return ("supported" if above else "contradicted" if below else "inconclusive"), []
        return ("supported" if below else "contradicted" if above else "inconclusive"), []

    def decide(self, df: pd.DataFrame, *, smoke: bool = False) -> Verdict:
        """The verdict on the runs in ``df`` (see the module docstring for the rule)."""
        data = self._read(df)
        values = self._values(data)  # computed even for smoke runs: they exercise the code
        n = len(values)
        iv = mean_interval(values.to_numpy(), LEVEL) if n else _NO_INTERVAL
        verdict = Verdict(self.name, "not_decided", iv.estimate, iv, n, self.rule)

        def undecided(reason: str) -> Verdict:
            return replace(verdict, notes=(reason,))

        if smoke:
            return undecided("smoke preset: it exercises the code and prints no verdict (rule 7)")
        capped = self._capped_seeds(data)
        notes: list[str] = []
        if capped is None:
            notes.append(f"no {self.capped_column!r} column: capped runs not checked")
        elif capped[0] and not self.allow_capped:
            return undecided(f"{capped[1]} capped run(s) among the rows read (seeds {capped[0][:10]}); "
                             "capped runs never carry a verdict (rule 5)")
        if n < 2:
            return undecided(f"{n} seed(s): a 95 % interval needs at least 2")
        status, more = self._status(values, iv)
        notes += more
        if capped is not None and capped[0]:
            notes.append(f"{capped[1]} capped run(s) allowed, seeds {capped[0][:10]}")
            if status in ("supported", "contradicted"):
                rest = data[~data[self.seed_column].isin(capped[0])]
                alone = (self.decide(rest).status if rest[self.seed_column].nunique() >= 2 else "not_decided")
                if alone != status:
                    notes.append(f"without the seeds of capped runs the verdict is {alone}: the capped runs "
                                 f"would carry it, so inconclusive (rule 5)")
                    status = "inconclusive"
        return replace(verdict, status=status, notes=tuple(notes))


@dataclass(frozen=True)
class Robustness:
    """A claim decided on all seeds and on two disjoint seed subsets (rule 6).

    ``verdict`` is the final one: the all-seeds verdict, made ``inconclusive`` when the two subsets
    flip between supported and contradicted. ``full`` is the all-seeds verdict before that rule.
    """

    verdict: Verdict
    full: Verdict
    subsets: tuple[Verdict, Verdict]
    seeds: tuple[tuple, tuple]

    def lines(self) -> list[str]:
        return [self.verdict.line()] + [f"  seeds {list(s)}: {v.line()}" for s, v in zip(self.seeds, self.subsets)]


def split_seeds(seeds: Iterable) -> tuple[tuple, tuple]:
    """Two disjoint halves of the sorted seeds, alternating (1st, 3rd, … and 2nd, 4th, …).

    Alternating rather than first/second half, so a drift with the seed number (e.g. seeds added in a
    later batch) does not line up with the split.
    """
    distinct = set(seeds)
    try:
        s = sorted(distinct)
    except TypeError:  # mixed, unorderable labels: any fixed order will do
        s = sorted(distinct, key=repr)
    return tuple(s[0::2]), tuple(s[1::2])


def robustness(claim: Claim, df: pd.DataFrame, subsets: Sequence[Iterable] | None = None, *,
               smoke: bool = False) -> Robustness:
    """Decide ``claim`` on all runs and on two disjoint seed subsets (default: :func:`split_seeds`).

    Combined rule: if one subset is ``supported`` and the other ``contradicted`` the claim is
    ``inconclusive``; otherwise it keeps the all-seeds verdict (an inconclusive or undecided subset —
    usual with half the seeds — does not overturn it; the page shows both subset verdicts).
    """
    data = claim._read(df)
    if subsets is None:
        subsets = split_seeds(data[claim.seed_column])
    subsets = [tuple(s) for s in subsets]
    if len(subsets) != 2:
        raise InvalidInputError(f"robustness needs exactly two seed subsets, got {len(subsets)}")
    if not subsets[0] or not subsets[1]:
        raise InvalidInputError("robustness: both seed subsets must be non-empty")
    both = set(subsets[0]) & set(subsets[1])
    if both:
        raise InvalidInputError(f"robustness: the seed subsets must be disjoint; both hold {sorted(both, key=repr)}")
    unknown = sorted((set(subsets[0]) | set(subsets[1])) - set(data[claim.seed_column]), key=repr)
    if unknown:
        raise InvalidInputError(f"robustness: seeds {unknown} are not among the runs claim {claim.name!r} reads")
    full = claim.decide(df, smoke=smoke)
    parts = tuple(claim.decide(data[data[claim.seed_column].isin(s)], smoke=smoke) for s in subsets)
    statuses = {p.status for p in parts}
    verdict = full
    note = f"seed subsets: {parts[0].status} (n = {parts[0].n_seeds}), {parts[1].status} (n = {parts[1].n_seeds})"
    if full.status != "not_decided":
        if statuses == {"supported", "contradicted"}:
            verdict = replace(full, status="inconclusive",
                              notes=full.notes + (note + "; they flip, so inconclusive (rule 6)",))
        else:
            verdict = replace(full, notes=full.notes + (note,))
    return Robustness(verdict, full, parts, (subsets[0], subsets[1]))
