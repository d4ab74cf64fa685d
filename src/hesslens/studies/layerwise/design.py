"""The layer-wise study's design: datasets, capacity regimes and the feature sets, declared before the data.

Bolshim & Kugaevskikh (2025, arXiv 2510.17486; papers.md §3) study the local Hessians of 111 runs: 37
datasets, classification (cross-entropy) and regression (MSE), each in three capacity regimes, several
activation functions. Their dataset list, architectures and thresholds were not available to us; this
design has the same shape on hesslens's offline datasets. Every run is a two-hidden-layer MLP (three
blocks: input, hidden, output) trained with Adam for a fixed number of epochs, its local Hessians measured
at ``checkpoints + 1`` evenly spaced checkpoints (:func:`hesslens.layerwise`).

Regimes (the label a classifier must recover, claim 1):

* ``under`` — width 2: too narrow to fit most of these tasks;
* ``balanced`` — width 32 on up to 1,000 training examples, trained moderately;
* ``over`` — width 256 on at most 200 training examples, trained long enough to memorise them (overfit).

The activation cycles over ReLU, tanh and GELU along the dataset list, so every regime sees all three.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["CHEAP", "FULL", "POSITIONS", "REGIMES", "SMOKE", "SPECTRAL", "Design", "grids", "preset"]

#: The capacity regimes: width, training-set cap, epochs and Adam's learning rate.
REGIMES: dict[str, dict[str, Any]] = {
    "under": {"hidden": 2, "n_train": 1000, "epochs": 60, "lr": 3e-3},
    "balanced": {"hidden": 32, "n_train": 1000, "epochs": 60, "lr": 1e-3},
    "over": {"hidden": 256, "n_train": 200, "epochs": 400, "lr": 1e-3},
}
#: The MLP's blocks (its Linear layers, in order) and the per-block spectral features of the final checkpoint
#: (the record has ``<feature>_<position>``), as :func:`hesslens.analysis.layer_features.block_features`
#: computes them — written out (a test keeps them equal) so that declaring the study imports no torch.
POSITIONS = ("in", "hidden", "out")
FEATURES_PER_BLOCK = ("log_lambda_max", "log_trace_per_param", "neg_mass", "effective_rank_fraction",
                      "spectral_entropy", "log_condition")
SPECTRAL = tuple(f"{f}_{p}" for p in POSITIONS for f in FEATURES_PER_BLOCK)
#: The cheap baseline: training loss and score, parameters per training sample, weight norms per block.
CHEAP = ("log_train_loss", "train_score", "log_params_per_sample", *(f"log_weight_norm_{p}" for p in POSITIONS))
#: What "generalization" is in claim 3: the train − test score gap (accuracy or R²) and the test score.
GENERALIZATION = ("score_gap", "test_score")

_DATASETS = (
    "anes96", "blobs_d10_c5_sd2.0", "blobs_d50_c10_sd4.0", "breast_cancer", "circles_sd0.1", "circles_sd0.2",
    "diabetes", "digits", "engel", "fair", "friedman1_noise0.1", "friedman2_noise0.1", "friedman3_noise0.1",
    "grunfeld", "iris", "mnist1d", "modechoice", "moons_sd0.2", "moons_sd0.3", "randhie", "star98",
    "synth_cls_d100_c2_noise0.2", "synth_cls_d10_c2_noise0.1", "synth_cls_d20_c4_noise0.0",
    "synth_cls_d20_c4_noise0.1", "synth_cls_d20_c4_noise0.3", "synth_cls_d50_c10_noise0.1", "synth_reg_d100_noise0.1",
    "synth_reg_d10_noise0.1", "synth_reg_d50_noise0.1", "synth_reg_d50_noise0.5", "teacher_cls_d10_c2_noise0.2",
    "teacher_cls_d20_c5_noise0.0", "teacher_cls_d20_c5_noise0.2", "teacher_cls_d50_c10_noise0.1",
    "teacher_reg_d10_noise0.1", "teacher_reg_d50_noise0.5", "wine",
)


@dataclass(frozen=True)
class Design:
    """What the grid trains and the claims read (see the module docstring)."""

    scale: str
    datasets: tuple[str, ...] = tuple(d for d in _DATASETS if d != "fair")  # 37: fair's 6,366 rows add nothing new
    activations: tuple[str, ...] = ("relu", "tanh", "gelu")
    regimes: dict[str, dict[str, Any]] = field(default_factory=lambda: dict(REGIMES))
    checkpoints: int = 4
    base: dict[str, Any] = field(default_factory=dict)
    # claim 1: cross-validation folds (grouped by dataset, so a dataset's three runs are never split) and the
    # permutations of the null distribution of claim 3's canonical correlation
    folds: int = 5
    permutations: int = 199

    def activation(self, dataset: str) -> str:
        return self.activations[self.datasets.index(dataset) % len(self.activations)]


FULL = Design("full", base={"n_test": 0, "batch_size": 32, "optimizer": "adam", "loss_normalisation": "mean"})

SMOKE = Design(
    "smoke", datasets=("iris", "diabetes", "moons_sd0.2", "wine"),
    regimes={"under": {"hidden": 2, "n_train": 100, "epochs": 4, "lr": 3e-3},
             "balanced": {"hidden": 8, "n_train": 100, "epochs": 4, "lr": 1e-3},
             "over": {"hidden": 32, "n_train": 40, "epochs": 8, "lr": 1e-3}},
    checkpoints=2, folds=2, permutations=19,
    base={"n_test": 0, "batch_size": 32, "optimizer": "adam", "loss_normalisation": "mean", "smoke": True},
)


def grids(d: Design) -> dict[str, list[dict[str, Any]]]:
    """One grid: every dataset × regime, the activation cycling along the datasets."""
    runs = [{**d.base, "dataset": ds, "activation": d.activation(ds), "regime": name, **{k: v for k, v in r.items()},
             "max_epochs": r["epochs"], "track_every": r["epochs"] // d.checkpoints}
            for ds in d.datasets for name, r in d.regimes.items()]
    return {"regimes": runs}


def preset(d: Design) -> list[dict[str, Any]]:
    return grids(d)["regimes"]
