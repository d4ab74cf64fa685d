"""The sharpness study's report: verdicts of the declared claims, descriptive tables and figures.

:func:`analyze` decides every claim of the design the runs belong to (``FULL``, or ``SMOKE`` for smoke
runs, which print no verdicts) on all seeds and on two disjoint seed subsets
(:func:`hesslens.studies.verdicts.verdict_table`), and summarises Kendall τ(λ_max, test accuracy) and the
edge of stability over seeds. :func:`report_sharpness` is the study's report hook: it writes
``analysis.md`` (every rule in words), ``claims.csv``, ``kendall_tau.csv``, ``edge_of_stability.csv`` and
the figures, each drawing the mean over seeds with its 95 % t-interval and every seed's run as a dot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...errors import InvalidInputError
from ...render import table
from ..claims import split_seeds
from ..declaration import ReportContent
from ..finished import finished_runs
from ..stats import mean_interval
from ..verdicts import claims_markdown, shown, verdict_table
from .claims import correlations, declare
from .design import FULL, SMOKE, Design

__all__ = ["FIGURES", "SharpnessAnalysis", "analyze", "report_sharpness"]

FIGURES = {"1": "claim1_lr_batch.png", "2": "claim2_ratio.png", "3": "claim3_sam.png", "4": "claim4_dropout.png",
           "5": "claim5_batchnorm.png", "EoS": "eos_gd.png", "tau": "lambda_vs_test.png"}


@dataclass(frozen=True)
class SharpnessAnalysis:
    """What :func:`analyze` computes from the results table."""

    design: Design
    smoke: bool
    claims: pd.DataFrame  # verdict_table columns
    tau: pd.DataFrame  # scope, seeds, tau_mean, ci_low, ci_high, per_seed
    eos: pd.DataFrame  # per GD η: seeds reaching 2/η, median ratio (mean, CI), quartiles
    runs: pd.DataFrame  # the runs analysed


def analyze(df: pd.DataFrame, *, subsets: tuple | None = None) -> SharpnessAnalysis:
    """Decide the claims on the finished runs of ``df`` (the study's results table, e.g. ``results.csv``).

    ``subsets``: the two disjoint seed subsets of the robustness check (default: alternating seeds,
    :func:`hesslens.studies.claims.split_seeds`), e.g. ``((0, 1, 2), (3, 4, 5))``.
    """
    runs, smoke = finished_runs(df, ("full_batch", "batchnorm", "reached_target", "capped", "diverged", "interpolate"))
    design = SMOKE if smoke else FULL
    claims = verdict_table(declare(design), runs, smoke=smoke, subsets=subsets)
    return SharpnessAnalysis(design, smoke, claims, _tau(design, runs), _eos(design, runs), runs)


def _interval_row(values: np.ndarray) -> dict[str, Any]:
    iv = mean_interval(values) if len(values) else None
    return {"seeds": len(values), "mean": iv.estimate if iv else math.nan, "ci_low": iv.low if iv else math.nan,
            "ci_high": iv.high if iv else math.nan}


def _tau(design: Design, runs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for scope, stat in correlations(design).items():
        try:
            per_seed = stat(runs)
        except InvalidInputError as exc:
            rows.append({"scope": scope, "seeds": 0, "note": f"not computed: {exc}"})
            continue
        rows.append({"scope": scope, **_interval_row(per_seed.to_numpy()),
                     "per_seed": ", ".join(f"{v:+.2f}" for v in per_seed.to_numpy()), "note": ""})
    return pd.DataFrame(rows, columns=["scope", "seeds", "mean", "ci_low", "ci_high", "per_seed", "note"])


def _eos(design: Design, runs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    if "eos_ratio_median" not in runs:
        return pd.DataFrame(rows)
    gd = runs[(runs["track_every"] > 0) & runs["full_batch"]]
    for lr, g in gd.groupby("lr"):
        med = g["eos_ratio_median"].astype(float)
        rows.append({"lr": lr, "two_over_lr": 2 / lr, "runs": len(g), "reached_2_over_lr": int(g["eos_reached"].sum()),
                     "median_ratio_mean": med.mean(), **{f"median_ratio_{k}": v for k, v in _interval_row(
                         med.dropna().to_numpy()).items() if k in ("ci_low", "ci_high")},
                     "q25_mean": g["eos_ratio_q25"].astype(float).mean(),
                     "q75_mean": g["eos_ratio_q75"].astype(float).mean(),
                     "peak_ratio_mean": g["eos_ratio_peak"].astype(float).mean(),
                     "first_step_mean": g["eos_first_step"].astype(float).mean(), "epochs_mean": g["epochs"].mean(),
                     "final_lambda_max_mean": g["lambda_max"].astype(float).mean()})
    return pd.DataFrame(rows)


# -- figures ---------------------------------------------------------------------------------------
def _mean_ci(ax: Any, sub: pd.DataFrame, x: str, y: str, *, color: Any, label: str, joined: bool = True) -> None:
    """Every run as a faint dot (capped runs as ×), the mean over seeds with its 95 % t-interval (means
    joined by a line along a numeric x, not across categories)."""
    xv = sub[x]
    capped = sub["capped"].to_numpy(bool) if "capped" in sub else np.zeros(len(sub), bool)
    ax.scatter(xv[~capped], sub[y][~capped], s=10, alpha=0.35, color=color, lw=0)
    if capped.any():
        ax.scatter(xv[capped], sub[y][capped], s=18, marker="x", color=color, alpha=0.7)
    pts = []
    for xval, g in sub.assign(_x=xv).groupby("_x"):
        vals = g[y].astype(float).to_numpy()
        vals = vals[np.isfinite(vals)]
        if len(vals):
            iv = mean_interval(vals)
            pts.append((xval, iv.estimate, iv.low if iv.defined else iv.estimate,
                        iv.high if iv.defined else iv.estimate))
    if pts:
        px, m, lo, hi = map(np.array, zip(*pts))
        ax.errorbar(px, m, yerr=[m - lo, hi - m], fmt="-o" if joined else "o", ms=4, lw=1.2, capsize=3,
                    color=color, label=label)


def _panels(title: str, n_seeds: int) -> tuple[Any, Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.9))
    a1, a2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    fig.suptitle(f"{title}\nmean over {n_seeds} seed(s) with 95 % t-interval; dots: single runs, ×: capped runs",
                 fontsize=9)
    a1.set_ylabel("λ_max (kaur2023 protocol)")
    a2.set_ylabel("test accuracy")
    for a in (a1, a2):
        a.grid(alpha=0.3, which="both")
    return fig, a1, a2


def _log_y(ax: Any) -> None:
    """A log y axis labelled in plain numbers at 1, 2, 5 × 10^k (no 4.5×10⁰ clutter)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _sweep(runs: pd.DataFrame, title: str, x: str, by: str, *, log_x: bool, label: Any, xs: Any = None,
           xlabel: str = "") -> Any:
    n = int(runs["seed"].nunique()) if len(runs) else 0
    fig, a1, a2 = _panels(title, n)
    groups = list(runs.groupby(by)) if len(runs) else []
    for i, (key, sub) in enumerate(groups):
        for ax, y in ((a1, "lambda_max"), (a2, "test_acc")):
            _mean_ci(ax, sub, x, y, color=f"C{i}", label=label(key), joined=xs is None)
    for ax in (a1, a2):
        if log_x and len(runs):
            ax.set_xscale("log")
            vals = sorted(set(runs[x]))
            ax.set_xticks(vals, [f"{v:g}" for v in vals])
            ax.minorticks_off()
        if xs is not None:
            ax.set_xticks(list(xs.values()), list(xs.keys()), fontsize=7)
        ax.set_xlabel(xlabel or x)
        if groups:
            ax.legend(fontsize=7)
    _log_y(a1)
    fig.tight_layout()
    return fig


def figures(analysis: SharpnessAnalysis, series: pd.DataFrame | None) -> dict[str, Any]:
    """Matplotlib figures keyed like :data:`FIGURES`."""
    from matplotlib.figure import Figure

    from ..arms import select

    d, runs = analysis.design, analysis.runs
    mlp = {"arch": "mlp", "optimizer": "sgd", "dropout": 0.0, "track_every": 0, "until_train_acc": 0.99}
    pick = lambda where: select(runs, where) if len(runs) else runs
    figs = {
        "1": _sweep(pick({**mlp, "batch_size": list(d.batches), "lr": list(d.lrs)}), "Grid lr_bs: learning rate × "
                    "batch size", "lr", "batch_size", log_x=True, label=lambda b: f"B = {b}", xlabel="learning rate η"),
        "2": _sweep(pick({**mlp, "batch_size": list(d.ratio_batches)}).pipe(
            lambda g: g[np.isclose(g["lr"], g["batch_size"] * d.ratio)]).assign(grid="η/B fixed"),
            f"Grid ratio: η and B scaled together, η/B = {d.ratio:.3g}", "batch_size", "grid", log_x=True,
            label=str, xlabel="batch size B"),
        "3": _sweep(pick({"arch": "mlp", "lr": d.sam_lr, "rho": [0.0, d.sam_rho], "dropout": 0.0, "track_every": 0,
                          "batch_size": list(d.batches)}), f"Grid sam: SAM ρ = {d.sam_rho:g} against SGD, η = "
                    f"{d.sam_lr:g}", "batch_size", "rho", log_x=True, label=lambda r: "SGD" if r == 0 else f"SAM ρ = {r:g}",
                    xlabel="batch size B"),
        "4": _sweep(pick({"arch": "mlp", "lr": d.dropout_lr, "batch_size": d.dropout_batch,
                          "until_train_acc": d.dropout_target}).assign(grid="dropout"),
                    f"Grid dropout: η = {d.dropout_lr:g}, B = {d.dropout_batch}, all trained to "
                    f"{d.dropout_target:.0%} training accuracy", "dropout", "grid", log_x=False, label=str,
                    xlabel="dropout p"),
    }
    cells = {f"η={lr:g}\nB={bs}": i for i, (lr, bs) in enumerate((lr, bs) for lr in d.bn_lrs for bs in d.bn_batches)}
    bn = pick({"arch": "vgg1d"})
    if len(bn):  # categorical x: each (η, B) cell at its position
        bn = bn.assign(cell=[cells.get(f"η={lr:g}\nB={int(bs)}", np.nan) for lr, bs in zip(bn["lr"], bn["batch_size"])])
        bn = bn[bn["cell"].notna()]
    figs["5"] = _sweep(bn, "Grid batchnorm: VGG-1D with and without BatchNorm per (η, B)", "cell", "batchnorm",
                       log_x=False, label=lambda b: "BatchNorm" if b else "no BatchNorm", xs=cells, xlabel="cell")
    figs["EoS"] = _eos_figure(analysis, series)
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    sgd = pick(mlp)
    for i, (bs, sub) in enumerate(sgd.groupby("batch_size") if len(sgd) else []):
        ax.scatter(sub["lambda_max"], sub["test_acc"], s=14, alpha=0.6, color=f"C{i}", label=f"B = {bs}")
    ax.set_xscale("log")
    ax.set_xlabel("λ_max (kaur2023 protocol)")
    ax.set_ylabel("test accuracy")
    ax.set_title("Plain-SGD MLP runs (grids lr_bs and ratio), every seed", fontsize=9)
    if len(sgd):
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    figs["tau"] = fig
    return figs


def _eos_figure(analysis: SharpnessAnalysis, series: pd.DataFrame | None) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.8, 4.2))
    ax = fig.add_subplot()
    runs = analysis.runs
    gd = runs[(runs["track_every"] > 0) & runs["full_batch"]] if len(runs) else runs
    drawn = False
    if series is not None and len(series) and len(gd):
        lam = series[series["key"] == "lambda_max"]
        for i, (lr, g) in enumerate(gd.groupby("lr")):
            for j, (_, r) in enumerate(g.iterrows()):
                s = lam[(lam["run_key"] == r["run_key"]) & (lam["seed"] == r["seed"])].sort_values("step")
                if len(s):
                    ax.plot(s["step"], s["value"] * lr / 2, lw=0.9, alpha=0.7, color=f"C{i}",
                            label=f"η = {lr:g}" if j == 0 else None)
                    drawn = True
    ax.axhline(1.0, color="k", ls="--", lw=1, label="λ_max = 2/η")
    ax.set_xlabel("GD step (= epoch)")
    ax.set_ylabel("λ_max · η / 2 (whole training loss)")
    ax.set_title("Full-batch GD: λ_max in units of the stability threshold 2/η, every seed", fontsize=9)
    if drawn:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


# -- report ------------------------------------------------------------------------------------------
def analysis_markdown(a: SharpnessAnalysis) -> str:
    """Every verdict with its rule and notes, the τ and edge-of-stability tables, as Markdown."""
    out = ["# Sharpness study: analysis", "",
           ("**Smoke preset: it exercises the code; no claim is decided (study standard 7).**" if a.smoke else
            f"Design `{a.design.scale}`; {len(a.runs)} runs over {a.runs['seed'].nunique() if len(a.runs) else 0} "
            "seeds."), "", "## Claims", "", *claims_markdown(a.claims)]
    out += ["## Kendall τ(λ_max, test accuracy), per seed", "", table(a.tau, float_digits=3, blank=""), "",
            "## Edge of stability (full-batch GD)", "",
            table(a.eos, float_digits=3, blank="") if len(a.eos) else "No tracked GD runs.", ""]
    return "\n".join(out)


def report_sharpness(df: pd.DataFrame, out: Path, series: pd.DataFrame | None = None) -> ReportContent:
    """Report hook: figures, ``analysis.md``, ``claims.csv``, ``kendall_tau.csv``, ``edge_of_stability.csv``."""
    out = Path(out)
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    a = analyze(df)
    paths = {}
    for key, fig in figures(a, series).items():
        paths[key] = fig_dir / FIGURES[key]
        fig.savefig(paths[key], dpi=110, bbox_inches="tight")
    (out / "analysis.md").write_text(analysis_markdown(a))
    a.claims.to_csv(out / "claims.csv", index=False)
    a.tau.to_csv(out / "kendall_tau.csv", index=False)
    a.eos.to_csv(out / "edge_of_stability.csv", index=False)
    top = a.claims[~a.claims["claim"].str.startswith("↳")]
    verdict = dict(zip(top["claim"], top["verdict"]))
    captions = {}
    for key, name in FIGURES.items():
        said = [f"{c} — {v.upper().replace('_', ' ')}" for c, v in verdict.items() if c.split()[0].rstrip("abc") == key]
        captions[f"{name}: " + ("; ".join(said) if said else "all runs")] = paths[key]
    halves = split_seeds(a.runs["seed"]) if len(a.runs) else ((), ())
    intro = ("Smoke preset: it exercises the code and decides no claim (study standard 7)." if a.smoke else
             f"Each verdict is decided on all seeds, and again on two disjoint seed subsets (subset_a: seeds "
             f"{list(halves[0])}, subset_b: seeds {list(halves[1])}); a "
             "claim whose subsets flip between supported and contradicted is inconclusive. Effects are means over "
             "seeds of the per-seed statistic with their 95 % t-interval; rules and notes are in analysis.md.")
    tables = {"The paper's claims, decided over seeds": shown(a.claims)}
    notes = {"The paper's claims, decided over seeds": intro}
    tau_title, eos_title = "Kendall τ(λ_max, test accuracy) over seeds", "Edge of stability (full-batch GD, tracked λ_max)"
    if len(a.runs) and a.runs["seed"].nunique() >= 2:
        tables |= {tau_title: a.tau, eos_title: a.eos}
        notes[tau_title] = ("Descriptive, not a claim: τ_b per seed over the runs named; negative τ means sharper "
                            "runs generalize worse.")
    else:  # a mean over one seed has no interval: say so instead of a table of NaN
        why = "Omitted: fewer than 2 seeds, so no interval over seeds (the values are in the CSV files)."
        notes |= {tau_title: why, eos_title: why}
    return ReportContent(figures=captions, tables=tables, notes=notes)
