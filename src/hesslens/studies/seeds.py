"""Replicates: the seed is an axis of every study, owned by the machinery rather than by the presets.

A verdict drawn from one run per configuration cannot tell an effect from the luck of one
initialisation and one data order, so every run of a study is a pair (configuration, seed): network
initialisation and data order both vary with the seed. A study declares how many seeds each preset
uses — ``Study(..., seeds=5)`` for every preset, or ``seeds={"smoke": 1, "full": 5}`` (presets not
named get 1) — and ``--seeds`` overrides it per invocation: ``--seeds 5`` runs seeds 0-4,
``--seeds 3,4,5`` exactly those (disjoint subsets, for robustness checks; ``--seeds 7,`` is seed 7
alone). The store keys a run by (configuration key, seed), so asking for more seeds later runs only
the new ones.

The run function receives the seed as ``ctx.seed`` and, when its configuration dataclass has a
``seed`` field, in ``config.seed`` (filled here, checked against the field's declared bounds). A
preset may therefore not set ``seed`` itself: that is refused with a message saying where seeds are
declared. The run key of a configuration leaves the seed out, so all seeds of a configuration share it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

from ..errors import InvalidInputError

#: The configuration field the machinery fills with the seed, when a study's config declares it.
SEED_FIELD = "seed"
#: What study-standards.md asks of a ``full`` preset.
FULL_MIN_SEEDS = 5


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"{where}: the number of seeds must be a positive integer, got {value!r}")
    return value


def check_counts(study: str, seeds: Any) -> int | dict[str, int]:
    """``Study.seeds`` validated once, where it is declared: a positive int or a mapping preset → one."""
    if isinstance(seeds, Mapping):
        out = {}
        for preset, n in seeds.items():
            if not isinstance(preset, str):
                raise InvalidInputError(f"study {study!r}: seeds maps preset names to counts, got key {preset!r}")
            out[preset] = _count(n, f"study {study!r}, seeds of preset {preset!r}")
        return out
    return _count(seeds, f"study {study!r}, seeds")


def count_for(seeds: int | Mapping[str, int], preset: str) -> int:
    """How many seeds ``preset`` runs by default (1 for a preset the mapping does not name)."""
    return seeds.get(preset, 1) if isinstance(seeds, Mapping) else seeds


def parse_seeds(value: Any) -> tuple[int, ...]:
    """The seeds an override asks for: ``N`` (an int or its text) means 0..N-1; ``"3,4,5"`` or a
    sequence of ints means exactly those (in that order, each once).

    >>> parse_seeds(3), parse_seeds("2"), parse_seeds("3,4,5"), parse_seeds("7,")
    ((0, 1, 2), (0, 1), (3, 4, 5), (7,))
    """
    if isinstance(value, str):
        text = value.strip()
        if "," not in text:
            try:
                count = int(text)
            except ValueError:
                raise InvalidInputError(f"--seeds {value!r}: give a number of seeds (5 runs seeds 0-4) or a "
                                        "comma-separated list of seeds (3,4,5)") from None
            return tuple(range(_count(count, "--seeds")))
        items: list[Any] = []
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            try:
                items.append(int(part))
            except ValueError:
                raise InvalidInputError(f"--seeds {value!r}: {part!r} is not an integer seed") from None
        value = items
    elif isinstance(value, int) and not isinstance(value, bool):
        return tuple(range(_count(value, "seeds")))
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise InvalidInputError(f"seeds must be a count or a list of seeds, got {type(value).__name__} {value!r}")
    seeds = list(value)
    if not seeds:
        raise InvalidInputError("seeds: the list of seeds is empty")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise InvalidInputError(f"seeds: {s!r} is not a non-negative integer seed")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise InvalidInputError(f"seeds: seed {repeated[0]} is listed more than once")
    return tuple(seeds)


def has_seed_field(config_cls: type) -> bool:
    return any(f.name == SEED_FIELD for f in dataclasses.fields(config_cls))


def refuse_seed_axis(rows: Sequence[Mapping[str, Any]], where: str) -> None:
    """A preset that sets ``seed`` is refused: seeds are declared on the Study or given with --seeds."""
    if any(SEED_FIELD in row for row in rows):
        raise InvalidInputError(f"{where} sets {SEED_FIELD!r}, but the seed is an axis of every study, filled by "
                                "hesslens: remove it from the preset and declare the number of seeds with "
                                "Study(seeds=...) or pass --seeds (e.g. --seeds 5 or --seeds 3,4,5)")


def with_seed(config: Any, seed: int) -> Any:
    """``config`` with its ``seed`` field set to ``seed`` (re-validated), or unchanged without such a field."""
    if not has_seed_field(type(config)):
        return config
    from .declaration import config_dict, make_config

    try:
        return make_config(type(config), {**config_dict(config), SEED_FIELD: seed})
    except InvalidInputError as exc:
        raise InvalidInputError(f"seed {seed}: {exc}") from None
