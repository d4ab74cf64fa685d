"""Declaring a study: a configuration dataclass, named presets (grids) and a run function.

A *study* is many runs of one function over a grid of configurations. It is declared once::

    @dataclass(frozen=True)
    class Config:
        lr: float = param(0.1, gt=0, doc="step size η")
        seed: int = param(0, ge=0)            # optional: filled by hesslens with each run's seed
        width: int = 16
        activation: Literal["tanh", "relu"] = "tanh"

    def run(config: Config, ctx: RunContext) -> dict:   # or run(config)
        ...                                   # ctx.seed: the replicate seed; ctx.save_artifact(name, array)
        return {"loss": 0.12, "accuracy": 0.97}   # a flat record of scalars
        # or (record, series) with series = [(step, key, value), ...] or a DataFrame,
        # or (record, series, {name: array | DataFrame | dict}) to store artifacts (see .artifacts)

    STUDY = Study(name="mine", config=Config, run=run, seeds={"smoke": 1, "full": 5},
                  presets={"smoke": {"lr": [0.1, 1.0]},
                           "full": {"lr": [0.01, 0.1, 1.0], "width": [16, 64]}})

Every configuration runs once per seed (see :mod:`.seeds`): ``seeds`` is an int (every preset) or a
mapping preset → count (presets not named: 1), overridden per invocation by ``--seeds``; presets do
not set ``seed`` themselves.

A preset is a *grid* (:mod:`.grids`): a mapping field -> list of values (an axis) or a single value (fixed), expanded
as the Cartesian product of its axes, in the declared order (last axis fastest); or a list of such
mappings, whose expansions are concatenated (a union of grids; a list of mappings of plain values is
just an explicit list of configurations). For a field whose type is itself a sequence (``tuple[int,
...]``), a list of plain values is one value and a list of lists is an axis. Presets may also come
from a TOML file (``[smoke]`` tables are grids, ``[[smoke]]`` arrays of tables are unions) or, when
PyYAML is installed, a YAML file of the same shape.

Every configuration of a preset is validated before any run starts: unknown or missing fields, values
of the wrong type (from the dataclass annotations: ``int``, ``float``, ``bool``, ``str``, ``Literal``,
``Optional``/unions, ``tuple``/``list``), bounds and choices declared with :func:`param`, and the
dataclass's own ``__post_init__`` checks. Each failure names the field and the bad value and is raised
as :class:`hesslens.errors.InvalidInputError`.

Each configuration has a *run key*: the first 16 hex digits of SHA-256 of its canonical JSON (fields
sorted, defaults included, after type coercion, so ``lr=1`` and ``lr=1.0`` are the same run; the
``seed`` field left out). The key and the seed identify a run in the store across invocations and
presets, which is what makes resuming possible.
Adding a field to the dataclass changes every key (new runs), deliberately: the field might matter.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

from ..errors import InvalidInputError
from .context import RunContext
from .grids import _is_union, _type_hints, expand_grid, load_presets
from .seeds import SEED_FIELD, check_counts, count_for, has_seed_field, parse_seeds, refuse_seed_axis

__all__ = ["FINISHED", "STATUSES", "Diverged", "ReportContent", "RunContext", "Study", "canonical_json", "config_dict",
           "expand_grid", "load_presets", "make_config", "membership", "param", "run_key"]

#: Statuses a run can have in the store. ``done`` and ``diverged`` are final (they carry a record).
STATUSES = ("pending", "running", "done", "failed", "diverged")
FINISHED = ("done", "diverged")

_MISSING = dataclasses.MISSING


def param(default: Any = _MISSING, *, gt: float | None = None, ge: float | None = None, lt: float | None = None,
          le: float | None = None, choices: Sequence[Any] | None = None, doc: str = "") -> Any:
    """A configuration field with declared bounds or choices, checked before any run starts.

    ``gt``/``ge``/``lt``/``le`` bound a number (``x > gt``, ``x ≥ ge``, ...); ``choices`` lists the
    allowed values; ``doc`` describes the field (shown in error messages and the report).
    """
    meta = {k: v for k, v in dict(gt=gt, ge=ge, lt=lt, le=le, choices=choices, doc=doc).items() if v not in (None, "")}
    if isinstance(default, (list, dict, set)):
        value = default
        return field(default_factory=lambda: type(value)(value), metadata=meta)
    return field(default=default, metadata=meta)


class Diverged(Exception):
    """Raise from a run function to record the run as ``diverged`` (with an optional partial record).

    A run is also recorded as diverged when its record has a truthy ``diverged`` entry, or when a loss
    entry (see :attr:`Study.loss_keys`) is NaN or infinite.
    """

    def __init__(self, message: str = "diverged", record: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.record = dict(record or {})


@dataclass(frozen=True)
class ReportContent:
    """What a report hook may return besides figures: tables placed above the runs table.

    Attributes:
        figures: as a plain hook return (a list of paths/Figures, or a mapping caption → one).
        tables: mapping section title → DataFrame, rendered in order as Markdown and HTML tables.
        notes: mapping section title → a paragraph shown under that table (or alone, if no table).
    """

    figures: Any = None
    tables: Mapping[str, Any] = field(default_factory=dict)
    notes: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Study:
    """A declared study: see the module docstring.

    Attributes:
        name: registry name (``hesslens study NAME``).
        config: the configuration dataclass (frozen recommended).
        run: ``run(config)`` or ``run(config, ctx: RunContext)`` → a flat record ``{str: scalar}``, or
            ``(record, series)`` with series a list of ``(step, key, value)`` or a DataFrame (long form
            with columns step/key/value, or wide form with a ``step`` column). Must be a module-level
            function for the pool and Ray executors (it is pickled by reference).
        presets: mapping preset name → grid, or a path to a TOML/YAML file of presets.
        report: optional ``report(df, out)``, ``report(df, out, series)`` or ``report(df, out, series,
            artifacts)`` hook (``artifacts(run_key, seed)`` → that run's artifacts) drawing the study's
            figures; returns figure paths or matplotlib Figures (a list, or a mapping title → figure),
            or a :class:`ReportContent` that adds tables (e.g. a study's verdicts) to the report.
        description: one paragraph for the report.
        loss_keys: record entries whose NaN/inf value means the run diverged; ``None`` means every
            entry whose name contains ``"loss"``.
        seeds: how many seeds each preset runs: an int for every preset, or a mapping preset → count
            (presets not named: 1). Seeds are 0..N-1; ``run_study(seeds=...)``/``--seeds`` override it.
    """

    name: str
    config: type
    run: Callable[..., Any]
    presets: Mapping[str, Any] | str | Path
    report: Callable[..., Any] | None = None
    description: str = ""
    loss_keys: tuple[str, ...] | None = None
    seeds: int | Mapping[str, int] = 1

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip() or any(c.isspace() for c in self.name):
            raise InvalidInputError(f"study name must be a non-empty string without spaces, got {self.name!r}")
        if not (isinstance(self.config, type) and dataclasses.is_dataclass(self.config)):
            raise InvalidInputError(f"study {self.name!r}: config must be a dataclass type, got {self.config!r}")
        if not callable(self.run):
            raise InvalidInputError(f"study {self.name!r}: run must be callable, got {self.run!r}")
        if self.report is not None and not callable(self.report):
            raise InvalidInputError(f"study {self.name!r}: report must be callable or None, got {self.report!r}")
        self.seeds = check_counts(self.name, self.seeds)

    # -- presets -----------------------------------------------------------------------------------
    def preset_table(self, grid_file: str | Path | None = None) -> dict[str, Any]:
        """Preset name → grid spec: the study's presets, overridden by those of ``grid_file``."""
        table = dict(load_presets(self.presets) if isinstance(self.presets, (str, Path)) else self.presets)
        if grid_file is not None:
            table.update(load_presets(grid_file))
        return table

    def preset_names(self, grid_file: str | Path | None = None) -> list[str]:
        return list(self.preset_table(grid_file))

    def configs(self, preset: str | Mapping[str, Any] | Sequence[Mapping[str, Any]] = "smoke", *,
                grid_file: str | Path | None = None) -> list[Any]:
        """Every configuration of a preset (a name, or a grid spec given directly), all validated.

        Raises :class:`InvalidInputError` naming the preset, the configuration and the field, before
        anything runs. Duplicate configurations are kept once (first occurrence).
        """
        if isinstance(preset, str):
            table = self.preset_table(grid_file)
            if preset not in table:
                raise InvalidInputError(f"study {self.name!r} has no preset {preset!r}; "
                                        f"known presets: {', '.join(sorted(table)) or '(none)'}")
            spec, label = table[preset], f"preset {preset!r}"
        else:
            spec, label = preset, "the given grid"
        rows = expand_grid(spec, self.config, where=f"study {self.name!r}, {label}")
        if not rows:
            raise InvalidInputError(f"study {self.name!r}, {label}: the grid has no configurations")
        refuse_seed_axis(rows, f"study {self.name!r}, {label}")
        if has_seed_field(self.config):  # a placeholder: the runner sets each run's seed
            rows = [{**row, SEED_FIELD: 0} for row in rows]
        configs, errors = [], []
        for i, row in enumerate(rows):
            try:
                configs.append(make_config(self.config, row))
            except InvalidInputError as exc:
                errors.append(f"configuration #{i} {_short(row)}: {exc}")
        if errors:
            more = f"\n  ... and {len(errors) - 10} more" if len(errors) > 10 else ""
            raise InvalidInputError(f"study {self.name!r}, {label}: {len(errors)} of {len(rows)} configurations "
                                    "are invalid (nothing was run):\n  " + "\n  ".join(errors[:10]) + more)
        unique: dict[str, Any] = {}
        for c in configs:
            unique.setdefault(run_key(c), c)
        return list(unique.values())

    def seeds_for(self, preset: str, override: int | str | Sequence[int] | None = None) -> tuple[int, ...]:
        """The seeds a run of ``preset`` uses: ``override`` (see :func:`.seeds.parse_seeds`) or the declared count."""
        return parse_seeds(override if override is not None else count_for(self.seeds, preset))

    def run_arity(self) -> int:
        """1 if ``run(config)``, 2 if ``run(config, ctx)``."""
        return _positional_arity(self.run, self.name, "run", allowed=(1, 2))


def _positional_arity(fn: Callable[..., Any], study: str, what: str, allowed: tuple[int, ...]) -> int:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return allowed[0]
    params = [p for p in sig.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind is p.VAR_POSITIONAL for p in sig.parameters.values()):
        return allowed[-1]
    required = [p for p in params if p.default is p.empty]
    for n in sorted(allowed, reverse=True):  # an optional ctx/series parameter is passed
        if len(required) <= n <= len(params):
            return n
    raise InvalidInputError(f"study {study!r}: {what} must take {' or '.join(map(str, allowed))} positional "
                            f"arguments, its signature is {what}{sig}")


# -- validation ----------------------------------------------------------------------------------
def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


class _Mismatch(Exception):
    pass


def _coerce(tp: Any, value: Any) -> Any:
    """``value`` checked against annotation ``tp`` (ints widen to float, lists to tuples); _Mismatch if not."""
    if tp is Any or tp is object:
        return value
    if _is_union(tp):
        for member in typing.get_args(tp):
            try:
                return _coerce(member, value)
            except _Mismatch:
                continue
        raise _Mismatch(f"is not {' or '.join(_type_name(m) for m in typing.get_args(tp))}")
    origin = typing.get_origin(tp)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if any(value == a and type(value) is type(a) for a in allowed):
            return value
        raise _Mismatch(f"is not one of {', '.join(map(repr, allowed))}")
    if tp is type(None) or tp is None:
        if value is None:
            return None
        raise _Mismatch("is not None")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch("is not a bool (true/false)")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return int(value)
        raise _Mismatch("is not an int")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _Mismatch("is not a number")
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Mismatch("is not a string")
    if origin in (tuple, list) or tp in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise _Mismatch(f"is not a {'tuple' if (origin or tp) is tuple else 'list'} (write it as a list)")
        args = typing.get_args(tp)
        if (origin or tp) is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(args) != len(value):
                raise _Mismatch(f"must have {len(args)} items")
            items = [_coerce(a, v) for a, v in zip(args, value)]
        else:
            item_tp = args[0] if args else Any
            items = [_coerce(item_tp, v) for v in value]
        return tuple(items) if (origin or tp) is tuple else list(items)
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise _Mismatch(f"is not a {tp.__name__}")
    return value  # an annotation we do not interpret (a TypeVar, a string): accept as given


def _check_bounds(name: str, value: Any, meta: Mapping[str, Any]) -> None:
    if "choices" in meta and value not in meta["choices"]:
        raise InvalidInputError(f"field {name!r} = {value!r} is not one of {', '.join(map(repr, meta['choices']))}")
    checks = (("gt", lambda v, b: v > b, ">"), ("ge", lambda v, b: v >= b, ">="),
              ("lt", lambda v, b: v < b, "<"), ("le", lambda v, b: v <= b, "<="))
    for key, ok, sym in checks:
        if key in meta:
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isnan(float(value)):
                raise InvalidInputError(f"field {name!r} = {value!r}: must be {sym} {meta[key]!r}, not NaN")
            try:
                good = ok(value, meta[key])
            except TypeError:
                good = False
            if not good:
                raise InvalidInputError(f"field {name!r} = {value!r}: must be {sym} {meta[key]!r}")


def make_config(cls: type, values: Mapping[str, Any]) -> Any:
    """An instance of the config dataclass ``cls`` from ``values``, every field checked.

    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class C:
    ...     lr: float = param(0.1, gt=0)
    ...     seed: int = 0
    >>> make_config(C, {"lr": 1, "seed": 2})
    C(lr=1.0, seed=2)
    >>> make_config(C, {"lr": -1})
    Traceback (most recent call last):
    ...
    hesslens.errors.InvalidInputError: field 'lr' = -1.0: must be > 0
    """
    if isinstance(values, cls):
        values = config_dict(values)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in values if k not in fields]
    if unknown:
        raise InvalidInputError(f"unknown field {unknown[0]!r} = {values[unknown[0]]!r} "
                                f"({cls.__name__} has fields: {', '.join(fields)})")
    missing = [n for n, f in fields.items()
               if n not in values and f.default is _MISSING and f.default_factory is _MISSING]
    if missing:
        raise InvalidInputError(f"field {missing[0]!r} is required and has no value")
    hints = _type_hints(cls)
    coerced = {}
    for name, value in values.items():
        tp = hints.get(name, Any)
        try:
            coerced[name] = _coerce(tp, value)
        except _Mismatch as exc:
            raise InvalidInputError(f"field {name!r} = {value!r} {exc} (declared {_type_name(tp)})") from None
        _check_bounds(name, coerced[name], fields[name].metadata)
    try:
        config = cls(**coerced)
    except InvalidInputError:
        raise
    except Exception as exc:  # __post_init__ checks of the user's dataclass
        raise InvalidInputError(f"{cls.__name__}(...) rejected it: {type(exc).__name__}: {exc}") from exc
    # Defaults are checked too: a default outside its own bounds is a declaration bug worth reporting.
    for name, f in fields.items():
        if name not in coerced:
            _check_bounds(name, getattr(config, name), f.metadata)
    return config


def config_dict(config: Any) -> dict[str, Any]:
    """The config's fields as a JSON-ready dict (tuples become lists)."""
    return {f.name: _jsonable(getattr(config, f.name)) for f in dataclasses.fields(config)}


def _jsonable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def canonical_json(config: Any) -> str:
    """Canonical JSON of a config (sorted keys, no spaces): the text the run key hashes."""
    data = config_dict(config) if dataclasses.is_dataclass(config) else dict(config)
    try:
        return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=True)
    except TypeError as exc:
        raise InvalidInputError(f"configuration {data!r} is not JSON-serialisable: {exc}") from exc


def run_key(config: Any) -> str:
    """Stable identity of a configuration, whatever its seed: ``sha256(canonical_json(config))[:16]``
    with the ``seed`` field left out (the store keys a run by this key and the seed).

    >>> run_key({"lr": 0.1, "seed": 0}) == run_key({"seed": 1, "lr": 0.1}) == run_key({"lr": 0.1})
    True
    """
    data = config_dict(config) if dataclasses.is_dataclass(config) else dict(config)
    data.pop(SEED_FIELD, None)
    return hashlib.sha256(canonical_json(data).encode()).hexdigest()[:16]


def membership(grids: Mapping[str, Any], config: type) -> dict[str, tuple[str, ...]]:
    """Run key → the names of the ``grids`` (name → grid spec) that hold that configuration, in order: a
    study whose grids share configurations trains each once and records which grids it serves."""
    held: dict[str, list[str]] = {}
    for name, spec in grids.items():
        for row in expand_grid(spec, config):
            held.setdefault(run_key(make_config(config, row)), []).append(name)
    return {k: tuple(v) for k, v in held.items()}


def _short(row: Mapping[str, Any]) -> str:
    text = ", ".join(f"{k}={v!r}" for k, v in row.items())
    return "(" + (text if len(text) <= 120 else text[:117] + "...") + ")"
