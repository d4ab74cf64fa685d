"""The ``sharpness`` study: does λ_max explain generalization? Kaur, Cohen & Lipton (2023) at CPU scale.

Kaur, Cohen & Lipton, "On the maximum Hessian eigenvalue and generalization" (arXiv 2206.10654)
train networks with plain SGD to 99 % training accuracy and measure λ_max with a fixed protocol
(:func:`hesslens.analysis.sharpness`). Their five claims, tested here one grid each:

1. larger learning rates lower λ_max at every batch size, yet their generalization benefit can vanish
   at large batch sizes (grid ``lr_bs``: learning rate × batch size, full batch = GD included);
2. scaling batch size and learning rate together changes λ_max without changing generalization
   (grid ``ratio``: η/B fixed);
3. SAM lowers λ_max at every batch size, and its benefit also vanishes at large batch sizes (grid
   ``sam``: ρ ∈ {0, 0.05, 0.1} × batch size);
4. very high dropout lowers λ_max yet hurts generalization (grid ``dropout``: p ∈ {0, 0.1, 0.2, 0.5,
   0.6, 0.7});
5. BatchNorm does not consistently lower λ_max but helps generalization (grid ``batchnorm``: a
   VGG-style 1-D conv net with and without BatchNorm).

The full-batch (GD) runs of grid ``lr_bs`` also record λ_max along training (every
``track_every`` epochs, a :class:`hesslens.Tracker` on the whole training set — the loss GD
descends — warm-started Lanczos with tolerance 1e-3), and their final λ_max of the whole training
loss (``lambda_max_full_data``, protocol ``"full"``), to show the edge of stability: under GD with step η, λ_max rises to about 2/η and hovers there
(Cohen et al. 2021, arXiv 2103.00065). That is the study's sixth grid.

Set-up (shared by every run; see ``docs/studies/sharpness.md``):

* data: MNIST-1D (``hesslens.datasets.load("mnist1d")``: 3,750 training and 1,250 test signals
  of length 40, standardised with training statistics); scikit-learn's digits is too easy — a
  small net reaches 99 % training accuracy in a few hundred GD steps, before any sharpening;
* models: the paper's MLP (two hidden layers of 256 ReLU units, dropout p after each) on the
  flattened signal, and for the BatchNorm grid a VGG-style 1-D conv net (conv3-16, pool,
  conv3-32, global average pool, linear) with or without BatchNorm (:mod:`hesslens.models`);
* training: :func:`hesslens.train` with plain SGD (no momentum, weight decay, schedule or
  augmentation) or SAM over SGD, mean cross-entropy per mini-batch, stopping at the first epoch
  with ≥ 99 % training accuracy (full training set, eval mode) or at ``max_epochs`` (the documented
  cap; such runs have ``reached_target = False``); each configuration runs with several seeds (1 in
  the smoke preset, 5 in the full one): seed s initialises the network with seed s and orders the
  data with seed s + 1 (so seed 0 is the earlier single run: network seed 0, data-order seed 1);
* ``batch_size`` ≥ the training-set size means full-batch gradient descent: the results table then
  holds the training-set size in ``batch_size`` and ``full_batch = True``;
* λ_max: :func:`hesslens.analysis.sharpness` with protocol ``"kaur2023"`` (mean loss over 1,000
  evenly spaced training examples, top-6 Lanczos, BatchNorm in train mode with physical batches of
  min(batch size, 1000), dropout off), with the 8-point interpolation towards one more SGD step
  for the BatchNorm nets (``interpolate``).

The analysis (:func:`analyze`, also the report hook :func:`report_sharpness`) marks each claim
*reproduced*, *not reproduced* or *inconclusive* by the explicit rules in :data:`CLAIM_RULES`.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from ..render import table
from .declaration import ReportContent, Study, param
from .registry import register

EXPERIMENTS = ("lr_bs", "ratio", "sam", "dropout", "batchnorm")

#: MNIST-1D's training-set size in hesslens (3,750 of 5,000 signals): the batch size that means GD.
MNIST1D_TRAIN = 3750


@dataclass(frozen=True)
class SharpnessConfig:
    """One training run followed by a λ_max measurement."""

    experiment: Literal["lr_bs", "ratio", "sam", "dropout", "batchnorm"] = param(
        "lr_bs", doc="which grid (claim) the run belongs to")
    dataset: str = param("mnist1d", doc="hesslens dataset name")
    n_train: int = param(0, ge=0, doc="use only the first n_train training examples (0 = all)")
    arch: Literal["mlp", "vgg1d"] = param("mlp", doc="MLP (two hidden layers) or VGG-style 1-D conv net")
    hidden: int = param(256, ge=1, doc="MLP hidden width (both layers)")
    channels: int = param(16, ge=1, doc="VGG first-stage channels (the second stage has twice as many)")
    dropout: float = param(0.0, ge=0.0, lt=1.0, doc="MLP dropout probability after each hidden layer")
    batchnorm: bool = param(False, doc="VGG with BatchNorm after every convolution")
    optimizer: Literal["sgd", "sam"] = param("sgd", doc="plain SGD or SAM over SGD")
    rho: float = param(0.0, ge=0.0, doc="SAM radius ρ (0 with plain SGD)")
    lr: float = param(0.1, gt=0, doc="learning rate η")
    batch_size: int = param(32, ge=1, doc="mini-batch size; ≥ the training-set size means full batch (GD)")
    max_epochs: int = param(300, ge=1, doc="cap on epochs when 99 % training accuracy is not reached")
    until_train_acc: float = param(0.99, gt=0, le=1, doc="stop at this training accuracy")
    seed: int = param(0, ge=0, doc="replicate seed, filled by hesslens: network init = seed, data order = seed + 1")
    track_every: int = param(0, ge=0, doc="record λ_max every this many epochs (0 = only at the end)")
    interpolate: bool = param(False, doc="λ_max as the max over 8 points towards one more SGD step")
    tol: float = param(1e-4, gt=0, doc="Lanczos relative residual tolerance")

    def __post_init__(self) -> None:
        from ..errors import InvalidInputError

        if self.optimizer == "sgd" and self.rho != 0:
            raise InvalidInputError(f"rho: plain SGD takes no SAM radius, got rho={self.rho} (use optimizer='sam')")
        if self.optimizer == "sam" and self.rho <= 0:
            raise InvalidInputError(f"rho: SAM needs rho > 0, got {self.rho}")
        if self.arch == "vgg1d" and self.dropout:
            raise InvalidInputError("dropout: the VGG net of this study has no dropout layers")
        if self.arch == "mlp" and self.batchnorm:
            raise InvalidInputError("batchnorm: the MLP of this study has no BatchNorm layers (use arch='vgg1d')")


@functools.lru_cache(maxsize=4)
def _dataset(name: str, n_train: int):
    """Load once per process; optionally keep only the first ``n_train`` training examples."""
    import types

    from .. import datasets

    ds = datasets.load(name)
    if not n_train or n_train >= len(ds.x_train):
        return ds
    return types.SimpleNamespace(x_train=ds.x_train[:n_train], y_train=ds.y_train[:n_train], x_test=ds.x_test,
                                 y_test=ds.y_test, info=ds.info)


def build_model(config: SharpnessConfig, info: Any):
    """The run's network, initialised from ``config.seed``."""
    from .. import models

    classes = info.n_classes
    if config.arch == "mlp":
        return models.mlp(info.n_features, (config.hidden, config.hidden), classes, dropout=config.dropout,
                          seed=config.seed)
    return models.vgg1d(info.input_shape[0], classes, channels=(config.channels, 2 * config.channels),
                        batchnorm=config.batchnorm, seed=config.seed)


def run_sharpness(config: SharpnessConfig) -> tuple[dict, list]:
    """Train to 99 % training accuracy (or the cap), then measure λ_max; returns ``(record, series)``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: more threads only add synchronisation
    try:
        return _run(config)
    finally:
        torch.set_num_threads(threads)


def _chunks(x: Any, y: Any, size: int) -> list:
    return [(x[i:i + size], y[i:i + size]) for i in range(0, len(x), size)]


def _run(config: SharpnessConfig) -> tuple[dict, list]:
    from torch.nn import functional as F

    from ..analysis import sharpness
    from ..errors import InvalidInputError
    from ..training import Tracker, train

    t0 = time.perf_counter()
    ds = _dataset(config.dataset, config.n_train)
    n = len(ds.x_train)
    full_batch = config.batch_size >= n
    bs = None if full_batch else config.batch_size
    model = build_model(config, ds.info)
    n_params = sum(p.numel() for p in model.parameters())
    callbacks, tracker = [], None
    if config.track_every:
        # The edge of stability concerns the loss GD descends: the mean over the *whole* training set
        # (physical batches of 1,000, eval mode — the tracked nets have neither BatchNorm nor dropout).
        if config.batchnorm or config.dropout:
            raise InvalidInputError("track_every: tracking is for the plain MLP (no BatchNorm, no dropout)")
        tracker = Tracker(F.cross_entropy, _chunks(ds.x_train, ds.y_train, 1000), every=config.track_every,
                          lr=config.lr, tol=1e-3, mode="eval")
        callbacks.append(tracker)
    result = train(model, ds, config.optimizer, batch_size=bs, lr=config.lr, until_train_acc=config.until_train_acc,
                   max_epochs=config.max_epochs, rho=config.rho if config.optimizer == "sam" else None,
                   seed=config.seed + 1, callbacks=callbacks)
    train_seconds = time.perf_counter() - t0
    record: dict[str, Any] = {
        "lambda_max": math.nan, "train_acc": result.train_acc, "test_acc": result.test_acc,
        "train_loss": result.train_loss, "test_loss": result.test_loss, "epochs": result.epochs,
        "steps": result.steps, "reached_target": result.reached_target, "diverged": bool(result.diverged),
        "stop_reason": result.stop_reason, "full_batch": full_batch, "n_train": n, "n_test": len(ds.x_test),
        "two_over_lr": 2.0 / config.lr, "n_params": n_params, "train_seconds": train_seconds,
    }
    series: list[tuple[float, str, float]] = []
    if tracker is not None:
        for row in tracker.rows:
            series.append((row["epoch"], "lambda_max", row["lambda_max"]))
            if row.get("train_loss") is not None:
                series.append((row["epoch"], "train_loss", row["train_loss"]))
    if result.diverged:
        record["wall_seconds"] = time.perf_counter() - t0
        return record, series
    s = sharpness(model, F.cross_entropy, (ds.x_train, ds.y_train), "kaur2023", batch_size=bs,
                  interpolate=config.interpolate, lr=config.lr, tol=config.tol, engine="streaming+vmap")
    if full_batch:
        # For GD the stability threshold 2/η applies to the full training loss: measure it too.
        whole = sharpness(model, F.cross_entropy, (ds.x_train, ds.y_train), "full", tol=config.tol,
                          engine="streaming+vmap")
        record["lambda_max_full_data"] = whole.lambda_max
    record.update(lambda_max=s.lambda_max, lambda_max_endpoint=s.endpoint, lambda_residual=s.residual,
                  lambda_2=s.values[1] if len(s.values) > 1 else math.nan, lanczos_matvecs=s.matvecs,
                  sharpness_seconds=s.seconds, sharpness_mode=s.settings["mode"],
                  physical_batch=s.settings["physical_batch"], wall_seconds=time.perf_counter() - t0)
    return record, series


# ================================================================================================
# Analysis
# ================================================================================================

CLAIMS = {
    1: "Larger learning rates lower λ_max at every batch size, yet their generalization benefit can vanish at "
       "large batch sizes.",
    2: "Scaling batch size and learning rate together changes λ_max without changing generalization.",
    3: "SAM lowers λ_max at every batch size; its benefit also vanishes at large batch sizes.",
    4: "Very high dropout lowers λ_max yet hurts generalization.",
    5: "BatchNorm does not consistently lower λ_max but helps generalization.",
}

#: The decision rules, verbatim in the report. SE = √(p̄(1−p̄)/n_test), the binomial standard
#: error of a test accuracy p̄ (mean over the grid's runs) on n_test examples: the yardstick for
#: "no change" and "vanishes".
CLAIM_RULES = {
    1: "Grid lr_bs. (a) Within every batch size with ≥ 2 learning rates, Kendall τ(η, λ_max) < 0. (b) The "
       "test-accuracy gain of the largest over the smallest η is > 2·SE at the smallest batch size and "
       "< 2·SE (i.e. indistinguishable from none) at the largest batch size. Reproduced if (a) and (b); "
       "not reproduced if (a) fails or (b) fails; inconclusive with fewer than 2 batch sizes of ≥ 2 "
       "learning rates.",
    2: "Grid ratio (η/B fixed). λ_max changes: max/min ≥ 1.5. Generalization unchanged: max − min test "
       "accuracy ≤ 2·SE. Reproduced if both; not reproduced if λ_max changes but test accuracy spreads "
       "more than 2·SE; inconclusive with fewer than 3 runs or if λ_max does not change.",
    3: "Grid sam. (a) At every batch size, every SAM run (ρ > 0) has a lower λ_max than SGD (ρ = 0). (b) "
       "The test-accuracy gain of the best ρ > 0 over ρ = 0 is > 2·SE at the smallest batch size and < 2·SE at "
       "the largest. Reproduced if (a) and (b); not reproduced otherwise; inconclusive with fewer than 2 "
       "batch sizes having both SGD and SAM runs.",
    4: "Grid dropout. Very high dropout = p ≥ 0.6. (a) Every very-high-p run has a lower λ_max than p = 0. "
       "(b) Every very-high-p run has a test accuracy below the best run with p ≤ 0.5 by more than 2·SE. "
       "Reproduced if (a) and (b); not reproduced otherwise; inconclusive without a p = 0 and a p ≥ 0.6 run.",
    5: ("Grid batchnorm, runs paired by (η, B). (a) BatchNorm helps generalization: the test-accuracy "
        "gain (BN − no BN) is > 0 in every pair and > 2·SE on average over the pairs. (b) λ_max is not "
        "consistently lower with BatchNorm: at least one pair has λ_max(BN) ≥ λ_max(no BN). Reproduced "
        "if (a) and (b); not reproduced otherwise; inconclusive without a pair."),
}

VERDICTS = ("reproduced", "not reproduced", "inconclusive")

#: A run that ends (at the epoch cap) with a training accuracy below this has failed to train — with
#: η = 0.8 and B = 32 the MLP collapses to near-chance accuracy without a NaN — and is excluded like a
#: diverged run: the claims compare trained networks. Runs that stop at the cap above it are kept
#: (``reached_target = False``: hollow markers, named in the evidence). This threshold was added
#: after the first full run showed that collapsed run; docs/studies/sharpness.md gives the numbers
#: with and without it.
MIN_TRAIN_ACC = 0.5


@dataclass
class SharpnessAnalysis:
    """What :func:`analyze` computes from the results table."""

    claims: pd.DataFrame  # claim, statement, rule, evidence, verdict, figure
    tau: pd.DataFrame  # scope, batch_size, runs, tau, p_value
    eos: pd.DataFrame  # GD runs: lr, 2/η, λ_max (analysis set and all data)
    runs: pd.DataFrame  # the runs used
    excluded: pd.DataFrame  # the runs left out, with a reason

    @property
    def verdicts(self) -> dict[int, str]:
        return dict(zip(self.claims["claim"], self.claims["verdict"]))


def usable_runs(df: pd.DataFrame, min_train_acc: float = MIN_TRAIN_ACC) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(used, excluded)``: finished, non-diverged runs with a finite λ_max and a final training
    accuracy ≥ ``min_train_acc``; the others with a ``reason`` column."""
    if df.empty:
        return df.copy(), df.assign(reason=[])
    ok = df.copy()
    for col in ("lr", "batch_size", "rho", "dropout", "lambda_max", "test_acc", "train_acc"):
        ok[col] = pd.to_numeric(ok[col], errors="coerce")
    for col in ("full_batch", "batchnorm", "reached_target", "diverged"):
        if col in ok:
            ok[col] = ok[col].map(_as_bool)
    reason = pd.Series("", index=ok.index)
    if "status" in ok:
        reason[ok["status"] != "done"] = "status " + ok["status"].astype(str)
    if "diverged" in ok:
        reason[(reason == "") & ok["diverged"]] = "diverged"
    reason[(reason == "") & ok["lambda_max"].isna()] = "no λ_max"
    reason[(reason == "") & (ok["train_acc"] < min_train_acc)] = f"failed to train (train acc < {min_train_acc:g})"
    return ok[reason == ""], ok[reason != ""].assign(reason=reason[reason != ""])


#: What makes two runs the same training run (grids share some configurations, e.g. η = 0.2, B = 32
#: is in grids lr_bs and sam): the τ table and the λ_max-vs-test figure count each once.
TRAINING_KEY = ("dataset", "n_train", "arch", "hidden", "channels", "dropout", "batchnorm", "optimizer", "rho", "lr",
                "batch_size", "until_train_acc", "seed", "interpolate", "epochs")


def distinct_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per distinct training run: same configuration apart from the grid label, the epoch cap
    and tracking, and the same number of epochs (training is deterministic, so those runs are identical)."""
    key = [c for c in TRAINING_KEY if c in runs.columns]
    return runs.drop_duplicates(subset=key) if key and len(runs) else runs


def _as_bool(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("true", "1", "yes")
    return bool(v) if v is not None and not (isinstance(v, float) and math.isnan(v)) else False


def _se(runs: pd.DataFrame) -> float:
    p = float(runs["test_acc"].mean())
    n = float(runs["n_test"].iloc[0]) if "n_test" in runs and len(runs) else math.nan
    return math.sqrt(max(p * (1 - p), 1e-12) / n) if n and n > 0 else math.nan


def kendall(x: Any, y: Any) -> tuple[float, float]:
    """scipy.stats.kendalltau (τ-b) and its p-value; NaN for fewer than 2 points or a constant input."""
    from scipy.stats import kendalltau

    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return math.nan, math.nan
    r = kendalltau(x, y)
    return float(r.statistic), float(r.pvalue)


def _bs_label(bs: float, full: bool) -> str:
    return f"GD ({int(bs)})" if full else str(int(bs))


def _pct(x: float) -> str:
    return "nan" if x is None or not math.isfinite(x) else f"{100 * x:+.2f} pp"


def _claim1(runs: pd.DataFrame) -> tuple[str, str]:
    g = runs[runs["experiment"] == "lr_bs"]
    per_bs = [(bs, sub.sort_values("lr")) for bs, sub in g.groupby("batch_size") if sub["lr"].nunique() >= 2]
    if len(per_bs) < 2:
        return "inconclusive", f"only {len(per_bs)} batch size(s) with ≥ 2 learning rates"
    se = _se(g)
    taus, gains = [], []
    for bs, sub in per_bs:
        taus.append((bs, kendall(sub["lr"], sub["lambda_max"])[0]))
        gains.append((bs, float(sub["test_acc"].iloc[-1] - sub["test_acc"].iloc[0])))
    a = all(t < 0 for _, t in taus)
    full = dict(zip(g["batch_size"], g["full_batch"]))
    b, vanishing = _benefit_vanishes(gains, se, full, "the largest over the smallest η")
    evidence = ("τ(η, λ_max) per batch size: " + ", ".join(f"{_bs_label(bs, full[bs])}: {t:+.2f}" for bs, t in taus)
                + f" → (a) {'holds' if a else 'fails'}. " + vanishing)
    return ("reproduced" if a and b else "not reproduced"), evidence


def _benefit_vanishes(gains: list[tuple[float, float]], se: float, full: dict, what: str) -> tuple[bool, str]:
    """Part (b) of claims 1 and 3: the test-accuracy gain, per batch size in increasing order, is
    > 2·SE at the smallest batch size and < 2·SE at the largest; with the sentence stating it."""
    b = gains[0][1] > 2 * se and gains[-1][1] < 2 * se
    text = (f"Test-accuracy gain of {what}: " + ", ".join(f"{_bs_label(bs, full[bs])}: {_pct(v)}" for bs, v in gains)
            + f" (2·SE = {_pct(2 * se)[1:]}) → (b) {'holds' if b else 'fails'}.")
    return b, text


def _claim2(runs: pd.DataFrame) -> tuple[str, str]:
    g = runs[runs["experiment"] == "ratio"].sort_values("batch_size")
    if len(g) < 3:
        return "inconclusive", f"only {len(g)} run(s) in the ratio grid"
    se = _se(g)
    lam_ratio = float(g["lambda_max"].max() / g["lambda_max"].min())
    spread = float(g["test_acc"].max() - g["test_acc"].min())
    ratios = sorted(set(np.round(g["lr"] / g["batch_size"], 12)))
    evidence = (f"η/B = {', '.join(f'{r:.3g}' for r in ratios)}; B = {', '.join(str(int(b)) for b in g['batch_size'])}: "
                f"λ_max = {', '.join(f'{v:.3g}' for v in g['lambda_max'])} (max/min {lam_ratio:.2f}); test accuracy "
                f"= {', '.join(f'{v:.4f}' for v in g['test_acc'])} (spread {100 * spread:.2f} pp, 2·SE = "
                f"{200 * se:.2f} pp).")
    if lam_ratio < 1.5:
        return "inconclusive", evidence + " λ_max does not change by the rule's factor 1.5."
    return ("reproduced" if spread <= 2 * se else "not reproduced"), evidence


def _claim3(runs: pd.DataFrame) -> tuple[str, str]:
    g = runs[runs["experiment"] == "sam"]
    rows = []
    for bs, sub in g.groupby("batch_size"):
        base = sub[sub["rho"] == 0]
        sam = sub[sub["rho"] > 0]
        if len(base) and len(sam):
            rows.append((bs, float(base["lambda_max"].iloc[0]), sam, float(base["test_acc"].iloc[0])))
    if len(rows) < 2:
        return "inconclusive", f"only {len(rows)} batch size(s) with both SGD and SAM runs"
    se = _se(g)
    a = all((sam["lambda_max"] < lam0).all() for _, lam0, sam, _ in rows)
    gains = [(bs, float(sam["test_acc"].max() - acc0)) for bs, _, sam, acc0 in rows]
    full = dict(zip(g["batch_size"], g["full_batch"]))
    b, vanishing = _benefit_vanishes(gains, se, full, "the best ρ > 0")
    evidence = ("λ_max SGD → SAM (ρ = " + "/".join(f"{r:g}" for r in sorted(g.loc[g['rho'] > 0, 'rho'].unique()))
                + "): " + "; ".join(f"{_bs_label(bs, full[bs])}: {lam0:.3g} → "
                                    + "/".join(f"{v:.3g}" for v in sam.sort_values("rho")["lambda_max"])
                                    for bs, lam0, sam, _ in rows)
                + f" → (a) {'holds' if a else 'fails'}. " + vanishing)
    return ("reproduced" if a and b else "not reproduced"), evidence


def _claim4(runs: pd.DataFrame) -> tuple[str, str]:
    g = runs[runs["experiment"] == "dropout"].sort_values("dropout")
    base, high, low = g[g["dropout"] == 0], g[g["dropout"] >= 0.6], g[g["dropout"] <= 0.5]
    if not len(base) or not len(high):
        return "inconclusive", "no p = 0 run or no p ≥ 0.6 run"
    se = _se(g)
    lam0, best_low = float(base["lambda_max"].iloc[0]), float(low["test_acc"].max())
    a = bool((high["lambda_max"] < lam0).all())
    b = bool((high["test_acc"] < best_low - 2 * se).all())
    capped = g[~g["reached_target"]]["dropout"].tolist() if "reached_target" in g else []
    evidence = ("p: " + ", ".join(f"{p:g}" for p in g["dropout"]) + "; λ_max: "
                + ", ".join(f"{v:.3g}" for v in g["lambda_max"]) + "; test accuracy: "
                + ", ".join(f"{v:.4f}" for v in g["test_acc"])
                + f". (a) {'holds' if a else 'fails'}; (b) best p ≤ 0.5 reaches {best_low:.4f}, 2·SE = "
                  f"{200 * se:.2f} pp → {'holds' if b else 'fails'}."
                + (f" Runs stopped at the epoch cap before 99 % training accuracy: p = "
                   f"{', '.join(f'{p:g}' for p in capped)}." if capped else ""))
    return ("reproduced" if a and b else "not reproduced"), evidence


def _claim5(runs: pd.DataFrame) -> tuple[str, str]:
    g = runs[runs["experiment"] == "batchnorm"]
    pairs = []
    for (lr, bs), sub in g.groupby(["lr", "batch_size"]):
        on, off = sub[sub["batchnorm"]], sub[~sub["batchnorm"]]
        if len(on) and len(off):
            pairs.append((lr, bs, on.iloc[0], off.iloc[0]))
    if not pairs:
        return "inconclusive", "no (η, B) with runs both with and without BatchNorm"
    se = _se(g)
    gains = [float(on["test_acc"] - off["test_acc"]) for *_, on, off in pairs]
    lower = [bool(on["lambda_max"] < off["lambda_max"]) for *_, on, off in pairs]
    a = all(x > 0 for x in gains) and float(np.mean(gains)) > 2 * se
    b = not all(lower)
    evidence = ("; ".join(f"η = {lr:g}, B = {int(bs)}: λ_max {off['lambda_max']:.3g} → {on['lambda_max']:.3g}, "
                          f"test {off['test_acc']:.4f} → {on['test_acc']:.4f}" for lr, bs, on, off in pairs)
                + f" (no BN → BN). Mean test gain {_pct(float(np.mean(gains)))}, 2·SE = {_pct(2 * se)[1:]} → (a) "
                  f"{'holds' if a else 'fails'}; λ_max lower with BN in {sum(lower)}/{len(lower)} pairs → (b) "
                  f"{'holds' if b else 'fails'}.")
    return ("reproduced" if a and b else "not reproduced"), evidence


FIGURES = {
    "tau": "lambda_vs_test.png", 1: "claim1_lr_batch.png", 2: "claim2_ratio.png", 3: "claim3_sam.png",
    4: "claim4_dropout.png", 5: "claim5_batchnorm.png", "eos": "eos_gd.png",
}


def analyze(df: pd.DataFrame, series: pd.DataFrame | None = None, *,
            min_train_acc: float = MIN_TRAIN_ACC) -> SharpnessAnalysis:
    """Claims with verdicts, Kendall τ table and edge-of-stability table from a results table.

    ``df`` is ``results.csv`` (or :func:`hesslens.studies.results_frame`); see :data:`CLAIM_RULES`.
    τ is Kendall's τ-b (``scipy.stats.kendalltau``) between λ_max and test accuracy over the MLP runs
    of every grid with the same batch size, and over all MLP runs; the VGG runs (a different
    architecture, hence a different accuracy range) get their own row. A training run shared by two
    grids is counted once (:func:`distinct_runs`).
    """
    runs, excluded = usable_runs(df, min_train_acc)
    claims = []
    for i, fn in ((1, _claim1), (2, _claim2), (3, _claim3), (4, _claim4), (5, _claim5)):
        if runs.empty:
            verdict, evidence = "inconclusive", "no usable runs"
        else:
            verdict, evidence = fn(runs)
        claims.append({"claim": i, "statement": CLAIMS[i], "rule": CLAIM_RULES[i], "evidence": evidence,
                       "verdict": verdict, "figure": FIGURES[i]})
    tau_rows = []
    distinct = distinct_runs(runs)
    if not distinct.empty:
        mlp = distinct[distinct["arch"] == "mlp"]
        for bs, sub in mlp.groupby("batch_size"):
            t, p = kendall(sub["lambda_max"], sub["test_acc"])
            tau_rows.append({"scope": "MLP runs, batch size " + _bs_label(bs, bool(sub["full_batch"].iloc[0])),
                             "batch_size": int(bs), "runs": len(sub), "tau": t, "p_value": p})
        t, p = kendall(mlp["lambda_max"], mlp["test_acc"])
        tau_rows.append({"scope": "all MLP runs", "batch_size": None, "runs": len(mlp), "tau": t, "p_value": p})
        vgg = distinct[distinct["arch"] != "mlp"]
        if len(vgg):
            t, p = kendall(vgg["lambda_max"], vgg["test_acc"])
            tau_rows.append({"scope": "VGG-1D runs (BatchNorm grid)", "batch_size": None, "runs": len(vgg), "tau": t,
                             "p_value": p})
        t, p = kendall(distinct["lambda_max"], distinct["test_acc"])
        tau_rows.append({"scope": "all runs", "batch_size": None, "runs": len(distinct), "tau": t, "p_value": p})
    tau = pd.DataFrame(tau_rows, columns=["scope", "batch_size", "runs", "tau", "p_value"])
    eos_rows = []
    if not distinct.empty:
        gd = distinct[distinct["full_batch"] & (distinct["optimizer"] == "sgd") & (distinct["arch"] == "mlp")]
        for _, r in gd.sort_values(["experiment", "lr"]).iterrows():
            full = float(r["lambda_max_full_data"]) if "lambda_max_full_data" in r else math.nan
            eos_rows.append({"lr": r["lr"], "two_over_lr": 2 / r["lr"], "lambda_max_1000": r["lambda_max"],
                             "lambda_max_full_data": full, "full_data_x_lr_over_2": full * r["lr"] / 2,
                             "epochs": r["epochs"], "reached_target": r["reached_target"]})
    eos = pd.DataFrame(eos_rows, columns=["lr", "two_over_lr", "lambda_max_1000", "lambda_max_full_data",
                                          "full_data_x_lr_over_2", "epochs", "reached_target"])
    return SharpnessAnalysis(pd.DataFrame(claims), tau, eos, runs, excluded)


# -- figures ---------------------------------------------------------------------------------------
def _marker_kwargs(sub: pd.DataFrame, color: Any) -> dict:
    reached = sub["reached_target"].to_numpy(bool) if "reached_target" in sub else np.ones(len(sub), bool)
    return {"facecolors": [color if r else "none" for r in reached], "edgecolors": color}


def _log_ticks(ax: Any, values: Any, labels: Any = None) -> None:
    """Ticks of a log-scaled x axis exactly at the grid's values, written plainly (no 2×10⁻¹ clutter)."""
    from matplotlib.ticker import NullFormatter, NullLocator

    values = sorted(set(float(v) for v in values))
    if not values:
        return
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(values, labels if labels is not None else [f"{v:g}" for v in values])


def _bs_colors(values: Any) -> dict:
    import matplotlib

    values = sorted(set(values))
    cmap = matplotlib.colormaps["viridis"]
    return {v: cmap(i / max(1, len(values) - 1)) for i, v in enumerate(values)}


def figures(analysis: SharpnessAnalysis, series: pd.DataFrame | None = None) -> dict[str, Any]:
    """Matplotlib figures keyed by :data:`FIGURES` keys."""
    from matplotlib.figure import Figure

    runs = analysis.runs
    figs: dict[Any, Any] = {}
    hollow = "hollow markers: stopped at the epoch cap before 99 % training accuracy"

    # λ_max vs test accuracy, per batch size (MLP runs).
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    mlp = distinct_runs(runs[runs["arch"] == "mlp"]) if len(runs) else runs
    colors = _bs_colors(mlp["batch_size"]) if len(mlp) else {}
    for bs, sub in (mlp.groupby("batch_size") if len(mlp) else []):
        label = _bs_label(bs, bool(sub["full_batch"].iloc[0]))
        ax.scatter(sub["lambda_max"], sub["test_acc"], s=30, label=f"B = {label}", **_marker_kwargs(sub, colors[bs]))
    ax.set_xscale("log")
    ax.set_xlabel("λ_max (kaur2023 protocol)")
    ax.set_ylabel("test accuracy")
    ax.set_title("MLP runs of all grids, coloured by batch size", fontsize=9)
    if len(mlp):
        ax.legend(fontsize=7, title="hollow: stopped at the\nepoch cap (< 99 % train)", title_fontsize=6,
                  loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    figs["tau"] = fig

    def two_panels(title: str) -> tuple[Any, Any, Any]:
        f = Figure(figsize=(10, 3.9))
        a1, a2 = f.add_subplot(1, 2, 1), f.add_subplot(1, 2, 2)
        f.suptitle(title, fontsize=9)
        return f, a1, a2

    # Claim 1: λ_max and test accuracy against η, one line per batch size.
    g = runs[runs["experiment"] == "lr_bs"] if len(runs) else runs
    fig, a1, a2 = two_panels("Grid lr_bs: learning rate × batch size (" + hollow + ")")
    cols = _bs_colors(g["batch_size"]) if len(g) else {}
    for bs, sub in (g.groupby("batch_size") if len(g) else []):
        sub = sub.sort_values("lr")
        label = "B = " + _bs_label(bs, bool(sub["full_batch"].iloc[0]))
        a1.plot(sub["lr"], sub["lambda_max"], color=cols[bs], lw=1)
        a1.scatter(sub["lr"], sub["lambda_max"], s=28, label=label, **_marker_kwargs(sub, cols[bs]))
        a2.plot(sub["lr"], sub["test_acc"], color=cols[bs], lw=1)
        a2.scatter(sub["lr"], sub["test_acc"], s=28, label=label, **_marker_kwargs(sub, cols[bs]))
    if len(g):
        lrs = np.geomspace(g["lr"].min(), g["lr"].max(), 40)
        a1.plot(lrs, 2 / lrs, "k--", lw=1, label="2/η")
        a1.legend(fontsize=7)
    for a, yl in ((a1, "λ_max"), (a2, "test accuracy")):
        a.set_xscale("log")
        if len(g):
            _log_ticks(a, g["lr"])
        a.set_xlabel("learning rate η")
        a.set_ylabel(yl)
        a.grid(alpha=0.3, which="both")
    a1.set_yscale("log")
    fig.tight_layout()
    figs[1] = fig

    # Claim 2: along η/B fixed.
    g = runs[runs["experiment"] == "ratio"].sort_values("batch_size") if len(runs) else runs
    fig, a1, a2 = two_panels("Grid ratio: η and B scaled together (η/B fixed)")
    if len(g):
        a1.plot(g["batch_size"], g["lambda_max"], "o-", color="C0")
        a2.plot(g["batch_size"], g["test_acc"], "o-", color="C1")
        for _, r in g.iterrows():
            a1.annotate(f"η={r['lr']:g}", (r["batch_size"], r["lambda_max"]), fontsize=7, textcoords="offset points",
                        xytext=(3, 3))
        se = _se(g)
        mid = float(g["test_acc"].mean())
        a2.axhspan(mid - se, mid + se, color="C1", alpha=0.15, label="mean ± 1 SE (binomial)")
        a2.legend(fontsize=7)
    for a, yl in ((a1, "λ_max"), (a2, "test accuracy")):
        a.set_xscale("log", base=2)
        if len(g):
            _log_ticks(a, g["batch_size"])
        ratios = sorted(set(np.round(g["lr"] / g["batch_size"], 12))) if len(g) else []
        a.set_xlabel("batch size B" + (f" (η/B = {ratios[0]:.3g})" if len(ratios) == 1 else ""))
        a.set_ylabel(yl)
        a.grid(alpha=0.3, which="both")
    fig.tight_layout()
    figs[2] = fig

    # Claim 3: SAM ρ × batch size.
    g = runs[runs["experiment"] == "sam"] if len(runs) else runs
    fig, a1, a2 = two_panels("Grid sam: SAM radius ρ × batch size (ρ = 0 is plain SGD)")
    for i, (rho, sub) in enumerate(g.groupby("rho") if len(g) else []):
        sub = sub.sort_values("batch_size")
        for a, y in ((a1, "lambda_max"), (a2, "test_acc")):
            a.plot(sub["batch_size"], sub[y], "o-", color=f"C{i}", label=f"ρ = {rho:g}")
    for a, yl in ((a1, "λ_max"), (a2, "test accuracy")):
        a.set_xscale("log", base=2)
        if len(g):
            sizes = sorted(set(zip(g["batch_size"], g["full_batch"])))
            _log_ticks(a, [b for b, _ in sizes], [_bs_label(b, f) for b, f in sizes])
        a.set_xlabel("batch size B")
        a.set_ylabel(yl)
        a.grid(alpha=0.3, which="both")
        if len(g):
            a.legend(fontsize=7)
    a1.set_yscale("log")
    fig.tight_layout()
    figs[3] = fig

    # Claim 4: dropout.
    g = runs[runs["experiment"] == "dropout"].sort_values("dropout") if len(runs) else runs
    fig, a1, a2 = two_panels("Grid dropout: MLP dropout probability p (" + hollow + ")")
    if len(g):
        for a, y, c in ((a1, "lambda_max", "C0"), (a2, "test_acc", "C1")):
            a.plot(g["dropout"], g[y], color=c, lw=1)
            a.scatter(g["dropout"], g[y], s=30, **_marker_kwargs(g, c))
            a.axvspan(0.55, 0.75, color="0.85", zorder=0)
    for a, yl in ((a1, "λ_max"), (a2, "test accuracy")):
        a.set_xlabel("dropout p (grey: 'very high', p ≥ 0.6)")
        a.set_ylabel(yl)
        a.grid(alpha=0.3)
    fig.tight_layout()
    figs[4] = fig

    # Claim 5: BatchNorm pairs.
    g = runs[runs["experiment"] == "batchnorm"] if len(runs) else runs
    fig, a1, a2 = two_panels("Grid batchnorm: VGG-1D with and without BatchNorm, per (η, B)")
    if len(g):
        keys = sorted(set(zip(g["lr"], g["batch_size"])))
        xs = np.arange(len(keys))
        for j, (bn, label) in enumerate(((False, "no BatchNorm"), (True, "BatchNorm"))):
            sub = g[g["batchnorm"] == bn]
            vals = {(r["lr"], r["batch_size"]): r for _, r in sub.iterrows()}
            for a, y in ((a1, "lambda_max"), (a2, "test_acc")):
                a.bar(xs + (j - 0.5) * 0.38, [vals[k][y] if k in vals else np.nan for k in keys], width=0.38,
                      label=label, color=f"C{j}")
        for a, yl in ((a1, "λ_max"), (a2, "test accuracy")):
            a.set_xticks(xs, [f"η={lr:g}\nB={int(bs)}" for lr, bs in keys], fontsize=7)
            a.set_ylabel(yl)
            a.legend(fontsize=7)
            a.grid(alpha=0.3, axis="y")
        lo = float(g["test_acc"].min())
        a2.set_ylim(max(0.0, lo - 0.05), min(1.0, float(g["test_acc"].max()) + 0.02))
    fig.tight_layout()
    figs[5] = fig

    # Edge of stability: λ_max along GD training.
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    drawn = False
    if series is not None and len(series) and len(runs):
        lam = series[series["key"] == "lambda_max"]
        gd = runs[runs["full_batch"] & (runs["arch"] == "mlp")].sort_values("lr")
        i = 0
        for _, r in gd.iterrows():
            s = lam[(lam["run_key"] == r["run_key"]) & (lam["seed"] == r.get("seed", 0))].sort_values("step")
            if not len(s):
                continue
            ax.plot(s["step"], s["value"], "o-", ms=2.5, lw=1, color=f"C{i}", label=f"η = {r['lr']:g}")
            ax.axhline(2 / r["lr"], color=f"C{i}", ls="--", lw=1)
            i += 1
            drawn = True
    ax.set_xlabel("GD step (= epoch)")
    ax.set_ylabel("λ_max of the training loss (all examples)")
    ax.set_title("Full-batch GD: λ_max during training; dashed: 2/η", fontsize=9)
    if drawn:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    figs["eos"] = fig
    return figs


# -- report --------------------------------------------------------------------------------------
def analysis_markdown(analysis: SharpnessAnalysis, figure_dir: str = "figures") -> str:
    """The claims table, the τ table and the GD table as Markdown (written to ``OUT/analysis.md``)."""
    c = analysis.claims
    out = ["# Sharpness study: analysis", "",
           f"Runs used: {len(analysis.runs)} (finished, not diverged, finite λ_max, final training accuracy ≥ "
           f"{MIN_TRAIN_ACC:g}); excluded: {len(analysis.excluded)}"
           + (":\n" + "".join(f"\n- {r['experiment']}: η = {r['lr']:g}, B = {int(r['batch_size'])}"
                      + (f", ρ = {r['rho']:g}" if r["rho"] else "") + (f", p = {r['dropout']:g}" if r["dropout"] else "")
                      + f" — {r['reason']} (train acc {r['train_acc']:.3f})" for _, r in analysis.excluded.iterrows())
              if len(analysis.excluded) else "."),
           "", "## The five claims", "",
           table(c[["claim", "statement", "verdict", "figure"]].assign(
               figure=[f"[{f}]({figure_dir}/{f})" for f in c["figure"]]), float_digits=3, blank=""), ""]
    for _, r in c.iterrows():
        out += [f"**Claim {r['claim']} — {r['verdict']}.** {r['statement']}", "",
                f"- Rule: {r['rule']}", f"- Evidence: {r['evidence']}", f"- Figure: `{figure_dir}/{r['figure']}`", ""]
    out += ["## Kendall τ between λ_max and test accuracy", "",
            "τ-b from `scipy.stats.kendalltau`; negative τ means sharper (higher λ_max) runs generalize worse.", "",
            table(analysis.tau.assign(batch_size=analysis.tau["batch_size"].map(
                lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(int(v)))),
                float_digits=3, blank=""), "",
            "## Full-batch GD and the edge of stability (2/η)", "",
            "λ_max of the final weights over the 1,000-example analysis set (the protocol) and over the whole "
            "training set (the loss GD descends), against 2/η.", "",
            table(analysis.eos, float_digits=4, blank="") if len(analysis.eos) else "No full-batch GD runs.", ""]
    return "\n".join(out)


def report_sharpness(df: pd.DataFrame, out: Path, series: pd.DataFrame | None = None) -> ReportContent:
    """Report hook: figures (named in :data:`FIGURES`) under ``OUT/figures``, ``OUT/analysis.md`` with the
    claims and τ tables and their decision rules; the report page shows the verdicts and τ tables first,
    then the figures, whose captions repeat each verdict."""
    out = Path(out)
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    analysis = analyze(df, series)
    figs = figures(analysis, series)
    paths = {}
    for key, fig in figs.items():
        path = fig_dir / FIGURES[key]
        fig.savefig(path, dpi=110, bbox_inches="tight")
        paths[key] = path
    (out / "analysis.md").write_text(analysis_markdown(analysis))
    analysis.claims.drop(columns=["rule"]).to_csv(out / "claims.csv", index=False)
    analysis.tau.to_csv(out / "kendall_tau.csv", index=False)
    tau = analysis.tau
    tau_text = "; ".join(f"{r['scope']}: τ = " + (f"{r['tau']:+.2f}" if math.isfinite(r["tau"]) else "n/a")
                         + f" (n = {r['runs']})" for _, r in tau.iterrows()) or "no runs"
    captions: dict[str, Path] = {f"λ_max against test accuracy per batch size. Kendall τ(λ_max, test acc): {tau_text}":
                                 paths["tau"]}
    for _, r in analysis.claims.iterrows():
        captions[f"Claim {r['claim']} — {r['verdict'].upper()}: {r['statement']} Evidence: {r['evidence']} "
                 f"(rule in analysis.md)"] = paths[r["claim"]]
    eos = analysis.eos
    eos_text = "; ".join(f"η = {r['lr']:g}: λ_max = {r['lambda_max_full_data']:.3g} (all training data), 2/η = "
                         f"{r['two_over_lr']:.3g}" for _, r in eos.iterrows()) or "no GD runs"
    captions[f"Edge of stability (grid 6, the GD runs of grid lr_bs): final {eos_text}"] = paths["eos"]
    verdicts = analysis.claims[["claim", "verdict", "statement", "evidence", "figure"]]
    return ReportContent(
        figures=captions,
        tables={"The paper's five claims, as reproduced here": verdicts,
                "Kendall τ between λ_max and test accuracy": tau,
                "Full-batch GD and the edge of stability (2/η)": eos},
        notes={"The paper's five claims, as reproduced here":
               f"{len(analysis.runs)} runs used, {len(analysis.excluded)} excluded (see analysis.md for "
               "the exclusions and each claim's decision rule).",
               "Kendall τ between λ_max and test accuracy":
               "τ-b; negative τ means sharper (higher λ_max) runs generalize worse."},
    )


# ================================================================================================
# Presets
# ================================================================================================
def _presets() -> dict[str, Any]:
    gd = MNIST1D_TRAIN
    # Smoke: a 256-example subset, narrow nets, every grid touched; GD = batch size 256.
    sm = {"n_train": 256, "hidden": 32, "channels": 4, "max_epochs": 250, "tol": 1e-3}
    smoke = [
        {**sm, "experiment": "lr_bs", "lr": [0.2, 0.4], "batch_size": [64, 256], "track_every": 50},
        {**sm, "experiment": "ratio", "lr": 0.1, "batch_size": 64},
        {**sm, "experiment": "ratio", "lr": 0.2, "batch_size": 128},
        {**sm, "experiment": "ratio", "lr": 0.05, "batch_size": 32},
        {**sm, "experiment": "sam", "optimizer": "sam", "rho": 0.05, "lr": 0.2, "batch_size": [64, 256]},
        {**sm, "experiment": "sam", "lr": 0.2, "batch_size": [64, 256]},
        {**sm, "experiment": "dropout", "lr": 0.2, "batch_size": 64, "dropout": [0.0, 0.6]},
        {**sm, "experiment": "batchnorm", "arch": "vgg1d", "lr": 0.2, "batch_size": 64, "batchnorm": False},
        {**sm, "experiment": "batchnorm", "arch": "vgg1d", "lr": 0.2, "batch_size": 64, "batchnorm": True,
         "interpolate": True},
    ]
    # Full: MNIST-1D, MLP 40-256-256-10 / VGG-1D 16-32. Longest runs first so that the pool ends evenly
    # (measured on the 2-core machine: 873 s per seed with --executor pool --workers 2; 5 seeds by default).
    lrs = [0.05, 0.1, 0.2, 0.4, 0.8]
    full = [
        # grids 1 and 6: full-batch GD, λ_max tracked every 50 steps
        {"experiment": "lr_bs", "lr": 0.05, "batch_size": gd, "max_epochs": 8000, "track_every": 50},
        # grid 3: SAM × batch size at η = 0.2, full batch first (two gradients per step)
        {"experiment": "sam", "optimizer": "sam", "rho": [0.05, 0.1], "lr": 0.2, "batch_size": gd,
         "max_epochs": 4000},
        {"experiment": "lr_bs", "lr": [0.1, 0.2, 0.4, 0.8], "batch_size": gd, "max_epochs": 4000, "track_every": 50},
        {"experiment": "sam", "lr": 0.2, "batch_size": gd, "max_epochs": 4000},
        # grid 5: BatchNorm (λ_max interpolated for the BN nets, as the paper does)
        {"experiment": "batchnorm", "arch": "vgg1d", "lr": [0.1, 0.2, 0.4], "batch_size": [32, 128],
         "batchnorm": True, "interpolate": True, "max_epochs": 800},
        {"experiment": "batchnorm", "arch": "vgg1d", "lr": [0.1, 0.2, 0.4], "batch_size": [32, 128],
         "batchnorm": False, "max_epochs": 800},
        {"experiment": "sam", "optimizer": "sam", "rho": [0.05, 0.1], "lr": 0.2, "batch_size": [32, 128, 512],
         "max_epochs": 1000},
        {"experiment": "sam", "lr": 0.2, "batch_size": [32, 128, 512], "max_epochs": 1000},
        # grid 4: dropout at η = 0.1, B = 32
        {"experiment": "dropout", "lr": 0.1, "batch_size": 32, "dropout": [0.7, 0.6, 0.5, 0.2, 0.1, 0.0],
         "max_epochs": 500},
        # grid 1: SGD part
        {"experiment": "lr_bs", "lr": lrs, "batch_size": [32, 128, 512], "max_epochs": 1000},
        # grid 2: η/B = 0.1/128 fixed
        *({"experiment": "ratio", "lr": 0.1 * b / 128, "batch_size": b, "max_epochs": 1000}
          for b in (16, 32, 64, 128, 256, 512, 1024)),
    ]
    return {"smoke": smoke, "full": full}


STUDY = register(Study(
    name="sharpness",
    config=SharpnessConfig,
    run=run_sharpness,
    presets=_presets(),
    seeds={"smoke": 1, "full": 5},
    report=report_sharpness,
    description="Sharpness and generalization (Kaur, Cohen & Lipton 2023, arXiv 2206.10654) at CPU scale on "
                "MNIST-1D: plain SGD / SAM to 99 % training accuracy over grids of learning rate × batch size "
                "(with full-batch GD and its edge of stability), η/B fixed, SAM ρ, dropout p and BatchNorm; λ_max by "
                "the paper's protocol (hesslens.analysis.sharpness). Every figure caption states a claim's verdict; "
                "the claims table with its decision rules and the Kendall τ table are in analysis.md next to this "
                "report.",
))
