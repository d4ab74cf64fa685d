"""The layer-wise entry of a report: which settings ``hesslens analyze`` gives :func:`hesslens.layerwise`,
and the result as ``summary.json``'s ``layerwise`` entry and back.

:func:`layerwise_options` keeps the layer-wise step within :data:`LAYERWISE_COST_LIMIT` of the main
analysis's products; :func:`layerwise_summary` writes a :class:`~hesslens.Layerwise` result as plain JSON
values (the table, each block's ranges and density, settings, products, engine, notes and the
evidence-based diagnoses); :func:`layerwise_item` reads it back as a :class:`~hesslens.Layerwise` whose
block view multiplies nothing — what ``layerwise.png`` draws.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import InvalidInputError
from .summary import Summary

if TYPE_CHECKING:  # pragma: no cover
    from .analysis import AnalysisSettings

__all__ = ["LAYERWISE_COST_LIMIT", "LAYERWISE_FREE_PRODUCTS", "LAYERWISE_MIN_PROBES", "LAYERWISE_MIN_STEPS",
           "layerwise_item", "layerwise_options", "layerwise_summary"]

#: The layer-wise step may take about this many times the main analysis's products (its eigenvalues,
#: trace and density together) before :func:`layerwise_options` lowers its settings.
LAYERWISE_COST_LIMIT = 0.5
#: ... but never below this many products (a step this small is not worth a coarser table).
LAYERWISE_FREE_PRODUCTS = 200
#: The lowest probes and steps :func:`layerwise_options` lowers to (never above the analysis's own).
LAYERWISE_MIN_PROBES, LAYERWISE_MIN_STEPS = 2, 20



def _exact(size: int, exact_below: int) -> bool:
    """Whether :func:`hesslens.layerwise` forms a block of ``size`` coordinates exactly."""
    return size <= exact_below or size < 2


def _layerwise_cost(sizes: tuple[int, ...], steps: int, probes: int, trace_matvecs: int, exact_below: int) -> int:
    """About the product columns of :func:`hesslens.layerwise` on blocks of ``sizes``: n_i per exact block;
    per SLQ block min(steps, n_i) × probes for its density and about min(steps, n_i) more for its Lanczos
    λ_max and λ_min; one Hutchinson pass of ``trace_matvecs`` for the SLQ blocks together."""
    slq = [s for s in sizes if not _exact(s, exact_below)]
    return (sum(s for s in sizes if _exact(s, exact_below))
            + sum(min(steps, s) * (probes + 1) for s in slq) + (trace_matvecs if slq else 0))


def _exact_below(steps: int, probes: int) -> int:
    """The largest block formed exactly once settings are lowered: where that is no dearer than SLQ."""
    from ..analysis.layerwise import DEFAULT_EXACT_BELOW

    return min(DEFAULT_EXACT_BELOW, steps * (probes + 1))


def layerwise_options(op: Any, settings: AnalysisSettings, main_matvecs: int) -> tuple[dict[str, Any], list[str]]:
    """The keyword arguments of :func:`hesslens.layerwise` for the analysis of ``op``, and notes on them.

    The layer-wise step takes the analysis's own ``steps`` (capped at n, as the density's), ``probes``,
    ``seed`` and ``trace_matvecs`` (the Hutchinson probes of the SLQ blocks' traces), blocks "auto" and
    :data:`~hesslens.analysis.layerwise.DEFAULT_EXACT_BELOW`, the other options of
    :func:`hesslens.layerwise` at their defaults — unless that would cost more than
    :data:`LAYERWISE_COST_LIMIT` (one half) × ``main_matvecs``, the products of the main analysis (its
    eigenvalues, trace and density), and more than :data:`LAYERWISE_FREE_PRODUCTS`.

    The cost in product columns is about n_i per block formed exactly, and min(steps, n_i) × (probes + 1)
    per SLQ block (its density and Lanczos extremes) plus one Hutchinson pass: all blocks share each
    block product (one product column per block column, pruned to the block where the operator's
    engine can), so K blocks by SLQ cost about K densities in product columns. Over the limit, the
    settings are lowered in this order until the estimate fits: blocks are formed exactly only where
    that is no dearer than SLQ on them (n_i ≤ steps × (probes + 1)), then ``probes`` go down to
    :data:`LAYERWISE_MIN_PROBES`, then ``steps`` (by 10) to :data:`LAYERWISE_MIN_STEPS`. The change
    is the returned note, shown in the report; still over the limit at the lowest settings, the step
    runs anyway and the note says so; when lowering would save nothing the settings stay as they were.

    Measured on the embedded default model (1,210 parameters in blocks of 1,040 and 170): both blocks
    exact take 1,210 products against the main analysis's 969 — about 1.5 times its time — so the
    default report forms the 170-parameter block exactly and runs SLQ on the 1,040-parameter one with 2
    probes and 70 steps (about 470 products, half the main analysis's time). No products are spent
    here: the block sizes come from ``hl.blocks(op)``.
    """
    from ..analysis.layerwise import DEFAULT_EXACT_BELOW
    from ..operators.blocks import blocks

    sizes = blocks(op).sizes
    full_steps = steps = min(settings.steps, int(op.shape[0]))
    probes, trace_matvecs, exact_below = settings.probes, max(int(settings.trace_matvecs), 2), DEFAULT_EXACT_BELOW
    budget = max(LAYERWISE_COST_LIMIT * int(main_matvecs), LAYERWISE_FREE_PRODUCTS)
    wanted = _layerwise_cost(sizes, steps, probes, trace_matvecs, exact_below)
    notes: list[str] = []

    def cost() -> int:
        return _layerwise_cost(sizes, steps, probes, trace_matvecs, exact_below)

    def exact_blocks(limit: int) -> list[bool]:
        return [_exact(size, limit) for size in sizes]

    if wanted > budget:
        exact_below = _exact_below(steps, probes)
        while cost() > budget and probes > min(LAYERWISE_MIN_PROBES, settings.probes):
            probes -= 1
            exact_below = _exact_below(steps, probes)
        while cost() > budget and steps > min(LAYERWISE_MIN_STEPS, full_steps):
            steps = max(steps - 10, min(LAYERWISE_MIN_STEPS, full_steps))
            exact_below = _exact_below(steps, probes)
        if cost() >= wanted:  # nothing to gain: keep the analysis's own settings
            steps, probes, exact_below = full_steps, settings.probes, DEFAULT_EXACT_BELOW
        if exact_blocks(exact_below) == exact_blocks(DEFAULT_EXACT_BELOW):  # the same blocks exact either way
            exact_below = DEFAULT_EXACT_BELOW
    if (steps, probes, exact_below) != (full_steps, settings.probes, DEFAULT_EXACT_BELOW):
        moved = sum(a != b for a, b in zip(exact_blocks(exact_below), exact_blocks(DEFAULT_EXACT_BELOW)))
        changed = [f"{name} {old:,} → {new:,}" for name, old, new in (
            ("exact_below", DEFAULT_EXACT_BELOW, exact_below), ("probes", settings.probes, probes),
            ("steps", full_steps, steps)) if old != new]
        if moved:
            changed[0] += f" ({moved} block{'s' if moved != 1 else ''} by SLQ instead of exactly)"
        notes.append(f"the analysis's own settings would take about {wanted:,} products for the {len(sizes)} "
                     f"block{'s' if len(sizes) != 1 else ''}, more than {LAYERWISE_COST_LIMIT:g} × the main "
                     f"analysis's {int(main_matvecs):,}; lowered {', '.join(changed)} (about {cost():,} products)"
                     + ("" if cost() <= budget else ", still above the limit at the lowest settings")
                     + "; hl.layerwise(op) computes the table with any settings")
    options = {"blocks": "auto", "steps": steps, "probes": probes, "seed": settings.seed,
               "trace_matvecs": trace_matvecs, "exact_below": exact_below}
    return options, notes


def layerwise_summary(result: Any, notes: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """A :class:`~hesslens.Layerwise` result as the ``layerwise`` entry of ``summary.json``: the table as one
    dict per block (every column; NaN becomes null when written), each block's ranges of θ and density,
    the settings, products, seconds and engine, ``notes`` (why the settings differ from the analysis's), the
    evidence-based ``diagnostics`` (:attr:`Layerwise.diagnostics`, block or null and message) and ``diagnosable``
    (whether the model is of the family those rules were learned on)."""
    from ..analysis.layer_features import in_family

    rows = [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
            for row in result.table.to_dict("records")]
    return {"table": rows, "ranges": [[list(r) for r in ranges] for ranges in result.blocks.ranges],
            "densities": {name: d.to_dict() for name, d in result.densities.items()},
            "settings": dict(result.settings), "matvecs": int(result.matvecs), "seconds": float(result.seconds),
            "engine": result.engine, "notes": list(notes),
            "diagnostics": [{"block": block, "message": message} for block, message in result.diagnostics],
            "diagnosable": bool(in_family(result.table))}


def layerwise_item(summary: Summary) -> Any:
    """The summary's ``layerwise`` entry as a :class:`~hesslens.Layerwise` (None when it has none): the table
    (nulls back to NaN), the densities, and a block view that keeps the names, ranges and parameter names but
    multiplies nothing (as :meth:`Layerwise.detached`) — what ``layerwise.png`` draws."""
    entry = summary.layerwise or {}
    rows = entry.get("table") or []
    if not rows:
        return None
    import pandas as pd

    from ..analysis.layerwise import COLUMNS, METRICS, Layerwise
    from ..linalg import SpectralDensity
    from ..operators.base import SymmetricOperator
    from ..operators.blocks import BlockView

    table = pd.DataFrame(rows, columns=[c for c in COLUMNS if any(c in r for r in rows)])
    for column in METRICS:
        if column in table:
            table[column] = table[column].astype(float)
    names = tuple(str(b) for b in table["block"])
    ranges = entry.get("ranges")
    if not ranges or len(ranges) != len(names):  # consecutive ranges from the sizes
        stops = np.cumsum([int(s) for s in table["n_params"]])
        ranges = [[[int(b - s), int(b)]] for b, s in zip(stops, table["n_params"])]
    ranges = tuple(tuple((int(a), int(b)) for a, b in r) for r in ranges)
    n = max(b for r in ranges for _, b in r)
    params = (tuple(tuple(p for p in str(row.get("parameters") or "").split(", ") if p) for row in rows)
              if all(row.get("parameters") for row in rows) else None)

    def refuse(v: torch.Tensor) -> torch.Tensor:
        raise InvalidInputError("this block view comes from a summary.json and multiplies nothing")

    view = BlockView(SymmetricOperator(n, refuse), names, ranges, params)
    densities = {name: SpectralDensity.from_dict(entry["densities"][name]) for name in names}
    return Layerwise(table, densities, view, int(entry.get("matvecs", 0)), float(entry.get("seconds", 0.0)),
                     entry.get("engine"), dict(entry.get("settings") or {}))
