"""The HESD-type study's claims, declared from its :class:`~.design.Design` before any run.

Gabdullin (2025, arXiv 2504.17618) and (2024, arXiv 2412.10146), papers.md §1–2, as five claims, and one
of hesslens's own. The per-seed statistics read the runs of a declared region (:func:`~hesslens.studies.
arms.pooled_value`): "every run" is the minimum over the region's runs, "on average" the mean, and the
number of runs each seed must have there is declared too, so a claim never reads a partial region. The
type statistic is hesslens's balance C = (P − N)/(P + N) (:func:`hesslens.hesd_type`): MP ⇔ C > 0.
"""

from __future__ import annotations

from typing import Any

from ..arms import pooled_value
from ..claims import Claim
from ..verdicts import AllOf
from .design import Design

__all__ = ["declare", "manipulation"]

#: The manipulation fields at "off": a manipulation's filter pins all of them, so a filter for clipping
#: cannot also match a run with gradient noise.
OFF = {"clip_norm": 0.0, "clip_value": 0.0, "grad_noise": 0.0, "augment": ""}


def manipulation(d: Design, name: str) -> dict[str, Any]:
    """The column filter of manipulation ``name`` (its optimiser, η and manipulation fields)."""
    return {**OFF, **dict(d.manipulations)[name]}


def _nets_where(d: Design, names: tuple[str, ...]) -> dict[str, Any]:
    nets = [d.net(n) for n in names]
    out = {"dataset": sorted({n.dataset for n in nets}), "arch": sorted({n.arch for n in nets}),
           "activation": sorted({n.activation for n in nets})}
    product = {(a, b, c) for a in out["dataset"] for b in out["arch"] for c in out["activation"]}
    extra = [p for p in product if "/".join(p) not in names and "/".join(p) in {n.name for n in d.nets}]
    if extra:  # a product filter must not pick up a net outside the named ones
        raise ValueError(f"the filter for {names} would also select {extra}")
    return out


def declare(d: Design) -> list[Any]:
    """The claims of design ``d``: 1–5 in the papers' order, then ``R`` (hesslens's, about ReLU nets)."""
    n_nets = len(d.nets)
    ordinary = {"experiment": "ordinary", **OFF}
    c1 = AllOf("1", "Ordinary training and fine-tuning give MP spectra with every common optimiser, with and without "
               f"augmentation, on {len({n.dataset for n in d.nets})} datasets.", (
                   *(Claim(f"1 {opt}", f"{opt} (η = {lr:g}) gives an MP spectrum in every one of the {n_nets} nets "
                           "(the minimum of C over them is above 0).", "grid ordinary",
                           pooled_value("balance", {**ordinary, "optimizer": opt}, how="min", per_seed=n_nets),
                           "greater") for opt, lr in d.optimizers),
                   Claim("1 augmented", f"Training with augmentation ({', '.join(d.augmented_optimizers)}) gives MP in "
                         "every run.", "grid ordinary",
                         pooled_value("balance", {**ordinary, "augment": sorted({n.augment for n in d.nets})},
                                      how="min", per_seed=n_nets * len(d.augmented_optimizers)), "greater"),
                   Claim("1 fine-tuning", f"Fine-tuning a trained net onto a new task (labels permuted) with "
                         f"{', '.join(d.finetune_optimizers)} for {d.finetune_epochs} epochs gives MP in every run.",
                         "grid finetune", pooled_value("balance", {"experiment": "finetune"}, how="min",
                                                       per_seed=n_nets * len(d.finetune_optimizers)), "greater")))

    search = len(d.search)
    manipulated = {"experiment": "manipulated"}

    def manipulated_mn(name: str, start: str) -> Claim:
        where = {**manipulated, **manipulation(d, name), "finetune": start}
        how = "fine-tuning onto the new task" if start else "training from scratch"
        return Claim(f"2{'b' if start else 'a'} {name}", f"{how} with {name} gives MN spectra (C averaged over the "
                     f"{search} search nets is below 0).", "grid manipulated",
                     pooled_value("balance", where, per_seed=search), "less")

    c2a = AllOf("2a", "External gradient manipulation gives MN spectra: every manipulation, training from scratch.",
                tuple(manipulated_mn(m, "") for m in d.manipulation_names))
    c2b = AllOf("2b", f"…and fine-tuning a trained net onto a new task for {d.finetune_epochs} epochs.",
                tuple(manipulated_mn(m, "permute") for m in d.manipulation_names))
    region, nets = d.mn_region
    c2c = Claim("2c", f"Gradient manipulation can give MN: in the declared region ({region}, fine-tuning "
                f"{' and '.join(nets)}), C averaged over the region is below 0.", "grid manipulated",
                pooled_value("balance", {**manipulated, **manipulation(d, region), "finetune": "permute",
                                         **_nets_where(d, nets)}, per_seed=len(nets)), "less")

    collapse = {"experiment": "collapse"}
    c3 = AllOf("3", f"Quasi-singular spectra appear during training as the spectrum collapses: on long full-batch runs "
               f"memorising {d.collapse_n_train} examples, the scale falls below {d.qs_relative:g} × its peak.", tuple(
                   Claim(f"3 {opt}", f"With {opt} (η = {lr:g}, {d.collapse_epochs} epochs) the spectral scale falls "
                         f"below {d.qs_relative:g} × its peak (log10 of the ratio to that threshold, averaged over the "
                         f"{len(d.collapse_nets)} nets, is below 0).", "grid collapse",
                         pooled_value("qs_log_ratio", {**collapse, "optimizer": opt}, per_seed=len(d.collapse_nets)),
                         "less") for opt, lr in d.collapse_runs))

    shifted = {"experiment": "ordinary", "shifts": True}

    def tracks(crit: str, mp: bool) -> Claim:
        cells = "MP" if mp else "MN or QS"
        col = f"tau_{crit}_acc_{'mp' if mp else 'nonmp'}"
        where = {**shifted, "tau_mp_defined": True} if mp else {"shifts": True, "tau_nonmp_defined": True}
        sentence = (f"Over the shifts whose spectrum is {cells}, {crit} falls as accuracy rises (Kendall τ between "
                    f"{crit} and accuracy, averaged over the nets, is below 0)." if mp else
                    f"Over the shifts whose spectrum is {cells}, {crit} does not track accuracy (the averaged "
                    f"Kendall τ is within ±{d.tau_margin:g}).")
        return (Claim(f"{4 if mp else 5} {crit}", sentence, "grids ordinary (shifted nets)" if mp else
                      "every net assessed across shifts with ≥ 3 such cells", pooled_value(col, where),
                      "less" if mp else "equivalent", margin=None if mp else d.tau_margin))

    shift_text = ", ".join(f"{k} {v:g}" for k, v in d.shifts if k != "none")
    c4 = AllOf("4", f"On MP spectra, changes of re and Kh across dataset shifts ({shift_text}, and a different "
               "dataset where one is declared) track changes of accuracy.", (tracks("kh", True), tracks("re", True)))
    c5 = AllOf("5", "On MN and QS spectra they do not.", (tracks("kh", False), tracks("re", False)))

    relu = Claim("R", "hesslens: a ReLU network without BatchNorm never has an MN spectrum — it is piecewise linear in "
                 "each layer's parameters, so tr H = tr G ≥ 0 (G the Gauss–Newton matrix) — whatever the training "
                 "(the minimum of C over every ReLU run is above 0).", "every grid",
                 pooled_value("balance", {"activation": "relu"}, how="min"), "greater")
    return [c1, c2a, c2b, c2c, c3, c4, c5, relu]
