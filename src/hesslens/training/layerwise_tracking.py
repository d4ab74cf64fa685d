"""The tracker's measurement ``"layerwise"``: per-block local Hessians at every checkpoint.

At each checkpoint :func:`measure` runs :func:`hesslens.layerwise` on the checkpoint's operator (the
tracker's fixed analysis set, ``params`` and ``mode``) with the tracker's ``slq_steps``, ``slq_probes``,
``trace_matvecs``, ``tol``, ``seed`` — the same probes at every checkpoint — and ``hesd_options``, and
returns the result with its logger scalars ``layerwise/<block>/<metric>`` (every numeric metric of
:data:`hesslens.analysis.layerwise.METRICS`). :func:`history` puts the kept tables in long form.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Sequence

from ..analysis.layerwise import COLUMNS, METRICS, Layerwise, layerwise
from ..errors import InvalidInputError

if TYPE_CHECKING:
    import pandas as pd

#: Keys of the tracker's ``layerwise_options`` (the other settings are the tracker's own).
OPTIONS = ("blocks", "exact_below", "rel_tol")


def check_options(options: Any) -> dict[str, Any]:
    """``layerwise_options`` checked for their keys (hl.layerwise checks the values at the first checkpoint)."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise InvalidInputError(f"layerwise_options must be a dict of keyword arguments, got {type(options).__name__}")
    unknown = sorted(str(k) for k in options if k not in OPTIONS)
    if unknown:
        raise InvalidInputError(f"layerwise_options has unknown keys {unknown}; choose from {list(OPTIONS)} "
                                "(steps, probes, trace_matvecs, tol and seed are the tracker's own)")
    return dict(options)


def measure(op: Any, tracker: Any) -> tuple[Layerwise, dict[str, float]]:
    """hl.layerwise of the checkpoint's operator with the tracker's settings, and its logger scalars."""
    result = layerwise(op, steps=tracker.slq_steps, probes=tracker.slq_probes, seed=tracker.seed,
                       trace_matvecs=tracker.trace_matvecs, tol=tracker.tol, hesd_options=tracker.hesd_options or None,
                       progress=False, **tracker.layerwise_options)
    scalars = {f"layerwise/{row['block']}/{m}": float(row[m]) for row in result.table.to_dict("records")
               for m in METRICS}
    return result, scalars


def expected_matvecs(tracker: Any) -> int:
    """A rough count of the products of one checkpoint's "layerwise" (for the operator's engine choice)."""
    return tracker.slq_steps * tracker.slq_probes + tracker.trace_matvecs


def history(results: Sequence[tuple[int, Layerwise]], rows: Sequence[dict[str, Any]]) -> "pd.DataFrame":
    """Long form of the kept tables: columns ``checkpoint`` (the row of the tracker's history), ``epoch``,
    ``step``, then :data:`~hesslens.analysis.layerwise.COLUMNS`."""
    import pandas as pd

    frames = []
    for index, result in results:
        table = result.table.copy()
        for position, key in enumerate(("checkpoint", "epoch", "step")):
            table.insert(position, key, index if key == "checkpoint" else rows[index].get(key))
        frames.append(table)
    if not frames:
        return pd.DataFrame(columns=["checkpoint", "epoch", "step", *COLUMNS])
    return pd.concat(frames, ignore_index=True)
