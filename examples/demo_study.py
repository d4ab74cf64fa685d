"""A demo study: an example of the study declaration API, small enough to run in seconds.

A one-hidden-layer MLP is trained by full-batch gradient descent on a subset of scikit-learn's
bundled digits (no network) over a grid of learning rates η, each with several seeds (2 in the
smoke preset, 5 in the full one; the machinery fills ``config.seed``). Each run records the final
training loss and accuracy, the test accuracy and the sharpness λ_max of the training-loss Hessian
(:func:`hesslens.eigenvalues` on a :class:`hesslens.HessianOperator`), together with 2/η: gradient
descent on a quadratic is stable only while λ_max < 2/η, and in practice GD tends to train at the
"edge of stability" λ_max ≈ 2/η (Cohen et al., ICLR 2021, https://arxiv.org/abs/2103.00065). The
training loss every few steps is kept as a series. A run whose loss becomes non-finite or grows by
``blowup`` × its initial value is recorded as *diverged*.

It is not a built-in study: ``hesslens study`` loads it from this file, the way it loads any study
you declare in your own code (``path/to/file.py:ATTRIBUTE`` or ``module:ATTRIBUTE``). Read it as a
template; from the repository's root::

    hesslens study examples/demo_study.py:STUDY --preset smoke      # 4 runs, a few seconds
    hesslens study examples/demo_study.py:STUDY --preset full --executor pool
    hesslens study examples/demo_study.py:STUDY --status
    hesslens study examples/demo_study.py:STUDY --report            # studies/demo/report.html

A study can also be registered under a name (``STUDY = hesslens.studies.register(Study(...))``), so
that :func:`hesslens.studies.get` finds it by that name in a process that imported its module.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hesslens.studies import RunContext, Study, param


@dataclass(frozen=True)
class DemoConfig:
    """One run of the demo study."""

    lr: float = param(0.1, gt=0, doc="gradient-descent step size η")
    seed: int = param(0, ge=0, doc="seed of the train/test split and of the initialisation (filled by hesslens)")
    hidden: int = param(16, ge=1, le=4096, doc="hidden units")
    steps: int = param(60, ge=1, doc="full-batch gradient steps")
    n_train: int = param(256, ge=20, le=1500, doc="training samples (the rest of digits is the test set)")
    activation: Literal["tanh", "relu"] = "tanh"
    blowup: float = param(1e3, gt=1, doc="a loss above blowup × the initial loss counts as divergence")
    record_every: int = param(5, ge=1, doc="steps between series points")


def _digits(n_train: int, seed: int):
    import numpy as np
    import torch
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(x))
    tr, te = order[:n_train], order[n_train:]
    mean, std = x[tr].mean(0), x[tr].std(0) + 1e-6  # training statistics only
    as_x = lambda idx: torch.tensor((x[idx] - mean) / std, dtype=torch.float32)  # noqa: E731
    as_y = lambda idx: torch.tensor(y[idx], dtype=torch.int64)  # noqa: E731
    return as_x(tr), as_y(tr), as_x(te), as_y(te)


def run_demo(config: DemoConfig, ctx: RunContext | None = None) -> tuple[dict, list]:
    """Train, measure, return ``(record, series)``: the run function of the demo study.

    The model is tiny, so it runs on one thread: more would only add synchronisation (and, on a
    busy machine, spin-waiting); the caller's thread setting is restored afterwards.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train_and_measure(config, ctx)
    finally:
        torch.set_num_threads(threads)


def build_model(config: DemoConfig):
    """The demo's MLP, 64 → hidden → 10, initialised from ``config.seed``."""
    import torch
    from torch import nn

    torch.manual_seed(config.seed)
    act = nn.Tanh() if config.activation == "tanh" else nn.ReLU()
    return nn.Sequential(nn.Linear(64, config.hidden), act, nn.Linear(config.hidden, 10))


def _train_and_measure(config: DemoConfig, ctx: RunContext | None) -> tuple[dict, list]:
    import torch
    from torch.nn import functional as F

    import hesslens as hl

    x, y, x_test, y_test = _digits(config.n_train, config.seed)
    model = build_model(config)
    opt = torch.optim.SGD(model.parameters(), lr=config.lr)
    series: list[tuple[int, str, float]] = []
    first = None
    for step in range(config.steps):
        loss = F.cross_entropy(model(x), y)
        value = float(loss.detach())
        first = value if first is None else first
        if step % config.record_every == 0:
            series.append((step, "train_loss", value))
        if not math.isfinite(value) or value > config.blowup * first:
            # Diverged: a Hessian at an exploded point says nothing; record what is known.
            return {"train_loss": value if math.isfinite(value) else math.nan, "diverged": True,
                    "diverged_at_step": step, "two_over_lr": 2 / config.lr}, series
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model.eval()
    with torch.no_grad():
        logits = model(x)
        train_loss = float(F.cross_entropy(logits, y))
        train_acc = float((logits.argmax(1) == y).float().mean())
        test_acc = float((model(x_test).argmax(1) == y_test).float().mean())
    series.append((config.steps, "train_loss", train_loss))
    if ctx is not None:  # the run's own folder (OUT/runs/<run_key>-seed<seed>): keep the trained weights
        torch.save(model.state_dict(), ctx.artifact_dir() / "model.pt")
    op = hl.HessianOperator(model, F.cross_entropy, (x, y))
    top = hl.eigenvalues(op, k=1, tol=1e-5)
    lam = float(top.values[0])
    return {"train_loss": train_loss, "train_acc": train_acc, "test_acc": test_acc, "lambda_max": lam,
            "two_over_lr": 2 / config.lr, "lambda_max_x_lr_over_2": lam * config.lr / 2,
            "lanczos_matvecs": int(top.matvecs), "diverged": False}, series


def report_demo(df, out: Path, series):
    """Two figures: λ_max against η with the 2/η stability line, and the training-loss curves."""
    import matplotlib
    import numpy as np
    from matplotlib.figure import Figure

    figures = {}
    fig = Figure(figsize=(5.5, 4))
    ax = fig.add_subplot()
    ok = df[df["status"] == "done"]
    if len(ok):
        ax.scatter(ok["lr"], ok["lambda_max"], label="λ_max (final)", zorder=3)
    lrs = np.geomspace(df["lr"].min(), df["lr"].max(), 50)
    ax.plot(lrs, 2 / lrs, "k--", lw=1, label="2/η (GD stability limit)")
    bad = df[df["status"] == "diverged"]
    for lr in sorted(set(bad["lr"])):
        ax.axvline(lr, color="tab:red", alpha=0.4, lw=2)
    if len(bad):
        ax.plot([], [], color="tab:red", alpha=0.4, lw=2, label="diverged")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("learning rate η")
    ax.set_ylabel("sharpness")
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    figures["Sharpness λ_max against the learning rate"] = fig

    curves = series[series["key"] == "train_loss"] if len(series) else series
    if len(curves):
        fig = Figure(figsize=(5.5, 4))
        ax = fig.add_subplot()
        lr_of = dict(zip(df["run_key"], df["lr"]))
        cmap = matplotlib.colormaps["viridis"]
        lo, hi = math.log(df["lr"].min()), math.log(df["lr"].max())
        for (key, _seed), g in curves.groupby(["run_key", "seed"]):
            if key not in lr_of:
                continue
            t = 0.5 if hi == lo else (math.log(lr_of[key]) - lo) / (hi - lo)
            ax.plot(g["step"], g["value"], color=cmap(t), lw=1)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.set_title("colour: learning rate (dark small, light large)")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        figures["Training loss"] = fig
    return figures


STUDY = Study(
    name="demo",
    config=DemoConfig,
    run=run_demo,
    presets={
        "smoke": {"lr": [0.05, 0.5], "steps": 40},
        "full": [{"lr": [0.01, 0.03, 0.1, 0.3, 1.0, 3.0], "hidden": [16, 64], "steps": 300},
                 {"lr": 100.0, "activation": "relu", "steps": 300}],  # diverges
    },
    seeds={"smoke": 2, "full": 5},
    report=report_demo,
    description="Demo: a one-hidden-layer MLP on scikit-learn digits trained by full-batch gradient descent over "
                "a grid of learning rates η and seeds; final sharpness λ_max compared with the stability limit 2/η.",
)
