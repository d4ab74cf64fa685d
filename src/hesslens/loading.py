"""Load an object the user names as ``module:attribute``: one loader for every such option.

``hesslens analyze --model``/``--data`` and ``hesslens study MODULE:ATTRIBUTE`` name objects in the
user's own code the same way:

* ``module`` is an importable module name (``mypkg.models``; the current directory is searched
  first, as with ``python -m``) or the path of a ``.py`` file (``path/to/file.py``, any name
  containing a path separator or ending in ``.py``);
* ``attribute`` is a name in that module, possibly dotted (``Builder.make``).

A file is imported once per process under its stem (``file``), with its folder put on ``sys.path``
as ``python path/to/file.py`` would: so it can import its neighbours, and functions defined in it
pickle by reference (the pool and Ray executors of studies rely on that).

Every failure is an :class:`ObjectLoadError` (an :class:`~hesslens.errors.InvalidInputError`) whose
message says which of these went wrong, naming what was asked for (``origin``, e.g. ``--model`` or
``study``):

* a malformed spec (no colon, an empty module or attribute);
* the module cannot be found (no such file, or no such module on ``sys.path``);
* importing the module raised (an error inside the user's code, including an import of a missing
  *other* module, which is named);
* the module has no such attribute.

This module depends only on :mod:`hesslens.errors`, so every layer may use it.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from .errors import InvalidInputError

__all__ = ["ObjectLoadError", "import_user_module", "is_file_spec", "load_object", "split_spec"]

#: What a malformed spec is told to look like.
SPEC_FORMAT = "module:attribute or path/to/file.py:attribute"


class ObjectLoadError(InvalidInputError):
    """A ``module:attribute`` spec could not be resolved; ``kind`` says why.

    ``kind`` is one of ``"spec"`` (malformed), ``"not_found"`` (no such module or file),
    ``"import"`` (importing the module raised; the exception is ``__cause__``) and
    ``"attribute"`` (the module has no such attribute).
    """

    def __init__(self, message: str, *, kind: str, spec: str):
        super().__init__(message)
        self.kind = kind
        self.spec = spec


def _from(spec: str, origin: str | None) -> str:
    return f"(from {origin} {spec!r})" if origin else f"(from {spec!r})"


def split_spec(spec: str, origin: str | None = None) -> tuple[str, str]:
    """``(module, attribute)`` of ``module:attribute``; the last colon separates them (``C:\\x.py:f``)."""
    module_name, sep, attr = str(spec).rpartition(":")
    if not sep or not module_name.strip() or not attr.strip():
        where = f" for {origin}" if origin else ""
        raise ObjectLoadError(f"expected {SPEC_FORMAT} (e.g. mypackage.models:make_model){where}, got {spec!r}",
                              kind="spec", spec=str(spec))
    return module_name, attr


def is_file_spec(module_name: str) -> bool:
    """Whether ``module_name`` names a ``.py`` file rather than an importable module."""
    return module_name.endswith(".py") or os.sep in module_name or "/" in module_name


def _import_error(module_name: str, exc: BaseException, spec: str, origin: str | None) -> ObjectLoadError:
    return ObjectLoadError(f"importing {module_name!r} {_from(spec, origin)} raised {type(exc).__name__}: {exc}",
                           kind="import", spec=spec)


def _import_file(module_name: str, spec: str, origin: str | None) -> ModuleType:
    path = Path(module_name)
    if not path.is_file():
        raise ObjectLoadError(f"no such file {module_name!r} {_from(spec, origin)}", kind="not_found", spec=spec)
    resolved = path.resolve()
    name = path.stem
    existing = sys.modules.get(name)
    if existing is not None and _same_file(getattr(existing, "__file__", None), resolved):
        return existing  # imported once per process, like any module (and its functions stay picklable)
    module_spec = importlib.util.spec_from_file_location(name, resolved)
    if module_spec is None or module_spec.loader is None:
        raise ObjectLoadError(f"cannot import {module_name!r} as a Python module {_from(spec, origin)}",
                              kind="not_found", spec=spec)
    module = importlib.util.module_from_spec(module_spec)
    folder = str(resolved.parent)
    if folder not in sys.path:  # its neighbours import, as under `python path/to/file.py`
        sys.path.insert(0, folder)
    # Registered under its stem so that its functions pickle by reference (pool and Ray workers import
    # it by that name); a different module already holding the name is left in place.
    registered = existing is None
    if registered:
        sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException as exc:
        if registered and sys.modules.get(name) is module:
            del sys.modules[name]
        if isinstance(exc, Exception):
            raise _import_error(module_name, exc, spec, origin) from exc
        raise
    return module


def _same_file(file: str | None, resolved: Path) -> bool:
    if not file:
        return False
    try:
        return Path(file).resolve() == resolved
    except OSError:
        return False


def _is_missing(module_name: str, exc: ModuleNotFoundError) -> bool:
    """Whether ``exc`` says ``module_name`` itself (or a package above it) does not exist, rather than
    that code inside it imported some other missing module."""
    missing = exc.name
    if missing is None:
        return False
    return module_name == missing or module_name.startswith(missing + ".")


def import_user_module(module_name: str, spec: str | None = None, origin: str | None = None) -> ModuleType:
    """Import ``module_name`` (a module name or a ``.py`` path), raising :class:`ObjectLoadError`."""
    spec = module_name if spec is None else spec
    if is_file_spec(module_name):
        return _import_file(module_name, spec, origin)
    # Console scripts do not put the working directory on sys.path; users expect `python -m` behaviour.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if _is_missing(module_name, exc):
            raise ObjectLoadError(f"cannot import module {module_name!r} {_from(spec, origin)}: {exc}",
                                  kind="not_found", spec=spec) from exc
        raise _import_error(module_name, exc, spec, origin) from exc
    except Exception as exc:
        raise _import_error(module_name, exc, spec, origin) from exc


def load_object(spec: str, origin: str | None = None) -> Any:
    """The object named by ``module:attribute`` (attribute may be dotted).

    ``origin`` names what asked for it (``"--model"``, ``"study"``) in every error message. Raises
    :class:`ObjectLoadError` for a malformed spec, a module that cannot be found, an import that
    raised, or a missing attribute.
    """
    module_name, attr = split_spec(spec, origin)
    obj: Any = import_user_module(module_name, spec, origin)
    walked: list[str] = []
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            inner = f" ({'.'.join(walked)!r} has no attribute {part!r})" if walked else ""
            raise ObjectLoadError(f"module {module_name!r} has no attribute {attr!r}{inner} {_from(spec, origin)}",
                                  kind="attribute", spec=spec) from None
        walked.append(part)
    return obj
