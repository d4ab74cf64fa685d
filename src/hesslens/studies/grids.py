"""Grids: how a preset (a mapping of axes, or a list of such mappings) expands into configurations,
and where presets may come from besides the code (a TOML or YAML file).

Kept apart from :mod:`.declaration` (which validates each configuration) because expansion only needs
the configuration class's field types: a field typed as a sequence takes a list as one value.
"""

from __future__ import annotations

import dataclasses
import itertools
import types
import typing
from pathlib import Path
from typing import Any, Mapping, Union

from ..errors import HesslensError, InvalidInputError

def _type_hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # unresolvable forward references: fall back to no type checks for those
        return {f.name: (f.type if not isinstance(f.type, str) else Any) for f in dataclasses.fields(cls)}


def _sequence_fields(cls: type) -> set[str]:
    hints = _type_hints(cls)
    out = set()
    for f in dataclasses.fields(cls):
        tp = hints.get(f.name, Any)
        members = typing.get_args(tp) if _is_union(tp) else (tp,)
        if any(typing.get_origin(m) in (tuple, list) or m in (tuple, list) for m in members):
            out.add(f.name)
    return out


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) is Union or isinstance(tp, types.UnionType)




# -- grids ---------------------------------------------------------------------------------------
def expand_grid(spec: Any, config_cls: type | None = None, *, where: str = "grid") -> list[dict[str, Any]]:
    """The configurations (plain dicts) of a grid spec, in order; see the module docstring.

    >>> expand_grid({"lr": [0.1, 1.0], "seed": [0, 1], "width": 8})
    [{'lr': 0.1, 'seed': 0, 'width': 8}, {'lr': 0.1, 'seed': 1, 'width': 8}, {'lr': 1.0, 'seed': 0, 'width': 8}, {'lr': 1.0, 'seed': 1, 'width': 8}]
    >>> expand_grid([{"lr": 0.1}, {"lr": [1.0, 2.0], "seed": 3}])
    [{'lr': 0.1}, {'lr': 1.0, 'seed': 3}, {'lr': 2.0, 'seed': 3}]
    """
    if isinstance(spec, Mapping):
        sequence_fields = _sequence_fields(config_cls) if config_cls is not None else set()
        names, axes = [], []
        for name, value in spec.items():
            if not isinstance(name, str):
                raise InvalidInputError(f"{where}: field names must be strings, got {name!r}")
            if isinstance(value, (list, tuple)) and not (
                    name in sequence_fields and not any(isinstance(v, (list, tuple)) for v in value)):
                if len(value) == 0:
                    raise InvalidInputError(f"{where}: axis {name!r} is an empty list")
                axes.append(list(value))
            else:
                axes.append([value])
            names.append(name)
        return [dict(zip(names, combo)) for combo in itertools.product(*axes)]
    if isinstance(spec, (list, tuple)):
        rows: list[dict[str, Any]] = []
        for i, part in enumerate(spec):
            if not isinstance(part, Mapping):
                raise InvalidInputError(f"{where}: item #{i} of the grid list must be a mapping of fields, "
                                        f"got {type(part).__name__} {part!r}")
            rows.extend(expand_grid(part, config_cls, where=where))
        return rows
    raise InvalidInputError(f"{where}: a grid is a mapping field -> values or a list of such mappings, "
                            f"got {type(spec).__name__} {spec!r}")


def load_presets(path: str | Path) -> dict[str, Any]:
    """Presets from a TOML file (``tomllib``; ``tomli`` on Python 3.10) or a YAML file (needs PyYAML).

    Each top-level table is a preset: ``[smoke]`` with ``lr = [0.1, 1.0]`` is a grid, ``[[smoke]]``
    repeated is a list of grids (a union).
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"grid file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise HesslensError(f"reading {path.name} needs PyYAML: pip install pyyaml (or use a .toml file)") from None
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise InvalidInputError(f"grid file {str(path)!r} is not valid YAML: {exc}") from exc
    else:
        try:
            import tomllib
        except ImportError:  # Python 3.10
            try:
                import tomli as tomllib  # type: ignore[no-redef]
            except ImportError:
                raise HesslensError("reading TOML on Python 3.10 needs tomli: pip install tomli") from None
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise InvalidInputError(f"grid file {str(path)!r} is not valid TOML: {exc}") from exc
    if not isinstance(data, Mapping) or not data:
        raise InvalidInputError(f"grid file {str(path)!r} must hold one table per preset, e.g. [smoke]")
    for name, spec in data.items():
        if not isinstance(spec, (Mapping, list)):
            raise InvalidInputError(f"grid file {str(path)!r}: preset {name!r} must be a table or an array of "
                                    f"tables, got {type(spec).__name__} {spec!r}")
    return dict(data)
