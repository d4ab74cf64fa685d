"""The analysis behind a report: extreme eigenvalues, trace and spectral density of one operator.

:func:`analyze_operator` runs, in order,

1. ``eigenvalues(op, k, which)`` (default k=1, which="both"): the requested extreme eigenvalues by
   restarted Lanczos, with residuals, kept in the order the Python API returns them (see
   :func:`eigen_order`); λ_max and λ_min come from them, and the end ``which`` leaves out
   ("largest" has no λ_min, "smallest" no λ_max) from one more ``k=1`` run;
2. ``trace(op, method="hutch++")``: tr(H) ± one standard error;
3. ``spectral_density(op, steps, probes)``: the SLQ density, ``steps`` capped at n (a Krylov space
   of H has at most n dimensions, more steps only pad);
4. ``hesslens.assess(density)``: the HESD type and, where they apply, the criteria re and Kh — from the
   density alone, no further products;
5. ``hesslens.layerwise(op, ...)`` (``settings.layerwise``, on by default; a ``HessianOperator`` only): the
   local Hessian H_ii of every block ("auto": every module owning parameters) on the *same* operator —
   no second operator, no second set of checks — with the analysis's own steps, probes, seed and
   trace products, lowered where those would cost more than half the main analysis's products (see
   :func:`layerwise_options`);

timing each step, and returns a :class:`~hesslens.report.summary.Summary`. It only multiplies by
the operator, so the model behind a ``HessianOperator`` is left exactly as it was (the operator
restores parameters, buffers, modes and RNG around every product). :func:`write_report` turns a
summary into the report folder: ``summary.json``, ``density.png``, ``hesd.png`` (the density in
Gabdullin's style, log scale over a symmetric axis, its type in the legend:
:func:`~hesslens.report.hesd_figure.hesd_figure`), ``layerwise.png`` (one panel per block,
:func:`~hesslens.report.layerwise_figures.plot_layerwise`; only when the summary has a layer-wise
table) and ``report.html``, written whole or not at all (:mod:`.output`).
"""

from __future__ import annotations

import dataclasses
import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from ..errors import InvalidInputError
from ..linalg import eigenvalues, spectral_density, trace
from ..linalg.eigen import WHICH
from .figures import save_density_png
from .hesd_figure import save_hesd_png
from .html import write_html
from ..outputs import OutputError, check_folder, staged_folder
from .summary import Summary

#: The analysis steps, in order, for progress displays (the last only with ``settings.layerwise``).
STEPS = ("extreme eigenvalues", "trace", "spectral density", "layer-wise Hessians")
#: The layer-wise step may take about this many times the main analysis's products (its eigenvalues,
#: trace and density together) before :func:`layerwise_options` lowers its settings.
LAYERWISE_COST_LIMIT = 0.5
#: ... but never below this many products (a step this small is not worth a coarser table).
LAYERWISE_FREE_PRODUCTS = 200
#: The lowest probes and steps :func:`layerwise_options` lowers to (never above the analysis's own).
LAYERWISE_MIN_PROBES, LAYERWISE_MIN_STEPS = 2, 20


@dataclass(frozen=True)
class AnalysisSettings:
    """Knobs of :func:`analyze_operator`; all estimators are seeded, so a run is reproducible."""

    seed: int = 0
    steps: int = 80
    probes: int = 10
    trace_matvecs: int = 100
    tol: float = 1e-6
    #: ``k`` and ``which`` of :func:`hesslens.eigenvalues`: how many extreme eigenvalues, at which end.
    k: int = 1
    which: str = "both"
    #: Also compute the layer-wise table (:func:`hesslens.layerwise`) on the same operator.
    layerwise: bool = True

    def __post_init__(self) -> None:
        if self.steps < 1 or self.probes < 1:
            raise InvalidInputError(f"steps and probes must be at least 1, got steps={self.steps}, probes={self.probes}")
        if not self.tol > 0:
            raise InvalidInputError(f"tol must be positive, got {self.tol}")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise InvalidInputError(f"k must be an integer of at least 1, got {self.k!r}")
        if self.which not in WHICH:
            raise InvalidInputError(f"which must be one of {', '.join(WHICH)}, got {self.which!r}")
        if not isinstance(self.layerwise, bool):
            raise InvalidInputError(f"layerwise must be True or False, got {self.layerwise!r}")


def eigen_order(k: int, which: str) -> str:
    """In words, the order in which :func:`hesslens.eigenvalues` returns ``k`` values at ``which`` end(s)."""
    largest = f"the {k} largest, descending (λ_max first)" if k > 1 else "λ_max"
    smallest = f"the {k} smallest, ascending (λ_min first)" if k > 1 else "λ_min"
    if which == "largest":
        return largest
    if which == "smallest":
        return smallest
    return f"{smallest}, then {largest}"


def eigen_positions(k: int, which: str) -> list[tuple[str, int]]:
    """(end, rank) of each value :func:`hesslens.eigenvalues` returns, in its order; rank 1 is the extreme."""
    ends = {"largest": ["largest"], "smallest": ["smallest"], "both": ["smallest", "largest"]}[which]
    return [(end, rank) for end in ends for rank in range(1, k + 1)]


def versions() -> dict[str, str]:
    from .. import __version__

    return {"hesslens": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "platform": platform.platform()}


def _eig(result: Any, i: int) -> dict[str, Any]:
    return {"value": float(result.values[i]), "residual": float(result.residuals[i]),
            "converged": bool(result.converged[i])}


def _engine_checks(op: Any) -> dict[str, Any]:
    """The engine report's tolerance and per-candidate checks (operators without one: nothing)."""
    report = getattr(op, "engine_report", None)
    if report is None:
        return {}
    d = report.to_dict()
    return {"tolerance": d["tolerance"], "checks": d["checks"]}


def analyze_operator(
    op: Any,
    settings: AnalysisSettings = AnalysisSettings(),
    *,
    model_info: dict[str, Any] | None = None,
    data_info: dict[str, Any] | None = None,
    extra_settings: dict[str, Any] | None = None,
    timings: dict[str, float] | None = None,
    progress: bool | None = None,
    on_step: Callable[[str], None] | None = None,
) -> Summary:
    """Measure λ_max, λ_min, tr(H) and the spectral density of ``op`` (a HessianOperator or any
    symmetric operator) and collect them with the settings, engine, timings and versions.

    ``timings`` are earlier steps (training, operator set-up) to record before this function's own;
    ``progress`` is passed to the progress bars of every step (None: only on a terminal); ``on_step`` is
    called with each step's name before it starts.
    """
    n = int(op.shape[0])
    steps = min(settings.steps, n)
    times = dict(timings or {})

    def step(name: str) -> None:
        if on_step is not None:
            on_step(name)

    step(STEPS[0])
    t0 = time.perf_counter()
    k, which = settings.k, settings.which
    requested = eigenvalues(op, k=k, which=which, tol=settings.tol, seed=settings.seed, progress=progress)
    runs = [(k, requested)]
    values = [{"end": end, "rank": rank, **_eig(requested, i)} for i, (end, rank) in enumerate(eigen_positions(k, which))]
    # The report always shows both ends: the one ``which`` leaves out comes from one more k=1 run.
    if which == "both":
        lambda_min, lambda_max = _eig(requested, 0), _eig(requested, k)
    else:
        other = eigenvalues(op, k=1, which="smallest" if which == "largest" else "largest", tol=settings.tol,
                            seed=settings.seed, progress=progress)
        runs.append((1, other))
        lambda_min, lambda_max = (_eig(other, 0), _eig(requested, 0)) if which == "largest" \
            else (_eig(requested, 0), _eig(other, 0))
    times["extreme_eigenvalues"] = time.perf_counter() - t0

    step(STEPS[1])
    t0 = time.perf_counter()
    tr = trace(op, num_matvecs=settings.trace_matvecs, method="hutch++", seed=settings.seed,
               progress=progress)
    times["trace"] = time.perf_counter() - t0

    step(STEPS[2])
    t0 = time.perf_counter()
    density = spectral_density(op, steps=steps, probes=settings.probes, seed=settings.seed, progress=progress)
    times["spectral_density"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    hesd = hesd_summary(density)
    times["hesd"] = hesd["seconds"] = time.perf_counter() - t0

    # A plain symmetric operator (a tensor, a SciPy LinearOperator) has no model, data or mode: a tensor's
    # own .data and .mode are not those, so they are read from a HessianOperator only.
    from ..operators import HessianOperator

    hessian = isinstance(op, HessianOperator)
    layerwise_entry: dict[str, Any] = {}
    if settings.layerwise and hessian:  # other operators have no model, hence no layers
        step(STEPS[3])
        t0 = time.perf_counter()
        main_matvecs = sum(r.matvecs for _, r in runs) + tr.matvecs + density.matvecs
        options, notes = layerwise_options(op, settings, main_matvecs)
        from ..analysis.layerwise import layerwise

        result = layerwise(op, **options, progress=progress)
        layerwise_entry = layerwise_summary(result, notes)
        times["layerwise"] = time.perf_counter() - t0
    run_settings = {**dataclasses.asdict(settings), "steps": steps, "mode": op.mode if hessian else None,
                    "layerwise": bool(layerwise_entry)}
    if steps != settings.steps:
        run_settings["steps_requested"] = settings.steps
    run_settings.update(extra_settings or {})
    data = op.data if hessian else None
    # The caller's description first (name, ...), then what the operator measured.
    names = list(getattr(op, "param_names", ()) or ())
    model = {**(model_info or {}), "analysed_parameters": n, "parameter_tensors": len(names),
             "dtype": str(getattr(op, "dtype", "float64")).replace("torch.", "")}
    module = getattr(op, "model", None)
    if names and module is not None and names != [name for name, _ in module.named_parameters()]:
        model["selected_parameters"] = names  # θ spans a part of the model (params=, or frozen parameters)
    data_d = {**(data_info or {}), "samples": getattr(data, "total", None),
              "batches": len(data) if data is not None else None, "loss_value": getattr(op, "loss_value", None),
              "reduction": getattr(op, "reduction", None), "reduction_source": getattr(op, "reduction_source", None),
              "order": getattr(op, "data_order", None)}
    return Summary(
        lambda_max=lambda_max,
        lambda_min=lambda_min,
        eigen={"k": k, "which": which, "order": eigen_order(k, which), "values": values,
               "matvecs": sum(r.matvecs for _, r in runs), "seconds": sum(r.seconds for _, r in runs),
               "restarts": sum(r.restarts for _, r in runs), "tol": requested.tol,
               "method": "thick-restart block Lanczos, full reorthogonalisation",
               "runs": [{"k": rk, "which": r.which, "matvecs": r.matvecs, "seconds": r.seconds,
                         "restarts": r.restarts} for rk, r in runs]},
        trace={"estimate": tr.estimate, "stderr": tr.stderr, "method": tr.method, "matvecs": tr.matvecs,
               "seconds": tr.seconds},
        density=density.to_dict(),
        settings=run_settings,
        engine={"name": getattr(op, "engine", type(op).__name__), "reason": getattr(op, "engine_reason", ""),
                "timings": dict(getattr(op, "engine_timings", {}) or {}),
                "setup_seconds": getattr(op, "setup_seconds", None),
                **_engine_checks(op)},
        timings=times,
        model=model,
        data=data_d,
        versions=versions(),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        hesd=hesd,
        layerwise=layerwise_entry,
    )


def hesd_summary(density: Any) -> dict[str, Any]:
    """:func:`hesslens.assess` on the analysis's own density (no further products): type, criteria where
    they apply, verdict and warnings, as the ``hesd`` entry of ``summary.json``."""
    from ..analysis import assess

    a = assess(density)
    t, c = a.hesd_type, a.criteria
    return {"type": t.kind, "decisive": t.decisive, "balance": t.balance, "balance_stderr": t.balance_stderr,
            "scale": t.scale, "margin": t.margin, "qs_floor": t.qs_floor, "qs_relative": t.qs_relative,
            "reason": t.reason, "applicable": a.applicable,
            "criteria": None if c is None else {"re": c.re, "kh": c.kh, "re_stderr": c.re_stderr,
                                                "kh_stderr": c.kh_stderr, "n": c.n, "undefined": c.undefined},
            "verdict": a.verdict, "warnings": list(a.warnings)}


def hesd_item(summary: Summary) -> Any:
    """The summary's density as :func:`hesslens.assess` types it with the thresholds its ``hesd`` entry
    records (the defaults when it has none: a summary written before the entry existed), labelled with the
    model's name: what ``hesd.png`` draws, so its legend names the type the report states."""
    from ..analysis import assess

    h = summary.hesd or {}
    options = {key: h[key] for key in ("margin", "qs_floor", "qs_relative") if h.get(key) is not None}
    return assess(summary.spectral_density, label=str(summary.model.get("name", "model")), **options)


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


#: What a report folder may hold: everything :func:`write_report` writes (``model.pt`` is the trained
#: default model that ``hesslens analyze`` saves with its report; ``layerwise.png`` is written when the
#: summary has a layer-wise table).
REPORT_FILES = ("summary.json", "density.png", "hesd.png", "layerwise.png", "report.html", "model.pt")


@dataclass(frozen=True)
class ReportFiles:
    """Where :func:`write_report` put things, and the summary as written."""

    folder: Path
    summary_json: Path
    density_png: Path
    report_html: Path
    summary: Summary
    hesd_png: Path | None = None
    #: ``layerwise.png``, or None when the summary has no layer-wise table (``--no-layerwise``).
    layerwise_png: Path | None = None


def check_report_folder(folder: str | Path) -> Path:
    """Refuse ``folder`` now if :func:`write_report` could not later replace it safely: a symbolic link
    (or one inside it), files that are not a report's, or no write permission. Creates nothing."""
    return check_folder(folder, whole=True, owned=REPORT_FILES, what="report folder")


def write_report(summary: Summary, folder: str | Path, *, started: float | None = None,
                 extra: Mapping[str, Callable[[Path], Any]] | None = None) -> ReportFiles:
    """Write ``summary.json``, ``density.png``, ``hesd.png``, ``layerwise.png`` (when the summary has a
    layer-wise table) and ``report.html`` as ``folder``, all at once.

    The files are written into a staging folder beside ``folder`` that then replaces it (see
    :mod:`hesslens.outputs`): an error or Ctrl-C while writing leaves the previous report whole,
    and nothing is written through a symbolic link. ``extra`` maps more file names of the report
    (from :data:`REPORT_FILES`) to functions writing them to a given path. ``started`` is a
    ``time.perf_counter()`` reading taken when the whole job began; the summary's ``timings.total`` is
    the wall time from then to the end of the figures (the sum of the steps without it). ``hesd.png`` is
    the density drawn by :func:`~hesslens.report.hesd_figure.hesd_figure`, typed with the thresholds
    recorded in the summary's ``hesd`` entry (see :func:`hesd_item`); ``layerwise.png`` is
    :func:`~hesslens.report.layerwise_figures.plot_layerwise` of its ``layerwise`` entry (one panel per
    block, see :func:`layerwise_item`).
    """
    out = Path(folder)
    unknown = sorted(set(extra or {}) - set(REPORT_FILES))
    if unknown:
        raise InvalidInputError(f"write_report: extra files must be among {', '.join(REPORT_FILES)}, got {unknown}")
    t0 = time.perf_counter()
    try:
        with staged_folder(out, whole=True, owned=REPORT_FILES, what="report folder") as stage:
            for name, write in (extra or {}).items():
                write(stage / name)
            png = save_density_png(summary.spectral_density, stage / "density.png",
                                   lambda_min=summary.lambda_min["value"], lambda_max=summary.lambda_max["value"],
                                   lambda_min_residual=summary.lambda_min.get("residual"),
                                   lambda_max_residual=summary.lambda_max.get("residual"),
                                   eigenvalues=[v["value"] for v in summary.eigen.get("values", ())], title=None)
            hesd_png = save_hesd_png(hesd_item(summary), stage / "hesd.png")
            layerwise_png = None
            if (item := layerwise_item(summary)) is not None:
                layerwise_png = stage / "layerwise.png"
                item.plot().savefig(layerwise_png, dpi=110, format="png")
            times = {**summary.timings, "report": time.perf_counter() - t0}
            times.pop("total", None)
            times["total"] = (time.perf_counter() - started) if started is not None else sum(times.values())
            summary = dataclasses.replace(summary, timings=times)
            summary.to_json(stage / "summary.json")
            write_html(summary, stage / "report.html", png_path=png, hesd_png_path=hesd_png,
                       layerwise_png_path=layerwise_png)
    except OSError as exc:  # a full disk, a folder made read-only meanwhile: one line, nothing half-written
        raise OutputError(f"writing the report folder {str(out)!r} failed ({exc}); the previous report, if any, "
                          "is unchanged") from exc
    return ReportFiles(out, out / "summary.json", out / "density.png", out / "report.html", summary, out / "hesd.png",
                       out / "layerwise.png" if layerwise_png is not None else None)
