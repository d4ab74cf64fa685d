"""Training: ``train()`` (a deterministic loop for the studies), its optimisers (SAM/ASAM,
AdaHessian, the torch built-ins by name), gradient clipping, the callback seam, and the
:class:`Tracker` that records curvature along training."""

from .callbacks import Callback, StopTraining
from .loop import train
from .optimizers import OPTIMIZERS, SAM, AdaHessian, build_optimizer, clip_gradients, frozen_buffers, hutchinson_diagonal
from .results import TrainResult
from .tracker import Tracker, evenly_spaced

__all__ = [
    "OPTIMIZERS", "SAM", "AdaHessian", "Callback", "StopTraining", "TrainResult", "Tracker", "build_optimizer",
    "clip_gradients", "evenly_spaced", "frozen_buffers", "hutchinson_diagonal", "train",
]
