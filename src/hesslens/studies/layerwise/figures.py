"""The layer-wise study's figures (bare matplotlib Figures; the report hook saves them).

* ``trajectories`` — log10 λ_max and the negative mass of each block position over the checkpoints
  (training progress from 0 to 1), the median over runs per regime with the interquartile band;
* ``features`` — every run's final-checkpoint features: output-block λ_max against the output block's
  effective-rank fraction, coloured by regime, one marker per task.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .design import POSITIONS

__all__ = ["FIGURES", "figures"]

FIGURES = {
    "trajectories": ("trajectories.png", "Local Hessians along training, per block position and regime: median over "
                     "runs with the interquartile band (x: checkpoint / last checkpoint)"),
    "features": ("features.png", "Final-checkpoint features of every run, coloured by regime"),
}
_REGIME_COLOURS = {"under": "C0", "balanced": "C1", "over": "C3"}


def _long(a: Any, artifacts: Any) -> pd.DataFrame:
    parts = []
    if artifacts is None or not len(a.runs):
        return pd.DataFrame()
    for _, r in a.runs.iterrows():
        t = artifacts(r["run_key"], int(r["seed"])).get("layerwise")
        if t is not None and len(t):
            last = t["checkpoint"].max()
            pos = {b: POSITIONS[i] for i, b in enumerate(dict.fromkeys(t["block"]))} if t["block"].nunique() == 3 else {}
            parts.append(t.assign(progress=t["checkpoint"] / max(last, 1), regime=r["regime"],
                                  position=t["block"].map(pos)))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _trajectories(long: pd.DataFrame) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 6.4))
    for row, (metric, label) in enumerate((("lambda_max", "log10 λ_max of H_ii"), ("neg_mass", "negative mass of H_ii"))):
        for col, pos in enumerate(POSITIONS):
            ax = fig.add_subplot(2, 3, 3 * row + col + 1)
            sub = long[long["position"] == pos] if len(long) else long
            for regime, colour in _REGIME_COLOURS.items():
                g = sub[sub["regime"] == regime] if len(sub) else sub
                if not len(g):
                    continue
                values = np.log10(np.clip(g[metric].astype(float), 1e-30, None)) if metric == "lambda_max" else g[metric]
                q = values.groupby(g["progress"].round(3)).quantile([0.25, 0.5, 0.75]).unstack()
                ax.plot(q.index, q[0.5], color=colour, label=regime)
                ax.fill_between(q.index, q[0.25], q[0.75], color=colour, alpha=0.2, lw=0)
            ax.set_title(f"{pos} block", fontsize=9)
            ax.set_xlabel("training progress")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
            if len(sub):
                ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _features(runs: pd.DataFrame) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.6))
    ax = fig.add_subplot()
    for regime, colour in _REGIME_COLOURS.items():
        g = runs[runs["regime"] == regime] if len(runs) else runs
        for task, marker in (("classification", "o"), ("regression", "^")):
            h = g[g["task"] == task] if len(g) and "task" in g else g.iloc[0:0] if len(g) else g
            if len(h):
                ax.scatter(h["effective_rank_fraction_out"], h["log_lambda_max_out"], s=12, alpha=0.6, color=colour,
                           marker=marker, lw=0, label=f"{regime}, {task}")
    ax.set_xscale("log")
    ax.set_xlabel("effective rank / #parameters of the output block (final checkpoint)")
    ax.set_ylabel("log10 λ_max of the output block")
    ax.grid(alpha=0.3, which="both")
    if len(runs):
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def figures(a: Any, artifacts: Any) -> dict[str, Any]:
    return {"trajectories": _trajectories(_long(a, artifacts)), "features": _features(a.runs)}
