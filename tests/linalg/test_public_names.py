"""``hesslens.linalg``'s public names: imported on first use, and always the objects they name.

The package imports its modules lazily (PEP 562), so a single ``eigenvalues`` call does not define
the density, block and exact-spectrum results. The risk of laziness is a submodule shadowing a
function of the same name (``lanczos``, ``trace``) once it is imported; checked in a fresh process,
after every submodule has been imported in turn.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

FRESH = textwrap.dedent("""
    import importlib, pkgutil, sys, types
    import hesslens.linalg as L

    L.eigenvalues
    print("after eigenvalues:", sorted(m for m in ("hesslens.linalg.density", "hesslens.linalg.blocks",
                                                   "hesslens.linalg.exact") if m in sys.modules))
    for info in pkgutil.iter_modules(L.__path__):
        importlib.import_module(f"hesslens.linalg.{info.name}")
    import hesslens
    for name in L.__all__:
        value = getattr(L, name)
        assert not isinstance(value, types.ModuleType), (name, value)
        assert getattr(sys.modules[value.__module__], name) is value, name
        assert name not in hesslens.__all__ or getattr(hesslens, name) is value, name
    from hesslens.linalg import lanczos, trace
    print("functions:", callable(lanczos) and callable(trace) and not isinstance(trace, types.ModuleType))
""")


def test_linalg_names_are_lazy_and_never_shadowed_by_their_modules():
    out = subprocess.run([sys.executable, "-c", FRESH], capture_output=True, text=True, check=True).stdout
    assert "after eigenvalues: []" in out, out
    assert "functions: True" in out, out
