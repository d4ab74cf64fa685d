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
   :func:`~hesslens.report.layerwise_entry.layerwise_options`);

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
from ..linalg.checks import announce
from ..linalg.eigen import WHICH, restart_plan
from .figures import save_density_png
from .hesd_figure import save_hesd_png
from .html import write_html
from ..outputs import OutputError, check_folder, staged_folder
from .layerwise_entry import layerwise_item, layerwise_options, layerwise_summary
from .summary import Summary

#: The analysis steps, in order, for progress displays (the last only with ``settings.layerwise``).
STEPS = ("extreme eigenvalues", "trace", "spectral density", "layer-wise Hessians")

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

    k, which = settings.k, settings.which
    # The whole analysis's products, announced before the first (the engine is chosen for all of them,
    # not for the eigenvalues that come first): one Lanczos basis per end, the trace, the density.
    basis = min(restart_plan(n, k, which, settings.tol, None, None, None).m, n)
    announce(op, 2 * basis + settings.trace_matvecs + settings.probes * steps)
    step(STEPS[0])
    t0 = time.perf_counter()
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
    # a distributed operator's data is this rank's shard: the summary describes the whole analysis set
    shards = getattr(op, "shards", None) if hessian else None
    data_d = {**(data_info or {}), "samples": (data.population or data.total) if data is not None else None,
              "batches": (sum(b for _, b in shards) if shards else len(data)) if data is not None else None,
              **({"shards": [list(s) for s in shards]} if shards else {}),
              "loss_value": getattr(op, "loss_value", None),
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
    block, see :func:`~hesslens.report.layerwise_entry.layerwise_item`).
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
