"""The sharpness study's design: every grid and every claim's cells, declared once, before the data.

A :class:`Design` names the values the claims compare (the learning-rate pair shared by every batch
size, the "large batch sizes" region, the batch range of η/B fixed, the dropout rates, the BatchNorm
cells, the GD learning rates) and the equivalence margin; :func:`grids` turns it into the study's
grids and :mod:`.claims` into its claims, so the runs and the claims cannot disagree. ``FULL`` is the
design of the ``full`` preset, ``SMOKE`` a miniature one on a 256-example subset that exercises the
same code and never carries a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["FULL", "GRIDS", "SMOKE", "Design", "grids", "preset"]

#: The grids, in the order the preset runs them (longest runs first, so a pool of workers ends evenly).
GRIDS = ("eos", "batchnorm", "dropout", "lr_bs", "sam", "ratio")


@dataclass(frozen=True)
class Design:
    """Values the grids train and the claims compare (see the module docstring)."""

    scale: str
    base: dict[str, Any] = field(default_factory=dict)  # fields shared by every run
    n_train: int = 3750  # training-set size: the batch size of full-batch GD
    # claim 1 (grid lr_bs): η × B, the pair (lr_small, lr_large) is compared at every B
    lrs: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4)
    batches: tuple[int, ...] = (32, 128, 512, 1024)
    lr_pair: tuple[float, float] = (0.05, 0.4)
    small_batch: int = 32
    large_batches: tuple[int, ...] = (512, 1024)  # the region "large batch sizes"
    sgd_cap: int = 3000
    # claim 2 (grid ratio): η = ratio · B over a batch range inside the linear-scaling regime
    ratio: float = 0.1 / 128
    ratio_batches: tuple[int, ...] = (16, 32, 64, 128)
    # claim 3 (grid sam): SAM with radius ρ against plain SGD at η = sam_lr, at every batch size
    sam_lr: float = 0.2
    sam_rho: float = 0.05
    # claim 4 (grid dropout): every rate trained to one common training-accuracy target
    dropout_lr: float = 0.1
    dropout_batch: int = 32
    dropout_high: float = 0.6
    dropout_moderate: tuple[float, ...] = (0.1, 0.2, 0.5)
    dropout_target: float = 0.9
    dropout_cap: int = 600
    # claim 5 (grid batchnorm): VGG-1D with and without BatchNorm in each (η, B) cell
    bn_lrs: tuple[float, ...] = (0.2, 0.4)
    bn_batches: tuple[int, ...] = (32, 128)
    bn_cap: int = 1500
    # the edge of stability (grid eos): full-batch GD, λ_max of the whole training loss tracked
    gd_lrs: tuple[float, ...] = (0.2, 0.4, 0.8)
    track_every: int = 10
    gd_cap: int = 4000
    # "no change" / "vanishes" in test accuracy: |difference| < margin (TOST); edge of stability:
    # the median of λ_max·η/2 after first reaching 2/η within 1 ± eos_margin
    margin: float = 0.02
    eos_margin: float = 0.25

    @property
    def dropouts(self) -> tuple[float, ...]:
        return (0.0, *self.dropout_moderate, self.dropout_high)

    def ratio_lr(self, batch: int) -> float:
        return round(self.ratio * batch, 10)


FULL = Design("full", base={"dataset": "mnist1d_n13750", "n_test": 10000})

SMOKE = Design(
    "smoke", base={"dataset": "mnist1d", "n_test": 0, "n_train": 256, "hidden": 32, "channels": 4, "smoke": True},
    n_train=256, lrs=(0.1, 0.4), batches=(32, 128), lr_pair=(0.1, 0.4), small_batch=32, large_batches=(128,),
    sgd_cap=250, ratio=0.4 / 128, ratio_batches=(64, 128), sam_lr=0.4, dropout_lr=0.4, dropout_batch=32,
    dropout_moderate=(0.1, 0.2), dropout_target=0.9, dropout_cap=150, bn_lrs=(0.4,), bn_batches=(64,), bn_cap=150,
    gd_lrs=(0.4, 0.8), track_every=20, gd_cap=400,
)


def grids(d: Design) -> dict[str, list[dict[str, Any]]]:
    """The design's grids, name → grid spec (:mod:`hesslens.studies.grids`), in :data:`GRIDS` order."""
    b = dict(d.base)
    mlp = {**b, "max_epochs": d.sgd_cap}  # every plain MLP cell shares its cap, so grids share the runs
    return {
        "eos": [{**b, "lr": list(d.gd_lrs), "batch_size": d.n_train, "track_every": d.track_every,
                 "max_epochs": d.gd_cap}],
        "batchnorm": [{**b, "arch": "vgg1d", "lr": list(d.bn_lrs), "batch_size": list(d.bn_batches), "batchnorm": bn,
                       "interpolate": bn, "max_epochs": d.bn_cap} for bn in (True, False)],
        "dropout": [{**b, "lr": d.dropout_lr, "batch_size": d.dropout_batch, "dropout": list(d.dropouts)[::-1],
                     "until_train_acc": d.dropout_target, "max_epochs": d.dropout_cap}],
        "lr_bs": [{**mlp, "lr": list(d.lrs), "batch_size": list(d.batches)}],
        "sam": [{**mlp, "optimizer": opt, "rho": rho, "lr": d.sam_lr, "batch_size": list(d.batches)}
                for opt, rho in (("sam", d.sam_rho), ("sgd", 0.0))],
        "ratio": [{**mlp, "lr": d.ratio_lr(bs), "batch_size": bs} for bs in d.ratio_batches],
    }


def preset(d: Design) -> list[dict[str, Any]]:
    """The union of the design's grids (a configuration in two grids is one run)."""
    return [spec for name in GRIDS for spec in grids(d)[name]]
