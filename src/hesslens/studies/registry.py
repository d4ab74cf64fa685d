"""Studies by name: what ``hesslens study NAME`` looks up.

Built-in studies live in modules listed in :data:`BUILTIN_MODULES`, imported on first lookup (so
importing :mod:`hesslens.studies` stays cheap); each calls :func:`register` at import time. A name of
the form ``module:attribute`` (or ``path/to/file.py:attribute``) loads a :class:`Study` object the
user declared in their own code (with :func:`hesslens.loading.load_object`, the loader of
``hesslens analyze --model`` too), without registering it anywhere: ``examples/demo_study.py`` in the
repository is such a study.
"""

from __future__ import annotations

import importlib

from ..errors import InvalidInputError
from ..loading import load_object
from .declaration import Study

#: Modules whose import registers the built-in studies.
BUILTIN_MODULES = ("hesslens.studies.sharpness", "hesslens.studies.hesd", "hesslens.studies.layerwise")

_REGISTRY: dict[str, Study] = {}
_loaded = False


def register(study: Study, *, replace: bool = False) -> Study:
    """Add ``study`` under ``study.name``; returns it (so ``STUDY = register(Study(...))`` reads well)."""
    if not isinstance(study, Study):
        raise InvalidInputError(f"register() takes a hesslens.studies.Study, got {type(study).__name__}")
    existing = _REGISTRY.get(study.name)
    if existing is not None and existing is not study and not replace:
        same_origin = (getattr(existing.run, "__module__", None), getattr(existing.run, "__qualname__", None)) == \
                      (getattr(study.run, "__module__", None), getattr(study.run, "__qualname__", None))
        if not same_origin:  # a module imported twice under two names re-registers the same study: allowed
            raise InvalidInputError(f"a study named {study.name!r} is already registered "
                                    f"(by {existing.run.__module__}); pass replace=True to override it")
    _REGISTRY[study.name] = study
    return study


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in BUILTIN_MODULES:
            importlib.import_module(module)


def names() -> list[str]:
    """Names of the registered studies, sorted."""
    _load_builtins()
    return sorted(_REGISTRY)


def get(name: str | Study) -> Study:
    """The study registered as ``name``, or loaded from ``module:attribute``; a Study passes through."""
    if isinstance(name, Study):
        return name
    _load_builtins()
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" in name:
        return _load_object(name)
    known = ", ".join(sorted(_REGISTRY)) or "(none)"
    raise InvalidInputError(f"unknown study {name!r}; known studies: {known} "
                            "(or give MODULE:ATTRIBUTE or path/to/file.py:ATTRIBUTE of a Study you declared)")


def _load_object(spec: str) -> Study:
    """The Study at ``module:attribute`` or ``path/to/file.py:attribute`` (:func:`hesslens.loading.load_object`)."""
    obj = load_object(spec, "study")
    if not isinstance(obj, Study):
        raise InvalidInputError(f"{spec!r} is a {type(obj).__name__}, not a hesslens.studies.Study")
    return obj
