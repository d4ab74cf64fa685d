"""The HESD-type study's figures (bare matplotlib Figures; the report hook saves them).

* ``hesd_examples`` — spectra of one net and seed in the papers' style (:func:`hesslens.plot_hesd`: log
  density over a symmetric axis, the type and C in the legend), one panel per activation: ordinary
  training, fine-tuning, and the strongest clipping from scratch and as fine-tuning;
* ``balance`` — C per treatment: the mean over seeds with its 95 % t-interval, every run as a dot,
  ReLU and tanh nets side by side, the MP/MN boundary C = 0 and the decisiveness margin;
* ``collapse`` — the tracked spectral scale of every long run relative to its peak, with the
  quasi-singularity threshold;
* ``duration`` — C along a longer fine-tuning onto the new task, tracked every few epochs, ordinary SGD
  against norm clipping;
* ``shifts`` — Kh against accuracy over the dataset shifts, every assessment coloured by its type.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..stats import mean_interval

__all__ = ["FIGURES", "figures"]

#: key → (file name, caption).
FIGURES = {
    "examples": ("hesd_examples.png", "HESDs of one net per activation (MNIST-1D MLP, seed 0) in the papers' style: "
                 "log density over a symmetric axis, type and C in the legend"),
    "balance": ("balance.png", "Spectral-mass balance C per treatment: mean over seeds with 95 % t-interval, "
                "dots are runs; C > 0 is MP, C < 0 MN"),
    "collapse": ("collapse.png", "Long full-batch runs: spectral scale relative to its peak, every run; below the "
                 "dashed line the spectrum is quasi-singular"),
    "duration": ("duration.png", "C along a 40-epoch fine-tuning onto the permuted-label task, tracked every 2 epochs: "
                 "ordinary SGD against norm clipping, every seed"),
    "shifts": ("shifts.png", "Kh against accuracy over the dataset shifts, every assessment, coloured by type"),
}
_COLOURS = {"MP": "C0", "MN": "C3", "QS": "C2"}


def _density(artifacts: Any, row: pd.Series) -> Any:
    from ...linalg import SpectralDensity

    d = artifacts(row["run_key"], int(row["seed"])).get("density")
    return None if d is None else SpectralDensity(np.asarray(d["nodes"]), np.asarray(d["weights"]))


def _examples(a: Any, artifacts: Any) -> Any:
    from matplotlib.figure import Figure

    from ...report.hesd_figure import hesd_figure
    from .claims import manipulation

    fig = Figure(figsize=(12, 4.2))
    runs = a.runs
    strongest = a.design.manipulation_names[0]
    picks = [("ordinary", {"optimizer": "sgd", "augment": "", "clip_norm": 0.0}, "SGD"),
             ("ordinary", {"optimizer": "adam", "augment": ""}, "Adam"),
             ("finetune", {"optimizer": "sgd"}, "fine-tuned, SGD"),
             ("manipulated", {**manipulation(a.design, strongest), "finetune": ""}, f"{strongest}, scratch"),
             ("manipulated", {**manipulation(a.design, strongest), "finetune": "permute"}, f"{strongest}, fine-tuned")]
    net = {"dataset": "mnist1d", "arch": "mlp"}
    for i, act in enumerate(("relu", "tanh")):
        ax = fig.add_subplot(1, 2, i + 1)
        items, labels = [], []
        if artifacts is not None and len(runs):
            seed = runs["seed"].min()
            for exp, where, label in picks:
                m = (runs["experiment"] == exp) & (runs["seed"] == seed) & (runs["activation"] == act)
                for k, v in {**net, **where}.items():
                    m &= runs[k] == v
                if m.any():
                    d = _density(artifacts, runs[m].iloc[0])
                    if d is not None:
                        items.append(d)
                        labels.append(label)
        if items:
            hesd_figure(items, labels=labels, ax=ax, title=f"MNIST-1D MLP, {act}")
        else:
            ax.set_title(f"MNIST-1D MLP, {act}: no runs", fontsize=9)
    fig.tight_layout()
    return fig


def _balance(a: Any) -> Any:
    from matplotlib.figure import Figure

    runs = a.runs
    treatments = list(dict.fromkeys(a.types["treatment"])) if len(a.types) else []
    fig = Figure(figsize=(8.5, 0.32 * max(len(treatments), 4) + 1.4))
    ax = fig.add_subplot()
    for j, (act, dy) in enumerate((("relu", -0.15), ("tanh", 0.15))):
        for i, t in enumerate(treatments):
            g = runs[(runs["treatment"] == t) & (runs["activation"] == act)] if len(runs) else runs
            if not len(g):
                continue
            ax.scatter(g["balance"], np.full(len(g), i + dy), s=8, alpha=0.3, color=f"C{j}", lw=0)
            per_seed = g.groupby("seed")["balance"].mean().to_numpy(float)
            iv = mean_interval(per_seed)
            lo, hi = (iv.low, iv.high) if iv.defined else (iv.estimate, iv.estimate)
            ax.errorbar([iv.estimate], [i + dy], xerr=[[iv.estimate - lo], [hi - iv.estimate]], fmt="o", ms=4,
                        capsize=2, color=f"C{j}", label=act if i == 0 else None)
    ax.axvline(0, color="k", lw=1)
    for m in (-a.design.margin, a.design.margin):
        ax.axvline(m, color="k", lw=0.6, ls=":")
    ax.set_yticks(range(len(treatments)), treatments, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("spectral-mass balance C = (P − N)/(P + N)   (MP > 0 > MN; dotted: the ±margin of decisiveness)")
    ax.set_xlim(-1, 1)
    ax.grid(alpha=0.3, axis="x")
    if treatments:
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def _collapse(a: Any, artifacts: Any) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot()
    runs = a.runs[a.runs["experiment"] == "collapse"] if len(a.runs) else a.runs
    groups = list(dict.fromkeys(f"{r['dataset']} {r['activation']}, {r['optimizer']}" for _, r in runs.iterrows()))
    drawn = set()
    for _, r in runs.iterrows():
        t = artifacts(r["run_key"], int(r["seed"])).get("trajectory") if artifacts is not None else None
        if t is None or not len(t):
            continue
        key = f"{r['dataset']} {r['activation']}, {r['optimizer']}"
        ax.plot(t["epoch"], t["scale"] / t["scale"].max(), lw=0.9, alpha=0.7, color=f"C{groups.index(key) % 10}",
                label=key if key not in drawn else None)
        drawn.add(key)
    ax.axhline(a.design.qs_relative, color="k", ls="--", lw=1, label=f"{a.design.qs_relative:g} × peak (QS below)")
    ax.set_yscale("log")
    ax.set_xlabel("epoch (full batch: one step each)")
    ax.set_ylabel("spectral scale max|λ| / its peak")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _duration(a: Any, artifacts: Any) -> Any:
    from matplotlib.figure import Figure

    runs = a.runs[a.runs["experiment"] == "duration"] if len(a.runs) else a.runs
    nets = sorted(set(runs["dataset"])) if len(runs) else []
    fig = Figure(figsize=(5 * max(len(nets), 1), 3.8))
    for i, ds in enumerate(nets or ["none"]):
        ax = fig.add_subplot(1, max(len(nets), 1), i + 1)
        sub = runs[runs["dataset"] == ds] if len(runs) else runs
        treatments = list(dict.fromkeys(sub["treatment"])) if len(sub) else []
        for _, r in sub.iterrows():
            t = artifacts(r["run_key"], int(r["seed"])).get("trajectory") if artifacts is not None else None
            if t is not None and len(t):
                j = treatments.index(r["treatment"])
                ax.plot(t["epoch"], t["balance"], lw=0.9, alpha=0.7, color=f"C{j}",
                        label=r["treatment"].removeprefix("fine-tuning tracked, ") if r["seed"] == sub["seed"].min()
                        else None)
        ax.axhline(0, color="k", lw=1)
        ax.set_ylim(-1, 1)
        ax.set_xlabel("epoch of fine-tuning (epoch 0: the pre-trained net on the new task)")
        ax.set_ylabel("balance C (MP > 0 > MN)")
        ax.set_title(f"{ds} tanh MLP", fontsize=9)
        ax.grid(alpha=0.3)
        if treatments:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _shifts(shifts: pd.DataFrame) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    for i, act in enumerate(("relu", "tanh")):
        ax = fig.add_subplot(1, 2, i + 1)
        g = shifts[shifts["net"].str.endswith("/" + act)] if len(shifts) else shifts
        for kind, colour in _COLOURS.items():
            h = g[g["hesd_type"] == kind] if len(g) else g
            if len(h):
                ax.scatter(h["kh"], h["accuracy"], s=10, alpha=0.5, color=colour, lw=0, label=kind)
        ax.set_xscale("log")
        ax.set_xlabel("Kh (n = 0.5), from the shifted training set's HESD")
        ax.set_ylabel("accuracy on the shifted test set")
        ax.set_title(f"{act} nets", fontsize=9)
        ax.grid(alpha=0.3, which="both")
        if len(g):
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def figures(a: Any, shifts: pd.DataFrame, artifacts: Any) -> dict[str, Any]:
    """The figures keyed like :data:`FIGURES`."""
    return {"examples": _examples(a, artifacts), "balance": _balance(a), "collapse": _collapse(a, artifacts),
            "duration": _duration(a, artifacts), "shifts": _shifts(shifts)}
