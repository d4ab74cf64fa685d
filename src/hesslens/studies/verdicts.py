"""Claims built from parts, and the verdict table every study report prints.

A paper's sentence often bundles several testable statements: "larger learning rates lower λ_max *at
every batch size*" is one statement per batch size; "BatchNorm does *not consistently* lower λ_max"
holds when at least one declared cell shows it does not. Two compositions, fixed in code before the
data (study standard 1):

* :class:`AllOf` — every part holds: **supported** when every part is supported, **contradicted** when
  at least one part is contradicted, otherwise **inconclusive**;
* :class:`NotAll` — not every part holds (the negation of :class:`AllOf`): **supported** when at least
  one part is contradicted, **contradicted** when every part is supported, otherwise **inconclusive**.

A composite is ``not_decided`` when any part is (a smoke preset, too few seeds, capped runs). Its
parts are :class:`~hesslens.studies.claims.Claim` objects (or composites) with their own per-seed
statistic, interval and rule, and the verdict table lists them under the composite.

:func:`verdict_table` decides every declared claim on all seeds and on two disjoint seed subsets
(:func:`~hesslens.studies.claims.robustness`, study standard 6) and returns one row per claim and part;
a composite's final verdict combines its parts' final verdicts (each already checked on the subsets).
A claim whose runs are not all there yet (the study still running) is ``not_decided`` with the reason,
never an error in the report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from ..errors import InvalidInputError
from .claims import LEVEL, Claim, Robustness, Verdict, robustness, split_seeds
from .stats import Interval

__all__ = ["VERDICT_COLUMNS", "AllOf", "NotAll", "claims_markdown", "shown", "verdict_table"]

_NONE = Interval(math.nan, math.nan, math.nan, 0, LEVEL, "composite")


@dataclass(frozen=True)
class _Composite:
    name: str
    sentence: str
    parts: tuple[Any, ...]
    seed_column: str = "seed"

    def __post_init__(self) -> None:
        if not (isinstance(self.name, str) and self.name.strip() and isinstance(self.sentence, str)
                and self.sentence.strip()):
            raise InvalidInputError(f"composite claim needs a non-empty name and sentence, got {self.name!r}")
        parts = tuple(self.parts)
        if not parts:
            raise InvalidInputError(f"claim {self.name!r}: a composite needs at least one part")
        for p in parts:
            if not isinstance(p, (Claim, _Composite)):
                raise InvalidInputError(f"claim {self.name!r}: parts must be claims, got {p!r}")
        object.__setattr__(self, "parts", parts)

    def _read(self, df: pd.DataFrame) -> pd.DataFrame:
        return df

    @property
    def rule(self) -> str:
        return self._rule + " (parts: " + ", ".join(p.name for p in self.parts) + ")"

    def decide(self, df: pd.DataFrame, *, smoke: bool = False) -> Verdict:
        verdicts = [decide_safely(p, df, smoke=smoke) for p in self.parts]
        statuses = [v.status for v in verdicts]
        n = min(v.n_seeds for v in verdicts)
        base = Verdict(self.name, "not_decided", math.nan, _NONE, n, self.rule)
        if "not_decided" in statuses:
            reasons = sorted({note for v in verdicts if v.status == "not_decided" for note in v.notes[:1]})
            return replace(base, notes=tuple(reasons) or ("a part is not decided",))
        return replace(base, status=self._combine(statuses),
                       notes=(", ".join(f"{v.claim}: {v.status}" for v in verdicts),))


class AllOf(_Composite):
    """Every part holds (see the module docstring)."""

    _rule = "supported if every part is supported, contradicted if any part is contradicted, else inconclusive"

    @staticmethod
    def _combine(statuses: Sequence[str]) -> str:
        if all(s == "supported" for s in statuses):
            return "supported"
        return "contradicted" if "contradicted" in statuses else "inconclusive"


class NotAll(_Composite):
    """Not every part holds (see the module docstring)."""

    _rule = "supported if any part is contradicted, contradicted if every part is supported, else inconclusive"

    @staticmethod
    def _combine(statuses: Sequence[str]) -> str:
        if "contradicted" in statuses:
            return "supported"
        return "contradicted" if all(s == "supported" for s in statuses) else "inconclusive"


def decide_safely(claim: Any, df: pd.DataFrame, *, smoke: bool = False) -> Verdict:
    """``claim.decide``, with missing or unpaired runs (a study still running) as ``not_decided``."""
    try:
        return claim.decide(df, smoke=smoke)
    except InvalidInputError as exc:
        return Verdict(claim.name, "not_decided", math.nan, _NONE, 0, claim.rule,
                       (f"the runs it reads are incomplete: {exc}",))


def _robust(claim: Any, df: pd.DataFrame, subsets: tuple | None, smoke: bool) -> Robustness | Verdict:
    try:
        return robustness(claim, df, subsets, smoke=smoke)
    except InvalidInputError:
        return decide_safely(claim, df, smoke=smoke)


VERDICT_COLUMNS = ("claim", "sentence", "verdict", "effect", "ci_low", "ci_high", "seeds", "subset_a", "subset_b",
                   "rule", "notes")


def verdict_table(claims: Sequence[Any], df: pd.DataFrame, *, smoke: bool = False,
                  subsets: tuple | None = None) -> pd.DataFrame:
    """One row per claim and per part (parts follow their composite, names prefixed with ``↳``).

    ``verdict`` is the final verdict (all seeds, made inconclusive when the two seed subsets flip);
    ``subset_a``/``subset_b`` are the verdicts on the two disjoint seed subsets (default:
    :func:`~hesslens.studies.claims.split_seeds` of all seeds, named in the column headers' note).
    """
    if subsets is None and "seed" in df.columns and df["seed"].nunique() >= 2:
        subsets = split_seeds(df["seed"])
    rows: list[dict[str, Any]] = []

    def add(claim: Any, depth: int) -> str:
        """Append the claim's row, then its parts' rows; return its final status."""
        r = _robust(claim, df, subsets, smoke)
        v = r.verdict if isinstance(r, Robustness) else r
        sub = [f"{p.status} (n = {p.n_seeds})" for p in r.subsets] if isinstance(r, Robustness) else ["", ""]
        at = len(rows)
        rows.append({})
        finals = [add(part, depth + 1) for part in getattr(claim, "parts", ())]
        if finals and v.status != "not_decided" and "not_decided" not in finals:
            # A composite combines its parts' *final* verdicts (each already checked on the seed
            # subsets), so its row never reads supported above parts that all read inconclusive.
            status = claim._combine(finals)
            if status != v.status:
                v = replace(v, status=status, notes=v.notes + (f"from the parts' final verdicts: {status}",))
        rows[at] = {"claim": "↳ " * depth + claim.name, "sentence": claim.sentence, "verdict": v.status,
                    "effect": v.effect, "ci_low": v.interval.low, "ci_high": v.interval.high, "seeds": v.n_seeds,
                    "subset_a": sub[0], "subset_b": sub[1], "rule": v.rule, "notes": "; ".join(v.notes)}
        return v.status

    for c in claims:
        add(c, 0)
    return pd.DataFrame(rows, columns=list(VERDICT_COLUMNS))


#: The columns of a verdict table as a report shows it (the rule and notes go below it, per claim).
SHOWN_COLUMNS = ("claim", "sentence", "verdict", "effect", "ci", "seeds", "subset_a", "subset_b")


def shown(claims: pd.DataFrame) -> pd.DataFrame:
    """A :func:`verdict_table` as a report shows it: the interval as one ``[low, high]`` column."""
    return claims.assign(ci=[f"[{lo:+.3g}, {hi:+.3g}]" if math.isfinite(lo) else "" for lo, hi in
                             zip(claims["ci_low"], claims["ci_high"])])[list(SHOWN_COLUMNS)]


def claims_markdown(claims: pd.DataFrame) -> list[str]:
    """Markdown lines: the shown table, then every claim's verdict with its rule in words and its notes."""
    from ..render import table

    out = [table(shown(claims), float_digits=3, blank=""), ""]
    for _, r in claims.iterrows():
        out += [f"**{r['claim']} — {r['verdict']}.** {r['sentence']}", "", f"- Rule: {r['rule']}."]
        if r["notes"]:
            out.append(f"- Notes: {r['notes']}.")
        out.append("")
    return out
