"""The HESD-type study's design: every grid and every claim's cells, declared once, before the data.

A :class:`Design` names the networks (dataset × architecture × activation), the "ordinary" optimisers
with their learning rates, the augmentations, the gradient manipulations searched for MN spectra, the
fine-tuning task and its duration, the long runs tracked for quasi-singularity and the dataset shifts
the criteria are assessed on. :func:`grids` turns it into the study's grids and :mod:`.claims` into its
claims, so the runs and the claims cannot disagree. ``FULL`` is the design of the ``full`` preset,
``SMOKE`` a miniature on 256 MNIST-1D signals that exercises the same code and carries no verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["FULL", "GRIDS", "SMOKE", "Design", "Net", "grids", "preset"]

#: The grids, in the order the preset runs them (long runs first, so a pool of workers ends evenly).
GRIDS = ("collapse", "duration", "ordinary", "finetune", "manipulated")


@dataclass(frozen=True)
class Net:
    """A network: dataset, architecture and activation (the fields of the configuration they set)."""

    dataset: str
    arch: str
    activation: str
    augment: str  # the augmentation this dataset's inputs take (grid "ordinary" trains with and without)
    epochs: int  # the training budget from scratch (every run trains a fixed number of epochs)

    @property
    def fields(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "arch": self.arch, "activation": self.activation}

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.arch}/{self.activation}"


def _nets(spec: tuple[tuple[str, str, str, str, int], ...]) -> tuple[Net, ...]:
    return tuple(Net(*row) for row in spec)


@dataclass(frozen=True)
class Design:
    """Values the grids train and the claims compare (see the module docstring)."""

    scale: str
    base: dict[str, Any] = field(default_factory=dict)  # fields shared by every run
    # Claim 1: ordinary training. Every net, every optimiser at its learning rate, for the net's budget of
    # epochs: a fixed budget rather than a training-accuracy target, so no run is capped and the optimisers
    # of one net train equally long (the training accuracy they reach is in every run's record).
    nets: tuple[Net, ...] = _nets((
        ("mnist1d", "mlp", "relu", "shift4", 80), ("mnist1d", "mlp", "tanh", "shift4", 80),
        ("mnist1d", "vgg1d", "relu", "shift4", 80),
        ("digits", "mlp", "relu", "noise0.3", 30), ("digits", "mlp", "tanh", "noise0.3", 30),
        ("digits_image", "vgg2d", "relu", "shift1", 40), ("digits_image", "vgg2d", "tanh", "shift1", 40),
        ("teacher_cls_d20_c5_noise0.0", "mlp", "relu", "noise0.1", 40),
        ("teacher_cls_d20_c5_noise0.0", "mlp", "tanh", "noise0.1", 40),
        ("breast_cancer", "mlp", "relu", "noise0.1", 30), ("breast_cancer", "mlp", "tanh", "noise0.1", 30),
    ))
    optimizers: tuple[tuple[str, float], ...] = (("sgd", 0.1), ("momentum", 0.01), ("adam", 1e-3), ("adamw", 1e-3),
                                                 ("rmsprop", 5e-4))
    augmented_optimizers: tuple[str, ...] = ("sgd", "adam")
    # Claim 2: gradient manipulations (name → configuration fields), from scratch on the search nets and as
    # fine-tuning of a net trained ordinarily onto a new task (labels permuted, y → y + 1 mod C).
    search: tuple[str, ...] = ("mnist1d/mlp/relu", "mnist1d/mlp/tanh", "digits/mlp/relu", "digits/mlp/tanh",
                               "digits_image/vgg2d/relu", "digits_image/vgg2d/tanh")
    manipulations: tuple[tuple[str, dict[str, Any]], ...] = (
        ("clip_norm 0.01", {"optimizer": "sgd", "lr": 0.1, "clip_norm": 0.01}),
        ("clip_norm 0.1", {"optimizer": "sgd", "lr": 0.1, "clip_norm": 0.1}),
        ("clip_norm 1", {"optimizer": "sgd", "lr": 0.1, "clip_norm": 1.0}),
        ("clip_value 0.001", {"optimizer": "sgd", "lr": 0.1, "clip_value": 1e-3}),
        ("adahessian", {"optimizer": "adahessian", "lr": 0.1}),
        ("sign-SGD", {"optimizer": "signsgd", "lr": 1e-3}),
        ("gradient noise 0.1", {"optimizer": "sgd", "lr": 0.1, "grad_noise": 0.1}),
        ("gradient noise 1", {"optimizer": "sgd", "lr": 0.1, "grad_noise": 1.0}),
    )
    finetune_epochs: int = 10
    finetune_optimizers: tuple[str, ...] = ("sgd", "adam")  # ordinary fine-tuning (claim 1) at the same duration
    # The region of the existential part of claim 2, chosen from a one-seed pilot before the design was
    # fixed (the page says so): tanh MLPs fine-tuned onto the new task under the strongest norm clipping.
    mn_region: tuple[str, tuple[str, ...]] = ("clip_norm 0.01", ("mnist1d/mlp/tanh", "digits/mlp/tanh"))
    # Descriptive (no claim): how C evolves during a longer fine-tuning onto the new task, tracked every
    # few epochs, for ordinary SGD and the norm clippings (the duration side of the MN search).
    duration_nets: tuple[str, ...] = ("mnist1d/mlp/tanh", "digits/mlp/tanh")
    duration_runs: tuple[str, ...] = ("clip_norm 0.01", "clip_norm 0.1", "clip_norm 1")
    duration_epochs: int = 40
    duration_every: int = 2
    # Claim 3: long full-batch runs memorising a small training set, the HESD tracked every few epochs.
    collapse_nets: tuple[str, ...] = ("mnist1d/mlp/relu", "mnist1d/mlp/tanh", "digits/mlp/relu", "digits/mlp/tanh")
    collapse_runs: tuple[tuple[str, float], ...] = (("adam", 0.01), ("sgd", 0.5))
    collapse_n_train: int = 256
    collapse_epochs: int = 3000
    collapse_every: int = 100
    # Claims 4–5: the nets trained ordinarily with these optimisers are assessed across the shifts (kind,
    # level) of hesslens.datasets.shift — the Hessian on the shifted training set, the accuracy on the
    # shifted test set — and, where one is named, on a different dataset of the same shape.
    shift_optimizers: tuple[str, ...] = ("sgd",)
    shifts: tuple[tuple[str, float], ...] = (("none", 0.0), ("noise", 0.5), ("noise", 1.0), ("noise", 2.0),
                                             ("corruption", 0.25), ("corruption", 0.5), ("label", 0.25),
                                             ("label", 0.5), ("label", 0.75), ("permute", 1.0))
    other_datasets: tuple[tuple[str, str], ...] = (("mnist1d", "mnist1d_shear1.5"),)
    # Decision constants: hesslens's type margin, the relative quasi-singularity threshold, and the
    # equivalence margin for "the criteria do not track accuracy" (a Kendall τ within ±tau_margin of 0).
    margin: float = 0.2
    qs_relative: float = 0.01
    tau_margin: float = 0.3

    def net(self, name: str) -> Net:
        for n in self.nets:
            if n.name == name:
                return n
        raise KeyError(name)

    def lr(self, optimizer: str) -> float:
        return dict(self.optimizers)[optimizer]

    @property
    def manipulation_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.manipulations)


FULL = Design("full", base={"n_test": 0, "hidden": 64, "channels": 8, "batch_size": 32, "loss_normalisation": "mean"})

SMOKE = Design(
    "smoke", base={"n_test": 0, "n_train": 256, "hidden": 16, "channels": 4, "batch_size": 64,
                   "loss_normalisation": "mean", "smoke": True},
    nets=_nets((("mnist1d", "mlp", "relu", "shift4", 8), ("mnist1d", "mlp", "tanh", "shift4", 8),
                ("mnist1d", "vgg1d", "tanh", "noise0.1", 4))),
    optimizers=(("sgd", 0.1), ("adam", 1e-3)), augmented_optimizers=("adam",),
    search=("mnist1d/mlp/tanh", "mnist1d/vgg1d/tanh"),
    manipulations=(("clip_norm 0.01", {"optimizer": "sgd", "lr": 0.1, "clip_norm": 0.01}),
                   ("sign-SGD", {"optimizer": "signsgd", "lr": 1e-3}),
                   ("gradient noise 1", {"optimizer": "sgd", "lr": 0.1, "grad_noise": 1.0})),
    finetune_epochs=3, finetune_optimizers=("sgd",), mn_region=("clip_norm 0.01", ("mnist1d/mlp/tanh",)),
    collapse_nets=("mnist1d/mlp/tanh",), collapse_runs=(("adam", 0.01),), collapse_n_train=64, collapse_epochs=60,
    collapse_every=20, duration_nets=("mnist1d/mlp/tanh",), duration_runs=("clip_norm 0.01",), duration_epochs=4,
    duration_every=2, shift_optimizers=("sgd",), shifts=(("none", 0.0), ("noise", 1.0), ("label", 0.5),
                                                          ("permute", 1.0)),
)


def _scratch(d: Design, net: Net) -> dict[str, Any]:
    return {**d.base, **net.fields, "epochs": net.epochs, "max_epochs": net.epochs}


def grids(d: Design) -> dict[str, list[dict[str, Any]]]:
    """The design's grids, name → grid spec (:mod:`hesslens.studies.grids`), in :data:`GRIDS` order."""
    ordinary = []
    for net in d.nets:
        for opt, lr in d.optimizers:
            shifts = opt in d.shift_optimizers
            ordinary.append({**_scratch(d, net), "optimizer": opt, "lr": lr, "shifts": shifts})
            if opt in d.augmented_optimizers:
                ordinary.append({**_scratch(d, net), "optimizer": opt, "lr": lr, "augment": net.augment})
    def tune(net: Net) -> dict[str, Any]:
        return {"finetune": "permute", "pretrain_epochs": net.epochs, "epochs": d.finetune_epochs,
                "max_epochs": d.finetune_epochs}

    finetune = [{**_scratch(d, net), **tune(net), "optimizer": opt, "lr": d.lr(opt)}
                for net in d.nets for opt in d.finetune_optimizers]
    manipulated = [{**_scratch(d, d.net(name)), **fields, **start}
                   for name in d.search for _, fields in d.manipulations for start in ({}, tune(d.net(name)))]
    collapse = [{**d.base, **d.net(name).fields, "optimizer": opt, "lr": lr, "n_train": d.collapse_n_train,
                 "batch_size": d.collapse_n_train, "epochs": d.collapse_epochs, "max_epochs": d.collapse_epochs,
                 "track_every": d.collapse_every, "shifts": True}
                for name in d.collapse_nets for opt, lr in d.collapse_runs]
    duration = [{**_scratch(d, d.net(name)), **tune(d.net(name)), **fields, "epochs": d.duration_epochs,
                 "max_epochs": d.duration_epochs, "track_every": d.duration_every}
                for name in d.duration_nets
                for fields in [{"optimizer": "sgd", "lr": d.lr("sgd")}] + [dict(d.manipulations)[m] for m in d.duration_runs]]
    return {"collapse": collapse, "duration": duration, "ordinary": ordinary, "finetune": finetune,
            "manipulated": manipulated}


def preset(d: Design) -> list[dict[str, Any]]:
    """The union of the design's grids."""
    return [spec for name in GRIDS for spec in grids(d)[name]]
