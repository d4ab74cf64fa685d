"""The ``sharpness`` study: does λ_max explain generalization? Kaur, Cohen & Lipton (2023) at CPU scale.

Kaur, Cohen & Lipton, "On the maximum Hessian eigenvalue and generalization" (arXiv 2206.10654),
train networks with plain SGD to 99 % training accuracy and measure λ_max with a fixed protocol
(:func:`hesslens.analysis.sharpness`). This study tests the *kind* of each of their claims on MNIST-1D
(3,750 training and 10,000 test signals) with replicate seeds:

1. larger learning rates lower λ_max at every batch size, yet their generalization benefit can vanish
   at large batch sizes (grid ``lr_bs``);
2. scaling batch size and learning rate together changes λ_max without changing generalization
   (grid ``ratio``, inside the linear-scaling regime);
3. SAM lowers λ_max at every batch size, and its benefit also vanishes at large batch sizes (``sam``);
4. very high dropout lowers λ_max yet hurts generalization (``dropout``, against the best moderate p);
5. BatchNorm does not consistently lower λ_max but helps generalization (``batchnorm``, VGG-1D);

and the edge of stability under full-batch GD (grid ``eos``, Cohen et al. 2021, arXiv 2103.00065),
judged on the tracked λ_max trajectory. The study is a declaration: the configuration adds two
measurement fields to :class:`~hesslens.studies.trained.TrainedNetConfig`, the run is the shared
train-then-measure skeleton with λ_max as the measurement, the grids and claims come from one
:class:`~.design.Design` (:mod:`.design`, :mod:`.claims`), and :mod:`.report` draws and decides.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from ... import lazy
from ..declaration import Study, membership, param, run_key
from ..registry import register
from ..trained import Trained, TrainedNetConfig, train_then_measure
from .design import FULL, SMOKE, Design, grids, preset

__all__ = ["FIGURES", "FULL", "SMOKE", "STUDY", "Design", "SharpnessAnalysis", "SharpnessConfig", "analyze",
           "correlations", "declare", "grids", "report_sharpness", "run_sharpness"]


@dataclass(frozen=True)
class SharpnessConfig(TrainedNetConfig):
    """One network trained to its target, then λ_max measured by the paper's protocol."""

    interpolate: bool = param(False, doc="λ_max as the max over 8 points towards one more SGD step (BatchNorm nets)")
    tol: float = param(1e-4, gt=0, doc="Lanczos relative residual tolerance of the final λ_max")


def measure_sharpness(config: SharpnessConfig, t: Trained) -> dict[str, Any]:
    """λ_max by protocol ``kaur2023`` (and, for full-batch GD, of the whole training loss too)."""
    from torch.nn import functional as F

    from ...analysis import sharpness

    data = (t.data.x_train, t.data.y_train)
    s = sharpness(t.model, F.cross_entropy, data, "kaur2023", batch_size=t.batch_size, interpolate=config.interpolate,
                  lr=config.lr, tol=config.tol, engine="streaming+vmap")
    record = {"lambda_max": s.lambda_max, "lambda_max_endpoint": s.endpoint, "lambda_residual": s.residual,
              "lambda_2": s.values[1] if len(s.values) > 1 else float("nan"), "lanczos_matvecs": s.matvecs,
              "sharpness_seconds": s.seconds, "sharpness_mode": s.settings["mode"],
              "physical_batch": s.settings["physical_batch"]}
    if t.batch_size is None:  # GD: the stability threshold 2/η concerns the whole training loss
        record["lambda_max_full_data"] = sharpness(t.model, F.cross_entropy, data, "full", tol=config.tol,
                                                   engine="streaming+vmap").lambda_max
    return record


def report_sharpness(df: Any, out: Any, series: Any = None) -> Any:
    """The report hook (:func:`.report.report_sharpness`), imported when a report is drawn: declaring
    the study (``--status``) loads neither pandas nor matplotlib."""
    from .report import report_sharpness as hook

    return hook(df, out, series)


# The claims and the analysis load on first use (see report_sharpness).
__getattr__, __dir__ = lazy.attach(__name__, {"declare": ".claims", "correlations": ".claims", "analyze": ".report",
                                              "FIGURES": ".report", "SharpnessAnalysis": ".report"}, __all__)


@functools.lru_cache(maxsize=2)
def _membership(scale: str) -> dict[str, tuple[str, ...]]:
    """Run key → the grids of the design that hold it (a configuration can serve several claims)."""
    return membership(grids(FULL if scale == "full" else SMOKE), SharpnessConfig)


def run_sharpness(config: SharpnessConfig, ctx: Any = None) -> tuple[dict, list]:
    """Train, then measure λ_max; the record's ``experiment`` names the design's grids holding the run."""
    record, series = train_then_measure(config, measure_sharpness, ctx)
    record["experiment"] = "+".join(_membership("smoke" if config.smoke else "full").get(run_key(config), ("custom",)))
    return record, series


STUDY = register(Study(
    name="sharpness",
    config=SharpnessConfig,
    run=run_sharpness,
    presets={"smoke": preset(SMOKE), "full": preset(FULL)},
    seeds={"smoke": 1, "full": 6},
    report=report_sharpness,
    description="Sharpness and generalization (Kaur, Cohen & Lipton 2023, arXiv 2206.10654) at CPU scale on "
                "MNIST-1D (3,750 training, 10,000 test signals): plain SGD / SAM to a training-accuracy target over "
                "grids of learning rate × batch size, η/B fixed, SAM, dropout and BatchNorm, and full-batch GD with "
                "λ_max tracked (edge of stability); λ_max by the paper's protocol (hesslens.analysis.sharpness). "
                "Claims are declared in code before the data (hesslens.studies.sharpness.claims) and decided over "
                "replicate seeds by 95 % intervals, with a robustness check on two disjoint seed subsets.",
))
