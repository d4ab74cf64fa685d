"""hesslens: curvature of neural-network loss landscapes, exact on small models and fast on large ones.

The public names below are imported on first use (PEP 562), so ``import hesslens`` itself is
cheap: torch, pandas and the rest load when ``hesslens.eigenvalues``, ``hesslens.train``, … are
first touched (or a submodule such as ``hesslens.studies`` is imported). This keeps commands that
need none of them — ``hesslens study NAME --status``, ``hesslens --version`` — fast.
"""

import logging as _logging
from typing import TYPE_CHECKING as _TYPE_CHECKING

from . import lazy as _lazy
from .errors import DistributedMismatchError, EngineRefusedError, HesslensError, InvalidInputError, MemoryBudgetError, NonDeterministicLossError

__version__ = "0.1.0"

# Library convention: hesslens logs through the "hesslens" logger and leaves handlers to the application.
if not any(isinstance(h, _logging.NullHandler) for h in _logging.getLogger(__name__).handlers):
    _logging.getLogger(__name__).addHandler(_logging.NullHandler())

#: Public name → the module (relative to this package) that defines it.
_LAZY: dict[str, str] = {
    **dict.fromkeys(("EigenResult", "SpectralDensity", "TraceResult", "eigenvalues", "exact_spectrum",
                     "spectral_density", "trace"), ".linalg"),
    **dict.fromkeys(("HessianOperator", "as_operator", "preserved_state"), ".operators"),
    **dict.fromkeys(("TrainResult", "Tracker", "train"), ".training"),
    **dict.fromkeys(("SharpnessResult", "sharpness", "hesd_criteria", "hesd_type", "assess", "compare",
                     "Assessment", "Layerwise", "layerwise"), ".analysis"),
    "plot_hesd": ".report.hesd_figure",
    **dict.fromkeys(("plot_layerwise", "layerwise_heatmap"), ".report.layerwise_figures"),
    "BlockResults": ".linalg", "BlockView": ".operators", "blocks": ".operators.blocks",
    "shard": ".operators.distributed",
}

__all__ = [
    "DistributedMismatchError", "EigenResult", "EngineRefusedError", "HesslensError", "HessianOperator", "InvalidInputError", "MemoryBudgetError",
    "NonDeterministicLossError", "SpectralDensity", "TraceResult", "as_operator", "eigenvalues",
    "exact_spectrum", "preserved_state", "spectral_density", "trace", "__version__",
    "datasets", "TrainResult", "Tracker", "train", "SharpnessResult", "sharpness", "hesd_criteria", "hesd_type",
    "assess", "compare", "Assessment", "plot_hesd", "BlockResults", "BlockView", "blocks",
    "Layerwise", "layerwise", "plot_layerwise", "layerwise_heatmap", "shard",
]


__getattr__, __dir__ = _lazy.attach(__name__, _LAZY, __all__)


if _TYPE_CHECKING:  # what static checkers and IDEs see: the same names, imported eagerly
    from . import datasets
    from .analysis import (Assessment, Layerwise, SharpnessResult, assess, compare, hesd_criteria, hesd_type,
                           layerwise, sharpness)
    from .linalg import (BlockResults, EigenResult, SpectralDensity, TraceResult, eigenvalues, exact_spectrum,
                         spectral_density, trace)
    from .operators import BlockView, HessianOperator, as_operator, preserved_state
    from .operators.blocks import blocks
    from .operators.distributed import shard
    from .report.hesd_figure import plot_hesd
    from .report.layerwise_figures import layerwise_heatmap, plot_layerwise
    from .training import TrainResult, Tracker, train
