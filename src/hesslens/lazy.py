"""Lazy public names for a package (PEP 562): ``import hesslens`` stays cheap.

:func:`attach` returns the module-level ``__getattr__`` and ``__dir__`` of a package whose public names
are imported from their submodules on first access (then cached in the package's namespace, so later
accesses are plain lookups); any other attribute that names a submodule imports it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterable, Mapping


def attach(package: str, names: Mapping[str, str], public: Iterable[str]) -> tuple[Callable, Callable]:
    """``(__getattr__, __dir__)`` for ``package``: ``names`` maps a public name to its relative module."""
    public = list(public)

    def __getattr__(name: str) -> object:
        module = names.get(name)
        if module is not None:
            value = getattr(importlib.import_module(module, package), name)
        elif name.isidentifier() and not name.startswith("__") \
                and importlib.util.find_spec(f"{package}.{name}") is not None:
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        vars(sys.modules[package])[name] = value
        return value

    def __dir__() -> list[str]:
        found = vars(sys.modules[package])
        return sorted({n for n in found if n.startswith("__") or not n.startswith("_")} | set(public))

    return __getattr__, __dir__
