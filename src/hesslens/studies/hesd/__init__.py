"""The ``hesd-type`` study: which training gives which type of Hessian spectrum, and when do re and Kh work?

Gabdullin (2025, arXiv 2504.17618) reports that the Hessian eigenvalue spectral density (HESD) of a
normally trained or fine-tuned network is mainly positive (MP) with any common optimiser, dataset or
augmentation; that it is mainly negative (MN) after external gradient manipulation (clipping,
AdaHessian); that quasi-singular (QS) spectra appear during training; and that the criteria re and Kh
(Gabdullin 2024, arXiv 2412.10146) track accuracy across datasets on MP spectra but not on the others.
This study tests each claim at CPU scale with replicate seeds, the type decided by hesslens's criterion
(:func:`hesslens.hesd_type`: the spectral-mass balance C and a scale test), on MLPs (ReLU and tanh) and
small CNNs over MNIST-1D, digits, a teacher–student task and breast cancer.

It is a declaration on the shared machinery: the configuration adds the training manipulations and the
measurement settings to :class:`~hesslens.studies.trained.TrainedNetConfig`; the run is the shared
train-then-measure skeleton (:mod:`hesslens.studies.trained`) with :mod:`.measure` as the measurement;
:mod:`.design` declares the grids and :mod:`.claims` the claims; :mod:`.report` decides and draws.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, Literal

from ... import lazy
from ...errors import InvalidInputError
from ..declaration import Study, membership, param, run_key
from ..registry import register
from ..trained import Trained, VariantNetConfig, fit, train_then_measure
from .design import FULL, SMOKE, Design, grids, preset

__all__ = ["FULL", "SMOKE", "STUDY", "Design", "HesdConfig", "analyze", "declare", "grids", "report_hesd", "run_hesd"]

@dataclass(frozen=True)
class HesdConfig(VariantNetConfig):
    """One network trained (from scratch, or fine-tuned onto a new task), then its HESD measured."""

    finetune: Literal["", "permute"] = param(
        "", doc="'' trains from scratch; 'permute' first trains with plain SGD (η = 0.1) for pretrain_epochs, then "
                "trains per this configuration on the permuted-label task y → y + 1 mod C")
    pretrain_epochs: int = param(0, ge=0, doc="epochs of the plain-SGD pre-training of a fine-tuning run")
    shifts: bool = param(False, doc="also assess the trained network across the design's dataset shifts")
    analysis_n: int = param(1000, ge=2, doc="size of the analysis set (evenly spaced training examples)")
    steps: int = param(80, ge=2, doc="SLQ Lanczos steps")
    probes: int = param(5, ge=2, doc="SLQ probe runs")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.finetune and not (self.epochs and self.pretrain_epochs):
            raise InvalidInputError("epochs: fine-tuning runs for a fixed number of epochs after a fixed pre-training; "
                                    "give epochs > 0 and pretrain_epochs > 0")
        if self.pretrain_epochs and not self.finetune:
            raise InvalidInputError("pretrain_epochs: only a fine-tuning run (finetune='permute') is pre-trained")

    def tracker_options(self) -> dict[str, Any]:
        return {"measure": ("hesd",), "slq_steps": 40, "slq_probes": 3, "mode": "eval", "hesd_reference": None}

    def start(self, model: Any, data: Any) -> tuple[Any, Any]:
        if not self.finetune:
            return model, data
        from ... import datasets

        model.load_state_dict(_pretrained(self.pretraining()))
        return model, datasets.shift(data, "permute", 1.0, seed=self.seed)

    def pretraining(self) -> "HesdConfig":
        """The ordinary run a fine-tuning run starts from: plain SGD (η = 0.1) from scratch for ``pretrain_epochs``."""
        return dataclasses.replace(self, optimizer="sgd", lr=0.1, rho=0.0, augment="", clip_norm=0.0, clip_value=0.0,
                                   grad_noise=0.0, finetune="", pretrain_epochs=0, epochs=self.pretrain_epochs,
                                   max_epochs=self.pretrain_epochs, shifts=False, track_every=0)


@functools.lru_cache(maxsize=32)
def _pretrained(config: HesdConfig) -> dict:
    """The trained state of ``config`` (once per process: every fine-tuning run of a net and seed starts
    from the same pre-trained network, deterministically the same in every process)."""
    return {k: v.detach().clone() for k, v in fit(config).model.state_dict().items()}


def _design(config: HesdConfig) -> Design:
    return SMOKE if config.smoke else FULL


def measure_hesd(config: HesdConfig, t: Trained) -> tuple[dict[str, Any], dict[str, Any]]:
    """The HESD of the trained network (and across the shifts, and along the tracked run)."""
    from . import measure

    d = _design(config)
    settings = dict(n=config.analysis_n, steps=config.steps, probes=config.probes, seed=config.seed, margin=d.margin,
                    qs_relative=d.qs_relative)
    record: dict[str, Any] = {}
    artifacts: dict[str, Any] = {}
    reference = None
    if t.tracker is not None:
        entries, trajectory = measure.collapse(t.tracker, d.qs_relative)
        record.update(entries)
        artifacts["trajectory"] = trajectory
        reference = entries["peak_scale"]
    entries, density = measure.spectrum(t.model, t.data, reference=reference, **settings)
    record.update(entries)
    artifacts["density"] = {"nodes": density.nodes.tolist(), "weights": density.weights.tolist()}
    if config.shifts:
        entries, table = measure.shifted(t.model, t.data, d.shifts, dict(d.other_datasets).get(config.dataset),
                                         reference=reference, **settings)
        record.update(entries)
        artifacts["shifts"] = table
    return record, artifacts


@functools.lru_cache(maxsize=2)
def _membership(scale: str) -> dict[str, tuple[str, ...]]:
    """Run key → the grids of the design that hold it (a configuration can serve several claims)."""
    return membership(grids(FULL if scale == "full" else SMOKE), HesdConfig)


def run_hesd(config: HesdConfig, ctx: Any = None) -> tuple[dict, list]:
    """Train, then measure the HESD; the record's ``experiment`` names the design's grids holding the run."""
    record, series = train_then_measure(config, measure_hesd, ctx)
    record["experiment"] = "+".join(_membership("smoke" if config.smoke else "full").get(run_key(config), ("custom",)))
    return record, series


def report_hesd(df: Any, out: Any, series: Any = None, artifacts: Any = None) -> Any:
    """The report hook (:func:`.report.report_hesd`), imported when a report is drawn."""
    from .report import report_hesd as hook

    return hook(df, out, series, artifacts)


__getattr__, __dir__ = lazy.attach(__name__, {"declare": ".claims", "analyze": ".report"}, __all__)


STUDY = register(Study(
    name="hesd-type",
    config=HesdConfig,
    run=run_hesd,
    presets={"smoke": preset(SMOKE), "full": preset(FULL)},
    seeds={"smoke": 1, "full": 5},
    report=report_hesd,
    description="HESD type and the criteria re and Kh (Gabdullin 2024, arXiv 2412.10146; Gabdullin 2025, arXiv "
                "2504.17618) at CPU scale: MLPs (ReLU, tanh) and small CNNs on MNIST-1D, digits, a teacher–student "
                "task and breast cancer, trained with five common optimisers (with and without augmentation), "
                "fine-tuned onto a permuted-label task, trained and fine-tuned under eight gradient manipulations "
                "(norm and value clipping, AdaHessian, sign-SGD, gradient noise), and memorising small training sets "
                "for thousands of full-batch epochs with the spectrum tracked; the type by hesslens's criterion "
                "(spectral-mass balance C and a scale test), the criteria across declared dataset shifts. Claims are "
                "declared in code before the data (hesslens.studies.hesd.claims) and decided over replicate seeds "
                "by 95 % intervals, with a robustness check on two disjoint seed subsets.",
))
