"""Pure algorithms over any symmetric operator (hesslens operator, dense tensor, SciPy LinearOperator).

The public names are imported from their modules on first use (PEP 562, :mod:`hesslens.lazy`): a
single ``eigenvalues`` call in a fresh process does not pay for defining the trace, density and block
results it never builds. :mod:`.lanczos` and :mod:`.trace` are imported here, eagerly, so that
``hesslens.linalg.lanczos`` and ``hesslens.linalg.trace`` are the functions, as they always were:
a submodule imported later would bind the package attribute of its name to the module instead.
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING

from .. import lazy as _lazy
from .lanczos import Tridiagonals, lanczos
from .trace import TraceResult, trace

_LAZY: dict[str, str] = {"BlockResults": ".blocks", "SpectralDensity": ".density", "spectral_density": ".density",
                         "EigenResult": ".eigen", "eigenvalues": ".eigen", "exact_spectrum": ".exact"}

__all__ = ["BlockResults", "EigenResult", "SpectralDensity", "TraceResult", "Tridiagonals", "eigenvalues",
           "exact_spectrum", "lanczos", "spectral_density", "trace"]

__getattr__, __dir__ = _lazy.attach(__name__, _LAZY, __all__)

if _TYPE_CHECKING:  # what static checkers and IDEs see: the same names, imported eagerly
    from .blocks import BlockResults
    from .density import SpectralDensity, spectral_density
    from .eigen import EigenResult, eigenvalues
    from .exact import exact_spectrum
