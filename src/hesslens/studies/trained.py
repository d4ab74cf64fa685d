"""The train-then-measure skeleton shared by the studies of trained networks.

Kaur et al.'s sharpness study, the HESD-type study and the layer-wise study all do the same thing per
run: build a network from a seed, train it on a dataset to a training-accuracy target (or an epoch cap),
optionally track a curvature quantity along the way, then measure the trained network. This module
holds that skeleton once:

* :class:`TrainedNetConfig` — the configuration fields every such run has (dataset and its test-set
  size, architecture, optimiser, η, batch size, stopping rule, the loss normalisation, the replicate
  seed, tracking). A study subclasses it and adds its own settings; each field is validated once, where
  it is declared (:func:`hesslens.studies.param` bounds, :meth:`__post_init__`). A subclass changes what
  the skeleton does through four hooks, each a method of the configuration: :meth:`~TrainedNetConfig.
  model_options` (extra builder arguments), :meth:`~TrainedNetConfig.train_options` (extra
  :func:`hesslens.train` arguments: clipping, augmentation, a fixed number of epochs),
  :meth:`~TrainedNetConfig.tracker_options` (what the tracker records) and
  :meth:`~TrainedNetConfig.start` (what happens before training: e.g. pre-training on one task and
  handing over another to fine-tune on).
* :func:`train_then_measure` — load (once per process), build, train with :func:`hesslens.train`, record
  the shared columns, then call the study's ``measure`` on the trained network; a tracked λ_max
  trajectory becomes the run's series and an artifact, and its edge-of-stability summary
  (:func:`hesslens.analysis.edge_of_stability`) columns of the record.

Seeds: replicate seed s initialises the network with seed s and orders the data with seed s + 1.
A run that stops at the epoch cap before the target has ``capped = True`` (``reached_target = False``):
the claim framework never lets such runs carry a verdict alone (study standard 5).
"""

from __future__ import annotations

import functools
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import InvalidInputError
from .declaration import param

#: The optimisers of :func:`hesslens.train` (``hesslens.training.optimizers.OPTIMIZERS``; a test keeps the
#: two equal). Written out so that declaring a study — ``hesslens study NAME --status`` — imports no torch.
OPTIMIZER_NAMES = ("sgd", "momentum", "adam", "adamw", "rmsprop", "sam", "adahessian", "signsgd")


@dataclass(frozen=True)
class TrainedNetConfig:
    """One network trained to a target; a study subclasses this and adds its measurement's fields."""

    dataset: str = param("mnist1d_n13750", doc="hesslens dataset name (mnist1d_n<N>: N signals in all)")
    n_test: int = param(10000, ge=0, doc="test-set size (0 = the dataset's default split)")
    n_train: int = param(0, ge=0, doc="use only the first n_train training examples (0 = all)")
    arch: Literal["mlp", "vgg1d", "vgg2d"] = param(
        "mlp", doc="MLP (two hidden layers), or VGG-style 1-D (signals) or 2-D (images) conv net")
    hidden: int = param(256, ge=1, doc="MLP hidden width (both layers)")
    channels: int = param(16, ge=1, doc="VGG first-stage channels (the second stage has twice as many)")
    dropout: float = param(0.0, ge=0.0, lt=1.0, doc="MLP dropout probability after each hidden layer")
    batchnorm: bool = param(False, doc="VGG with BatchNorm after every convolution")
    optimizer: str = param("sgd", choices=OPTIMIZER_NAMES, doc="an optimizer of hesslens.train (plain SGD, SAM, Adam, …)")
    rho: float = param(0.0, ge=0.0, doc="SAM radius ρ (0 with plain SGD)")
    lr: float = param(0.1, gt=0, doc="learning rate η")
    batch_size: int = param(32, ge=1, doc="mini-batch size; ≥ the training-set size means full batch (GD)")
    loss_normalisation: Literal["mean", "nominal"] = param(
        "nominal", doc="training loss per step: batch mean, or the authors' sum over the batch / batch_size")
    max_epochs: int = param(1000, ge=1, doc="cap on epochs when the training-accuracy target is not reached")
    until_train_acc: float = param(0.99, gt=0, le=1, doc="stop at this training accuracy (full set, eval mode)")
    seed: int = param(0, ge=0, doc="replicate seed, filled by hesslens: network init = seed, data order = seed + 1")
    track_every: int = param(0, ge=0, doc="record λ_max of the whole training loss every this many epochs (0 = never)")
    smoke: bool = param(False, doc="a smoke-scale run: exercises the code and never carries a verdict")

    def __post_init__(self) -> None:
        if self.optimizer == "sgd" and self.rho != 0:
            raise InvalidInputError(f"rho: plain SGD takes no SAM radius, got rho={self.rho} (use optimizer='sam')")
        if self.optimizer == "sam" and self.rho <= 0:
            raise InvalidInputError(f"rho: SAM needs rho > 0, got {self.rho}")
        if self.arch != "mlp" and self.dropout:
            raise InvalidInputError("dropout: the VGG net has no dropout layers (use arch='mlp')")
        if self.arch == "mlp" and self.batchnorm:
            raise InvalidInputError("batchnorm: the MLP has no BatchNorm layers (use arch='vgg1d')")
        if self.track_every and (self.batchnorm or self.dropout):
            # The tracked loss is the one GD descends, in eval mode: only defined alike for plain nets.
            raise InvalidInputError("track_every: tracking is for nets without BatchNorm or dropout")

    # -- hooks a study's subclass overrides ----------------------------------------------------------
    def model_options(self) -> dict[str, Any]:
        """Extra keyword arguments of the model builder (:func:`hesslens.models.mlp` / ``vgg1d`` / ``vgg2d``)."""
        return {}

    def train_options(self) -> dict[str, Any]:
        """Keyword arguments of :func:`hesslens.train` that replace or add to the skeleton's own."""
        return {"rho": self.rho} if self.optimizer == "sam" else {}

    def tracker_options(self) -> dict[str, Any]:
        """Keyword arguments of the :class:`hesslens.Tracker` run every ``track_every`` epochs: λ_max of the
        whole training loss (the loss GD descends), in eval mode."""
        return {"measure": ("lambda_max",), "tol": 1e-3, "mode": "eval"}

    def start(self, model: Any, data: Any) -> tuple[Any, Any]:
        """Before training: the network to train and the data to train it on (default: as built and loaded)."""
        return model, data


_AUGMENT = re.compile(r"^(noise\d+(\.\d+)?|shift\d+)?$")


@dataclass(frozen=True)
class VariantNetConfig(TrainedNetConfig):
    """:class:`TrainedNetConfig` with the hidden activation, a fixed budget of epochs and the training
    manipulations of :func:`hesslens.train` (augmentation, clipping, gradient noise) as fields: what the
    HESD-type and layer-wise studies vary. Each manipulation at its default is off."""

    activation: Literal["relu", "tanh", "gelu", "elu", "softplus"] = param("relu", doc="hidden-layer activation")
    augment: str = param("", doc="training-input augmentation of hesslens.train ('' none, 'noise<σ>', 'shift<k>')")
    clip_norm: float = param(0.0, ge=0.0, doc="clip the gradient's global norm to this (0 = off)")
    clip_value: float = param(0.0, ge=0.0, doc="clip every gradient entry to ± this (0 = off)")
    grad_noise: float = param(0.0, ge=0.0, doc="σ of Gaussian noise added to every gradient entry (0 = off)")
    epochs: int = param(0, ge=0, doc="train exactly this many epochs, ignoring the target (0 = to the target)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not _AUGMENT.match(self.augment):
            raise InvalidInputError(f"augment: must be '', 'noise<σ>' or 'shift<k>', got {self.augment!r}")

    def model_options(self) -> dict[str, Any]:
        return {"activation": self.activation}

    def train_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"clip_norm": self.clip_norm or None, "clip_value": self.clip_value or None,
                                   "grad_noise": self.grad_noise or None, "augment": self.augment or None}
        if self.epochs:
            options.update(epochs=self.epochs, until_train_acc=None)
        return {**super().train_options(), **options}


@functools.lru_cache(maxsize=4)
def dataset(name: str, n_test: int, n_train: int):
    """Load once per process; ``n_test`` (0: default split) and the first ``n_train`` examples (0: all)."""
    import types

    from .. import datasets

    ds = datasets.load(name, n_test=n_test or None)
    if not n_train or n_train >= len(ds.x_train):
        return ds
    return types.SimpleNamespace(x_train=ds.x_train[:n_train], y_train=ds.y_train[:n_train], x_test=ds.x_test,
                                 y_test=ds.y_test, info=ds.info)


def build_model(config: TrainedNetConfig, info: Any):
    """The run's network, initialised from ``config.seed``."""
    from .. import models

    extra = config.model_options()
    out = info.n_classes if info.task == "classification" else 1  # hesslens's regression targets are (N, 1)
    if config.arch == "mlp":
        return models.mlp(info.n_features, (config.hidden, config.hidden), out, dropout=config.dropout,
                          seed=config.seed, **extra)
    if len(info.input_shape) != (2 if config.arch == "vgg1d" else 3):
        raise InvalidInputError(f"arch: {config.arch} needs inputs shaped {'(C, L)' if config.arch == 'vgg1d' else '(C, H, W)'}"
                                f", dataset {config.dataset!r} has shape {tuple(info.input_shape)}")
    build = models.vgg1d if config.arch == "vgg1d" else models.vgg2d
    return build(info.input_shape[0], out, channels=(config.channels, 2 * config.channels),
                 batchnorm=config.batchnorm, seed=config.seed, **extra)


@dataclass(frozen=True)
class Trained:
    """What ``measure`` receives: the trained network, the data it was trained on, the training result, the
    batch size used (None for full batch) and the tracker (None when nothing was tracked)."""

    model: Any
    data: Any
    result: Any
    batch_size: int | None
    tracker: Any = None


def train_then_measure(config: TrainedNetConfig, measure: Callable[[TrainedNetConfig, Trained], Any],
                       ctx: Any = None) -> tuple[dict, list]:
    """Train per ``config``, then ``measure(config, trained)`` → record entries, or ``(entries, artifacts)``
    (name → object, saved through ``ctx.save_artifact`` when there is a context); returns ``(record, series)``.

    Runs single-threaded (the nets are tiny: more threads only add synchronisation; two runs per
    2-core machine in the pool executor). A diverged run is not measured.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(config, measure, ctx)
    finally:
        torch.set_num_threads(threads)


def fit(config: TrainedNetConfig) -> Trained:
    """Load, build and train per ``config`` (the skeleton without the measurement): the trained network,
    the data it was trained on (after :meth:`TrainedNetConfig.start`), the result and the tracker."""
    from torch.nn import functional as F

    from ..analysis.sharpness import split_batches
    from ..training import Tracker, train

    loaded = dataset(config.dataset, config.n_test, config.n_train)
    model, ds = config.start(build_model(config, loaded.info), loaded)
    bs = None if config.batch_size >= len(ds.x_train) else config.batch_size
    callbacks, tracker = [], None
    if config.track_every:
        # The tracked loss is the one training descends (hl.train's default for the task): the mean over the
        # *whole* training set.
        loss = F.cross_entropy if loaded.info.task == "classification" else F.mse_loss
        tracker = Tracker(loss, split_batches(ds.x_train, ds.y_train, 1000), every=config.track_every,
                          lr=config.lr, **config.tracker_options())
        callbacks.append(tracker)
    options = dict(batch_size=bs, lr=config.lr, until_train_acc=config.until_train_acc, max_epochs=config.max_epochs,
                   seed=config.seed + 1, callbacks=callbacks, loss_normalisation=config.loss_normalisation,
                   test_eval="final")  # only the final test accuracy is recorded: skip the per-epoch test passes
    result = train(model, ds, config.optimizer, **{**options, **config.train_options()})
    return Trained(model, ds, result, bs, tracker)


def _run(config: TrainedNetConfig, measure: Callable, ctx: Any) -> tuple[dict, list]:
    import numpy as np

    from ..analysis import edge_of_stability

    t0 = time.perf_counter()
    trained = fit(config)
    model, ds, result, tracker = trained.model, trained.data, trained.result, trained.tracker
    n = len(ds.x_train)
    full_batch = trained.batch_size is None
    record: dict[str, Any] = {
        "train_acc": result.train_acc, "test_acc": result.test_acc, "train_loss": result.train_loss,
        "test_loss": result.test_loss, "epochs": result.epochs, "steps": result.steps,
        "reached_target": result.reached_target, "capped": result.stop_reason == "max_epochs",
        "diverged": bool(result.diverged), "stop_reason": result.stop_reason, "full_batch": full_batch,
        "n_train": n, "n_test": len(ds.x_test), "two_over_lr": 2.0 / config.lr,
        "n_params": sum(p.numel() for p in model.parameters()), "train_seconds": time.perf_counter() - t0,
    }
    series: list[tuple[float, str, float]] = []
    if tracker is not None and "lambda_max" in tracker.measure:
        epochs = np.array([row["epoch"] for row in tracker.rows], dtype=float)
        lam = np.array([row["lambda_max"] for row in tracker.rows], dtype=float)
        series = [(e, "lambda_max", v) for e, v in zip(epochs, lam)]
        series += [(row["epoch"], "train_loss", row["train_loss"]) for row in tracker.rows
                   if row.get("train_loss") is not None]
        if ctx is not None and len(epochs):
            ctx.save_artifact("lambda_max_trajectory", {"epoch": epochs.tolist(), "lambda_max": lam.tolist()})
        eos = edge_of_stability(epochs, lam, config.lr) if len(epochs) else None
        record.update(eos_reached=bool(eos and eos.reached),
                      eos_first_step=eos.first_step if eos else math.nan,
                      eos_ratio_median=eos.ratio_median if eos else math.nan,
                      eos_ratio_q25=eos.ratio_q25 if eos else math.nan,
                      eos_ratio_q75=eos.ratio_q75 if eos else math.nan,
                      eos_ratio_max=eos.ratio_max if eos else math.nan,
                      # the highest λ_max·η/2 of the whole trajectory: ≥ 1 means it reached 2/η
                      eos_ratio_peak=float(lam.max() * config.lr / 2) if len(lam) else math.nan)
    if not result.diverged:
        measured = measure(config, trained)
        entries, artifacts = measured if isinstance(measured, tuple) else (measured, {})
        record.update(entries)
        if ctx is not None:
            for name, obj in artifacts.items():
                ctx.save_artifact(name, obj)
    record["wall_seconds"] = time.perf_counter() - t0
    return record, series
