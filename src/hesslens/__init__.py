"""hesslens: curvature of neural-network loss landscapes, exact on small models and fast on large ones."""

from .errors import EngineRefusedError, HesslensError, InvalidInputError, MemoryBudgetError, NonDeterministicLossError
from .linalg import EigenResult, SpectralDensity, TraceResult, eigenvalues, exact_spectrum, spectral_density, trace
from .operators import HessianOperator, as_operator, preserved_state
from . import datasets
from .training import TrainResult, Tracker, train
from .analysis import SharpnessResult, sharpness

__version__ = "0.1.0"

__all__ = [
    "EigenResult", "EngineRefusedError", "HesslensError", "HessianOperator", "InvalidInputError", "MemoryBudgetError",
    "NonDeterministicLossError", "SpectralDensity", "TraceResult", "as_operator", "eigenvalues",
    "exact_spectrum", "preserved_state", "spectral_density", "trace", "__version__",
    "datasets", "TrainResult", "Tracker", "train", "SharpnessResult", "sharpness",
]
