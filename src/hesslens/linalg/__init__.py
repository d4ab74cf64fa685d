"""Pure algorithms over any symmetric operator (hesslens operator, dense tensor, SciPy LinearOperator)."""

from .blocks import BlockResults
from .density import SpectralDensity, spectral_density
from .eigen import EigenResult, eigenvalues
from .exact import exact_spectrum
from .lanczos import Tridiagonals, lanczos
from .trace import TraceResult, trace

__all__ = ["BlockResults", "EigenResult", "SpectralDensity", "TraceResult", "Tridiagonals", "eigenvalues",
           "exact_spectrum", "lanczos", "spectral_density", "trace"]
