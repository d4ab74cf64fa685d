"""The sharpness study's claims, declared from its :class:`~.design.Design` before any run.

Kaur, Cohen & Lipton (2023, arXiv 2206.10654), the five claims the paper makes about λ_max and
generalization, plus the edge of stability of Cohen et al. (2021, arXiv 2103.00065) that the GD runs
show. Each is a :class:`~hesslens.studies.claims.Claim` on a per-seed statistic (paired by seed) or a
composite of such claims (:mod:`hesslens.studies.verdicts`); the sentence of the paper is kept, and
where it says "can", "sometimes" or "at large batch sizes" the region is the design's, declared here.
"""

from __future__ import annotations

from typing import Any

from ..arms import interaction, paired_difference, rank_correlation, run_value, versus_best
from ..claims import Claim
from ..verdicts import AllOf, NotAll
from .design import Design

__all__ = ["correlations", "declare"]

SGD_MLP = {"arch": "mlp", "optimizer": "sgd", "dropout": 0.0, "track_every": 0}


def _b(bs: Any) -> str:
    return f"B = {bs}" if not isinstance(bs, (list, tuple)) else "B ∈ {" + ", ".join(map(str, bs)) + "}"


def declare(d: Design) -> list[Any]:
    """The claims of design ``d``, in the paper's order (names 1–5, then ``EoS``)."""
    lo, hi = d.lr_pair
    mlp = {**SGD_MLP, "until_train_acc": 0.99}
    large = list(d.large_batches)

    def lr_effect(metric: str, bs: Any) -> Any:
        return paired_difference(metric, {**mlp, "lr": hi, "batch_size": bs}, {**mlp, "lr": lo, "batch_size": bs},
                                 match=("batch_size",))

    c1a = AllOf("1a", f"Larger learning rates lower λ_max at every batch size (η = {hi:g} against η = {lo:g}).", tuple(
        Claim(f"1a {_b(bs)}", f"λ_max is lower with η = {hi:g} than with η = {lo:g} at {_b(bs)}.",
              "grid lr_bs", lr_effect("lambda_max", bs), "less") for bs in d.batches))
    c1b = AllOf("1b", "…yet their generalization benefit can vanish at large batch sizes.", (
        Claim("1b benefit", f"η = {hi:g} gives a higher test accuracy than η = {lo:g} at {_b(d.small_batch)}.",
              "grid lr_bs", lr_effect("test_acc", d.small_batch), "greater"),
        Claim("1b vanishes", f"At large batch sizes ({_b(large)}, averaged) the test-accuracy benefit of η = {hi:g} "
              f"is within ±{d.margin:g}.", "grid lr_bs", lr_effect("test_acc", large), "equivalent",
              margin=d.margin)))
    c1c = Claim("1c", f"The test-accuracy benefit of η = {hi:g} over η = {lo:g} is smaller at large batch sizes "
                f"({_b(large)}) than at {_b(d.small_batch)} (how the benefit moves, whether or not it vanishes).",
                "grid lr_bs", _interaction(mlp, hi, lo, d.small_batch, large), "greater")

    ends = (min(d.ratio_batches), max(d.ratio_batches))
    cell = lambda bs: {**mlp, "lr": d.ratio_lr(bs), "batch_size": bs}
    c2 = AllOf("2", f"Scaling batch size and learning rate together (η/B = {d.ratio:.3g}, {_b(ends[0])} to "
               f"{_b(ends[1])}) changes λ_max without changing generalization.", (
                   Claim("2 λ_max", f"λ_max is lower at {_b(ends[1])} than at {_b(ends[0])} (η/B fixed).", "grid ratio",
                         paired_difference("lambda_max", cell(ends[1]), cell(ends[0])), "less"),
                   Claim("2 test acc", f"Test accuracy at {_b(ends[1])} and {_b(ends[0])} is within ±{d.margin:g}.",
                         "grid ratio", paired_difference("test_acc", cell(ends[1]), cell(ends[0])), "equivalent",
                         margin=d.margin)))

    sam = {"arch": "mlp", "optimizer": "sam", "rho": d.sam_rho, "lr": d.sam_lr, "dropout": 0.0}
    sgd = {**mlp, "lr": d.sam_lr}

    def sam_effect(metric: str, bs: Any) -> Any:
        return paired_difference(metric, {**sam, "batch_size": bs}, {**sgd, "batch_size": bs}, match=("batch_size",))

    c3a = AllOf("3a", f"SAM (ρ = {d.sam_rho:g}) lowers λ_max at every batch size (η = {d.sam_lr:g}).", tuple(
        Claim(f"3a {_b(bs)}", f"λ_max is lower with SAM than with SGD at {_b(bs)}.", "grid sam",
              sam_effect("lambda_max", bs), "less") for bs in d.batches))
    c3b = AllOf("3b", "…and its generalization benefit also vanishes at large batch sizes.", (
        Claim("3b benefit", f"SAM gives a higher test accuracy than SGD at {_b(d.small_batch)}.", "grid sam",
              sam_effect("test_acc", d.small_batch), "greater"),
        Claim("3b vanishes", f"At large batch sizes ({_b(large)}, averaged) SAM's test-accuracy benefit is within "
              f"±{d.margin:g}.", "grid sam", sam_effect("test_acc", large), "equivalent", margin=d.margin)))

    drop = {"arch": "mlp", "optimizer": "sgd", "lr": d.dropout_lr, "batch_size": d.dropout_batch,
            "until_train_acc": d.dropout_target}
    high = {**drop, "dropout": d.dropout_high}
    c4 = AllOf("4", f"Very high dropout (p = {d.dropout_high:g}) lowers λ_max yet hurts generalization "
               f"(every rate trained to {d.dropout_target:.0%} training accuracy).", (
                   Claim("4 λ_max", f"λ_max is lower with p = {d.dropout_high:g} than with p = 0.", "grid dropout",
                         paired_difference("lambda_max", high, {**drop, "dropout": 0.0}), "less"),
                   Claim("4 test acc", f"Test accuracy with p = {d.dropout_high:g} is below that of the best moderate "
                         f"rate p ∈ {{{', '.join(f'{p:g}' for p in d.dropout_moderate)}}}.", "grid dropout",
                         versus_best("test_acc", high, [{**drop, "dropout": p} for p in d.dropout_moderate]),
                         "less")))

    vgg = {"arch": "vgg1d", "optimizer": "sgd"}
    cells = [(lr, bs) for lr in d.bn_lrs for bs in d.bn_batches]

    def bn_effect(metric: str, lr: Any, bs: Any) -> Any:
        return paired_difference(metric, {**vgg, "batchnorm": True, "lr": lr, "batch_size": bs},
                                 {**vgg, "batchnorm": False, "lr": lr, "batch_size": bs},
                                 match=("lr", "batch_size"))

    c5a = Claim("5a", "BatchNorm helps generalization (test accuracy with − without, averaged over the cells "
                + ", ".join(f"η = {lr:g} {_b(bs)}" for lr, bs in cells) + ").", "grid batchnorm",
                bn_effect("test_acc", list(d.bn_lrs), list(d.bn_batches)), "greater")
    c5b = NotAll("5b", "BatchNorm does not consistently lower λ_max (it does not lower it in every cell).", tuple(
        Claim(f"5b η = {lr:g} {_b(bs)}", f"BatchNorm lowers λ_max at η = {lr:g}, {_b(bs)}.", "grid batchnorm",
              bn_effect("lambda_max", lr, bs), "less") for lr, bs in cells))

    gd = {"arch": "mlp", "optimizer": "sgd", "batch_size": d.n_train, "track_every": d.track_every}
    eos_parts = []
    for lr in d.gd_lrs:
        eos_parts.append(Claim(f"EoS η = {lr:g} reaches", f"λ_max reaches 2/η = {2 / lr:g} during GD training.",
                               "grid eos", run_value("eos_ratio_peak", {**gd, "lr": lr}, minus=1.0), "greater"))
        eos_parts.append(Claim(f"EoS η = {lr:g} hovers", f"After λ_max first reaches 2/η = {2 / lr:g}, its median "
                               f"over the rest of GD training is within (1 ± {d.eos_margin:g})·2/η.", "grid eos",
                               run_value("eos_ratio_median", {**gd, "lr": lr}, minus=1.0), "equivalent",
                               margin=d.eos_margin))
    eos = AllOf("EoS", "Under full-batch GD, λ_max rises to 2/η and hovers there (Cohen et al. 2021).",
                tuple(eos_parts))
    return [c1a, c1b, c1c, c2, c3a, c3b, c4, c5a, c5b, eos]


def _interaction(mlp: dict, hi: float, lo: float, small: int, large: list) -> Any:
    return interaction("test_acc", {**mlp, "lr": hi, "batch_size": small}, {**mlp, "lr": lo, "batch_size": small},
                       {**mlp, "lr": hi, "batch_size": large}, {**mlp, "lr": lo, "batch_size": large},
                       match=("batch_size",))


def correlations(d: Design) -> dict[str, Any]:
    """Descriptive, not claims: Kendall τ_b(λ_max, test accuracy) per seed over the η of grid lr_bs at
    each batch size, and over every plain-SGD MLP run of the grids lr_bs and ratio."""
    mlp = {**SGD_MLP, "until_train_acc": 0.99}
    out = {_b(bs): rank_correlation("lambda_max", "test_acc", {**mlp, "lr": list(d.lrs), "batch_size": bs})
           for bs in d.batches}
    out["all SGD MLP runs to 99 %"] = rank_correlation("lambda_max", "test_acc", mlp)
    return out
