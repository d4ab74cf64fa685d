"""The HESD-type study's report: verdicts of the declared claims, descriptive tables and figures.

:func:`analyze` decides every claim of the design the runs belong to (``FULL``, or ``SMOKE`` for smoke
runs, which print no verdicts) on all seeds and on two disjoint seed subsets
(:func:`hesslens.studies.verdicts.verdict_table`), and tabulates the types per treatment (mean C over
seeds with its 95 % t-interval), the collapse runs and the shifts. :func:`report_hesd` is the study's
report hook: ``analysis.md`` (every rule in words), ``claims.csv``, ``types.csv``, ``collapse.csv``,
``shifts.csv`` and the figures of :mod:`.figures`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...render import table
from ..claims import split_seeds
from ..declaration import ReportContent
from ..finished import finished_runs
from ..stats import mean_interval
from ..verdicts import claims_markdown, shown, verdict_table
from .claims import OFF, declare
from .design import FULL, SMOKE, Design

__all__ = ["HesdAnalysis", "analyze", "report_hesd", "treatment"]

_FLAGS = ("shifts", "decisive", "applicable", "capped", "diverged", "reached_target", "tau_mp_defined",
          "tau_nonmp_defined", "qs_reached", "full_batch", "batchnorm")


@dataclass(frozen=True)
class HesdAnalysis:
    """What :func:`analyze` computes from the results table."""

    design: Design
    smoke: bool
    claims: pd.DataFrame  # verdict_table columns
    types: pd.DataFrame  # per treatment and activation: runs, type counts, C over seeds
    collapse: pd.DataFrame  # per collapse run group: QS reached, first epoch, log ratio
    runs: pd.DataFrame


def treatment(d: Design, row: pd.Series) -> str:
    """A run's treatment in words: the optimiser or manipulation, how it started, what it tracked."""
    if row["experiment"] == "collapse":
        return f"long run, {row['optimizer']}"
    if row["experiment"] == "duration":
        clipped = row["clip_norm"]
        return f"fine-tuning tracked, {'clip_norm ' + format(clipped, 'g') if clipped else row['optimizer']}"
    if row["experiment"] == "manipulated":
        for name, fields in d.manipulations:
            if all(row[k] == v for k, v in {**OFF, **fields}.items()):
                return f"{name}, {'fine-tuning' if row['finetune'] else 'from scratch'}"
        return "manipulated (unknown)"
    if row["experiment"] == "finetune":
        return f"fine-tuning, {row['optimizer']}"
    return f"{row['optimizer']}{' + augmentation' if row['augment'] else ''}"


def analyze(df: pd.DataFrame, *, subsets: tuple | None = None) -> HesdAnalysis:
    """Decide the claims on the finished runs of ``df`` (the study's results table, e.g. ``results.csv``)."""
    runs, smoke = finished_runs(df, _FLAGS)
    for col in ("augment", "finetune"):  # empty strings: read back from a CSV as NaN
        if col in runs:
            runs[col] = runs[col].fillna("").astype(str)
    design = SMOKE if smoke else FULL
    claims = verdict_table(declare(design), runs, smoke=smoke, subsets=subsets)
    if len(runs):
        runs = runs.assign(treatment=[treatment(design, r) for _, r in runs.iterrows()])
    return HesdAnalysis(design, smoke, claims, _types(runs), _collapse(runs), runs)


def _over_seeds(g: pd.DataFrame, column: str) -> tuple[float, float, float]:
    """Mean over seeds of the per-seed mean of ``column``, with its 95 % t-interval (NaN bounds for one seed)."""
    per_seed = g.groupby("seed")[column].mean().astype(float).to_numpy()
    per_seed = per_seed[np.isfinite(per_seed)]
    if not len(per_seed):
        return math.nan, math.nan, math.nan
    iv = mean_interval(per_seed)
    return iv.estimate, iv.low, iv.high


def _types(runs: pd.DataFrame) -> pd.DataFrame:
    columns = ["experiment", "treatment", "activation", "runs", "seeds", "MP", "MN", "QS", "decisive", "C", "C_low",
               "C_high", "negative_weight", "test_acc"]
    if runs.empty or "balance" not in runs:
        return pd.DataFrame(columns=columns)
    rows = []
    order = {"ordinary": 0, "finetune": 1, "manipulated": 2, "duration": 3, "collapse": 4}
    for (exp, treat, act), g in runs.groupby(["experiment", "treatment", "activation"], sort=False):
        c, lo, hi = _over_seeds(g, "balance")
        kinds = g["hesd_type"].value_counts()
        rows.append({"experiment": exp, "treatment": treat, "activation": act, "runs": len(g),
                     "seeds": g["seed"].nunique(), **{k: int(kinds.get(k, 0)) for k in ("MP", "MN", "QS")},
                     "decisive": int(g["decisive"].sum()), "C": c, "C_low": lo, "C_high": hi,
                     "negative_weight": float(g["negative_weight"].mean()), "test_acc": float(g["test_acc"].mean())})
    out = pd.DataFrame(rows, columns=columns)
    out["_order"] = out["experiment"].map(order)
    return out.sort_values(["_order", "treatment", "activation"], kind="stable").drop(columns="_order").reset_index(
        drop=True)


def _collapse(runs: pd.DataFrame) -> pd.DataFrame:
    if runs.empty or "qs_log_ratio" not in runs:
        return pd.DataFrame()
    rows = []
    for (ds, act, opt), g in runs[runs["experiment"] == "collapse"].groupby(["dataset", "activation", "optimizer"]):
        r, lo, hi = _over_seeds(g, "qs_log_ratio")
        rows.append({"dataset": ds, "activation": act, "optimizer": opt, "runs": len(g),
                     "qs_reached": int(g["qs_reached"].sum()), "first_qs_epoch": float(g["qs_first_epoch"].mean()),
                     "log10_ratio": r, "ci_low": lo, "ci_high": hi,
                     "peak_scale": float(g["peak_scale"].mean()), "final_scale": float(g["final_scale"].mean()),
                     "final_loss": float(g["final_tracked_loss"].mean()), "final_type": ", ".join(
                         f"{k} {v}" for k, v in g["hesd_type"].value_counts().items())})
    return pd.DataFrame(rows)


def shift_table(runs: pd.DataFrame, artifacts: Any) -> pd.DataFrame:
    """Every shifted assessment of every run with ``shifts``, one row per (run, shift), with the run's columns."""
    if artifacts is None or runs.empty or "shifts" not in runs:
        return pd.DataFrame()
    parts = []
    for _, r in runs[runs["shifts"]].iterrows():
        t = artifacts(r["run_key"], int(r["seed"])).get("shifts")
        if t is not None:
            parts.append(t.assign(run_key=r["run_key"], seed=r["seed"], net=f"{r['dataset']}/{r['arch']}/"
                                  f"{r['activation']}", treatment=r["treatment"]))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()



def _types_shown(types: pd.DataFrame) -> pd.DataFrame:
    return types.assign(C_ci=[f"[{lo:+.3f}, {hi:+.3f}]" if math.isfinite(lo) else "" for lo, hi in
                              zip(types["C_low"], types["C_high"])]).drop(columns=["C_low", "C_high"])


def analysis_markdown(a: HesdAnalysis, shifts: pd.DataFrame) -> str:
    """Every verdict with its rule and notes, and the descriptive tables, as Markdown."""
    n_seeds = a.runs["seed"].nunique() if len(a.runs) else 0
    out = ["# HESD-type study: analysis", "",
           ("**Smoke preset: it exercises the code; no claim is decided (study standard 7).**" if a.smoke else
            f"Design `{a.design.scale}`; {len(a.runs)} runs over {n_seeds} seeds."), "", "## Claims", "", *claims_markdown(a.claims)]
    out += ["## Types per treatment", "", table(_types_shown(a.types), float_digits=3, blank=""), "",
            "## Collapse runs", "", table(a.collapse, float_digits=3, blank="") if len(a.collapse) else "None.", ""]
    if len(shifts):
        out += ["## Shifts (means over nets and seeds)", "", table(shift_summary(shifts), float_digits=3, blank=""), ""]
    return "\n".join(out)


def shift_summary(shifts: pd.DataFrame) -> pd.DataFrame:
    """Per shift and activation: assessments, type counts, mean accuracy, Kh and re."""
    rows = []
    for (kind, level, act), g in shifts.assign(activation=shifts["net"].str.rsplit("/", n=1).str[-1]).groupby(
            ["shift", "level", "activation"], dropna=False, sort=False):
        kinds = g["hesd_type"].value_counts()
        rows.append({"shift": kind, "level": level, "activation": act, "cells": len(g),
                     **{k: int(kinds.get(k, 0)) for k in ("MP", "MN", "QS")}, "C": g["balance"].mean(),
                     "accuracy": g["accuracy"].mean(), "kh": g["kh"].mean(), "re": g["re"].mean()})
    return pd.DataFrame(rows)


def report_hesd(df: pd.DataFrame, out: Path, series: pd.DataFrame | None = None, artifacts: Any = None) -> ReportContent:
    """Report hook: figures, ``analysis.md``, ``claims.csv``, ``types.csv``, ``collapse.csv``, ``shifts.csv``."""
    from .figures import FIGURES, figures

    out = Path(out)
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    a = analyze(df)
    shifts = shift_table(a.runs, artifacts)
    paths = {}
    for key, fig in figures(a, shifts, artifacts).items():
        paths[key] = fig_dir / FIGURES[key][0]
        fig.savefig(paths[key], dpi=110, bbox_inches="tight")
    (out / "analysis.md").write_text(analysis_markdown(a, shifts))
    a.claims.to_csv(out / "claims.csv", index=False)
    a.types.to_csv(out / "types.csv", index=False)
    a.collapse.to_csv(out / "collapse.csv", index=False)
    shifts.to_csv(out / "shifts.csv", index=False)
    halves = split_seeds(a.runs["seed"]) if len(a.runs) else ((), ())
    intro = ("Smoke preset: it exercises the code and decides no claim (study standard 7)." if a.smoke else
             f"Each verdict is decided on all seeds, and again on two disjoint seed subsets (subset_a: seeds "
             f"{list(halves[0])}, subset_b: seeds {list(halves[1])}); a claim whose subsets flip between supported "
             "and contradicted is inconclusive. Effects are means over seeds of the per-seed statistic with their "
             "95 % t-interval; rules and notes are in analysis.md.")
    title = "The papers' claims, decided over seeds"
    tables: dict[str, Any] = {title: shown(a.claims)}
    notes = {title: intro}
    if len(a.runs) and a.runs["seed"].nunique() >= 2:
        tables["Types per treatment (C: mean over seeds of the per-seed mean balance, 95 % t-interval)"] = \
            _types_shown(a.types)
        if len(a.collapse):
            tables["Collapse runs (quasi-singularity)"] = a.collapse
        if len(shifts):
            tables["Shifts: means over nets and seeds"] = shift_summary(shifts)
    else:
        notes["Descriptive tables"] = ("Omitted: fewer than 2 seeds, so no interval over seeds (the values are in "
                                       "types.csv, collapse.csv and shifts.csv).")
    return ReportContent(figures={caption: paths[key] for key, (_, caption) in FIGURES.items() if key in paths},
                         tables=tables, notes=notes)
