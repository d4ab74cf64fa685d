"""The layer-wise study's report: verdicts, the classifiers' accuracies, correlations, rules and figures.

:func:`analyze` decides the claims (:mod:`.claims`) on all seeds and on two disjoint seed subsets, and
tabulates per seed and on average: the held-out accuracies of the spectral, cheap and combined
classifiers (:func:`.learn.cv_accuracy`), Spearman ρ of every spectral feature with the score gap with a
permutation p-value, how often each pattern holds, and the candidate **diagnostic rules** — for each of
"over" and "under" against the rest, the single spectral feature and threshold that best separate them
(a decision stump fitted and scored by the same leave-datasets-out cross-validation). A rule becomes a
flag of :func:`hesslens.layerwise` only with the evidence printed here (``analysis.md``, ``rules.csv``).
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
from .claims import PATTERNS, declare
from .design import CHEAP, FULL, SMOKE, SPECTRAL, Design
from .learn import cv_accuracy

__all__ = ["LayerwiseAnalysis", "analyze", "report_layerwise", "stump_rules"]


@dataclass(frozen=True)
class LayerwiseAnalysis:
    design: Design
    smoke: bool
    claims: pd.DataFrame
    accuracies: pd.DataFrame  # per feature set: per-seed accuracies, mean, interval
    correlations: pd.DataFrame  # per spectral feature: Spearman ρ with the score gap, mean over seeds, p
    rules: pd.DataFrame  # per regime against the rest: feature, direction, threshold, held-out accuracy
    runs: pd.DataFrame


def analyze(df: pd.DataFrame, *, subsets: tuple | None = None) -> LayerwiseAnalysis:
    """Decide the claims on the finished runs of ``df`` (the study's results table)."""
    runs, smoke = finished_runs(df, ("capped", "diverged"))
    design = SMOKE if smoke else FULL
    claims = verdict_table(declare(design), runs, smoke=smoke, subsets=subsets)
    ok = len(runs) and runs["dataset"].nunique() >= design.folds
    return LayerwiseAnalysis(design, smoke, claims, _accuracies(design, runs) if ok else pd.DataFrame(),
                             _correlations(runs) if len(runs) else pd.DataFrame(),
                             stump_rules(runs, design.folds) if ok else pd.DataFrame(), runs)


def _over_seeds(values: list[float]) -> dict[str, float]:
    iv = mean_interval(np.asarray(values, dtype=float))
    return {"mean": iv.estimate, "ci_low": iv.low, "ci_high": iv.high}


def _accuracies(d: Design, runs: pd.DataFrame) -> pd.DataFrame:
    sets = {"spectral": SPECTRAL, "cheap": CHEAP, "spectral + cheap": (*SPECTRAL, *CHEAP)}
    rows = []
    for name, cols in sets.items():
        per_seed = [cv_accuracy(g, cols, folds=d.folds) for _, g in runs.groupby("seed", sort=True)]
        rows.append({"features": name, "n_features": len(cols), "per_seed": ", ".join(f"{a:.3f}" for a in per_seed),
                     **_over_seeds(per_seed)})
    rows.append({"features": "chance", "n_features": 0, "per_seed": "", "mean": 1 / len(d.regimes),
                 "ci_low": math.nan, "ci_high": math.nan})
    return pd.DataFrame(rows)


def _correlations(runs: pd.DataFrame, permutations: int = 999) -> pd.DataFrame:
    from scipy import stats

    rows = []
    for col in SPECTRAL:
        rhos, ps = [], []
        for s, g in runs.groupby("seed", sort=True):
            x, y = g[col].to_numpy(float), g["score_gap"].to_numpy(float)
            keep = np.isfinite(x) & np.isfinite(y)
            if keep.sum() < 3 or np.ptp(x[keep]) == 0:
                continue
            rho = stats.spearmanr(x[keep], y[keep]).statistic
            rng = np.random.default_rng([0, int(s)])
            null = np.array([stats.spearmanr(x[keep], rng.permutation(y[keep])).statistic for _ in range(permutations)])
            rhos.append(rho)
            ps.append((1 + (np.abs(null) >= abs(rho)).sum()) / (1 + permutations))
        if rhos:
            rows.append({"feature": col, "seeds": len(rhos), "rho_mean": float(np.mean(rhos)),
                         "rho_per_seed": ", ".join(f"{r:+.2f}" for r in rhos), "p_max": float(np.max(ps))})
    return pd.DataFrame(rows)


def stump_rules(runs: pd.DataFrame, folds: int = 5) -> pd.DataFrame:
    """For "over" and "under" against the rest: the best single spectral feature and threshold.

    Within each training fold (leave-datasets-out, as claim 1), every feature and every midpoint between
    sorted values is tried as ``feature > t`` or ``feature < t``; the best by training accuracy predicts the
    held-out datasets. The row reports the rule refitted on all runs and its held-out (cross-validated)
    accuracy and the balanced accuracy, pooled over seeds.
    """
    from sklearn.model_selection import GroupKFold

    def fit(x: np.ndarray, y: np.ndarray) -> tuple[int, int, float, float]:
        best = (0, 1, math.nan, -1.0)
        for j in range(x.shape[1]):
            col = x[:, j]
            finite = np.isfinite(col)
            values = np.unique(col[finite])
            for t in (values[:-1] + values[1:]) / 2:
                for sign in (1, -1):
                    acc = float(((sign * (np.nan_to_num(col, nan=-np.inf) - t) > 0) == y).mean())
                    if acc > best[3]:
                        best = (j, sign, float(t), acc)
        return best

    rows = []
    x_all = runs[list(SPECTRAL)].to_numpy(float)
    groups = runs["dataset"].astype(str).to_numpy()
    for regime in ("over", "under"):
        y = (runs["regime"] == regime).to_numpy()
        predicted = np.zeros(len(y), bool)
        for train, test in GroupKFold(n_splits=folds).split(x_all, y, groups):
            j, sign, t, _ = fit(x_all[train], y[train])
            predicted[test] = sign * (np.nan_to_num(x_all[test, j], nan=-np.inf) - t) > 0
        j, sign, t, train_acc = fit(x_all, y)
        balanced = 0.5 * (predicted[y].mean() + (~predicted[~y]).mean())
        rows.append({"regime": regime, "feature": SPECTRAL[j], "rule": f"{SPECTRAL[j]} {'>' if sign > 0 else '<'} {t:.4g}",
                     "threshold": t, "direction": ">" if sign > 0 else "<", "cv_accuracy": float((predicted == y).mean()),
                     "cv_balanced_accuracy": float(balanced), "train_accuracy": train_acc, "runs": len(y)})
    return pd.DataFrame(rows)


def _patterns(runs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for col, (sentence, where) in PATTERNS.items():
        sub = runs
        for k, v in where.items():
            sub = sub[sub[k].isin(v)]
        per_regime = {r: float(g[col].mean()) for r, g in sub.groupby("regime")}
        rows.append({"pattern": col, "holds_in": float(sub[col].mean()), "runs": int(sub[col].notna().sum()),
                     **{f"holds_{r}": v for r, v in per_regime.items()}, "sentence": sentence})
    return pd.DataFrame(rows)



def analysis_markdown(a: LayerwiseAnalysis) -> str:
    n_seeds = a.runs["seed"].nunique() if len(a.runs) else 0
    out = ["# Layer-wise study: analysis", "",
           ("**Smoke preset: it exercises the code; no claim is decided (study standard 7).**" if a.smoke else
            f"Design `{a.design.scale}`; {len(a.runs)} runs over {n_seeds} seeds."), "", "## Claims", "", *claims_markdown(a.claims)]
    for title, frame in (("Held-out accuracy per feature set", a.accuracies), ("Patterns", _patterns(a.runs)),
                         ("Spearman ρ with the score gap", a.correlations), ("Candidate diagnostic rules", a.rules)):
        out += [f"## {title}", "", table(frame, float_digits=3, blank="") if len(frame) else "None.", ""]
    return "\n".join(out)


def report_layerwise(df: pd.DataFrame, out: Path, series: Any = None, artifacts: Any = None) -> ReportContent:
    """Report hook: ``analysis.md``, ``claims.csv``, ``accuracies.csv``, ``correlations.csv``, ``rules.csv``, figures."""
    from .figures import FIGURES, figures

    out = Path(out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    a = analyze(df)
    paths = {}
    for key, fig in figures(a, artifacts).items():
        paths[key] = out / "figures" / FIGURES[key][0]
        fig.savefig(paths[key], dpi=110, bbox_inches="tight")
    (out / "analysis.md").write_text(analysis_markdown(a))
    for name, frame in (("claims", a.claims), ("accuracies", a.accuracies), ("correlations", a.correlations),
                        ("rules", a.rules), ("patterns", _patterns(a.runs))):
        frame.to_csv(out / f"{name}.csv", index=False)
    halves = split_seeds(a.runs["seed"]) if len(a.runs) else ((), ())
    title = "The paper's claims, decided over seeds"
    intro = ("Smoke preset: it exercises the code and decides no claim (study standard 7)." if a.smoke else
             f"Each verdict is decided on all seeds and on two disjoint seed subsets ({list(halves[0])} and "
             f"{list(halves[1])}); rules and notes are in analysis.md.")
    tables: dict[str, Any] = {title: shown(a.claims)}
    notes = {title: intro}
    if len(a.runs) and a.runs["seed"].nunique() >= 2:
        tables |= {"Held-out accuracy per feature set (mean over seeds, 95 % t-interval)": a.accuracies,
                   "How often each pattern holds": _patterns(a.runs),
                   "Candidate diagnostic rules (leave-datasets-out)": a.rules}
    else:
        notes["Descriptive tables"] = "Omitted: fewer than 2 seeds, so no interval over seeds (see the CSV files)."
    return ReportContent(figures={caption: paths[key] for key, (_, caption) in FIGURES.items() if key in paths},
                         tables=tables, notes=notes)
