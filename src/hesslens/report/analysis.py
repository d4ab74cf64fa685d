"""The analysis behind a report: extreme eigenvalues, trace and spectral density of one operator.

:func:`analyze_operator` runs, in order,

1. ``eigenvalues(op, k=1, which="both")``: λ_min and λ_max by restarted Lanczos, with residuals;
2. ``trace(op, method="hutch++")``: tr(H) ± one standard error;
3. ``spectral_density(op, steps, probes)``: the SLQ density, ``steps`` capped at n (a Krylov space
   of H has at most n dimensions, more steps only pad);

timing each step, and returns a :class:`~hesslens.report.summary.Summary`. It only multiplies by
the operator, so the model behind a ``HessianOperator`` is left exactly as it was (the operator
restores parameters, buffers, modes and RNG around every product). :func:`write_report` turns a
summary into the report folder: ``summary.json``, ``density.png`` and ``report.html``, written whole
or not at all (:mod:`.output`).
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
from .figures import save_density_png
from .html import write_html
from ..outputs import OutputError, check_folder, staged_folder
from .summary import Summary

#: The analysis steps, in order, for progress displays.
STEPS = ("extreme eigenvalues", "trace", "spectral density")


@dataclass(frozen=True)
class AnalysisSettings:
    """Knobs of :func:`analyze_operator`; all estimators are seeded, so a run is reproducible."""

    seed: int = 0
    steps: int = 80
    probes: int = 10
    trace_matvecs: int = 100
    tol: float = 1e-6

    def __post_init__(self) -> None:
        if self.steps < 1 or self.probes < 1:
            raise InvalidInputError(f"steps and probes must be at least 1, got steps={self.steps}, probes={self.probes}")
        if not self.tol > 0:
            raise InvalidInputError(f"tol must be positive, got {self.tol}")


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
    ``progress`` is passed to the Lanczos progress bars (None: only on a terminal); ``on_step`` is
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
    extremes = eigenvalues(op, k=1, which="both", tol=settings.tol, seed=settings.seed, progress=progress)
    times["extreme_eigenvalues"] = time.perf_counter() - t0

    step(STEPS[1])
    t0 = time.perf_counter()
    tr = trace(op, num_matvecs=settings.trace_matvecs, method="hutch++", seed=settings.seed)
    times["trace"] = time.perf_counter() - t0

    step(STEPS[2])
    t0 = time.perf_counter()
    density = spectral_density(op, steps=steps, probes=settings.probes, seed=settings.seed, progress=progress)
    times["spectral_density"] = time.perf_counter() - t0

    run_settings = {**dataclasses.asdict(settings), "steps": steps, "mode": getattr(op, "mode", None)}
    if steps != settings.steps:
        run_settings["steps_requested"] = settings.steps
    run_settings.update(extra_settings or {})
    data = getattr(op, "data", None)
    # The caller's description first (name, ...), then what the operator measured.
    model = {**(model_info or {}), "analysed_parameters": n,
             "parameter_tensors": len(getattr(op, "param_names", ()) or ()),
             "dtype": str(getattr(op, "dtype", "float64")).replace("torch.", "")}
    data_d = {**(data_info or {}), "samples": getattr(data, "total", None),
              "batches": len(data) if data is not None else None, "loss_value": getattr(op, "loss_value", None),
              "reduction": getattr(op, "reduction", None), "reduction_source": getattr(op, "reduction_source", None),
              "order": getattr(op, "data_order", None)}
    return Summary(
        lambda_max=_eig(extremes, 1),
        lambda_min=_eig(extremes, 0),
        eigen={"matvecs": extremes.matvecs, "seconds": extremes.seconds, "restarts": extremes.restarts,
               "tol": extremes.tol, "method": "thick-restart block Lanczos, full reorthogonalisation"},
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
    )


#: What a report folder may hold: everything :func:`write_report` writes (``model.pt`` is the trained
#: default model that ``hesslens analyze`` saves with its report).
REPORT_FILES = ("summary.json", "density.png", "report.html", "model.pt")


@dataclass(frozen=True)
class ReportFiles:
    """Where :func:`write_report` put things, and the summary as written."""

    folder: Path
    summary_json: Path
    density_png: Path
    report_html: Path
    summary: Summary


def check_report_folder(folder: str | Path) -> Path:
    """Refuse ``folder`` now if :func:`write_report` could not later replace it safely: a symbolic link
    (or one inside it), files that are not a report's, or no write permission. Creates nothing."""
    return check_folder(folder, whole=True, owned=REPORT_FILES, what="report folder")


def write_report(summary: Summary, folder: str | Path, *, started: float | None = None,
                 extra: Mapping[str, Callable[[Path], Any]] | None = None) -> ReportFiles:
    """Write ``summary.json``, ``density.png`` and ``report.html`` as the folder ``folder``, all at once.

    The files are written into a staging folder beside ``folder`` that then replaces it (see
    :mod:`hesslens.outputs`): an error or Ctrl-C while writing leaves the previous report whole,
    and nothing is written through a symbolic link. ``extra`` maps more file names of the report
    (from :data:`REPORT_FILES`) to functions writing them to a given path. ``started`` is a
    ``time.perf_counter()`` reading taken when the whole job began; the summary's ``timings.total`` is
    the wall time from then to the end of the figures (the sum of the steps without it).
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
                                   title=None)
            times = {**summary.timings, "report": time.perf_counter() - t0}
            times.pop("total", None)
            times["total"] = (time.perf_counter() - started) if started is not None else sum(times.values())
            summary = dataclasses.replace(summary, timings=times)
            summary.to_json(stage / "summary.json")
            write_html(summary, stage / "report.html", png_path=png)
    except OSError as exc:  # a full disk, a folder made read-only meanwhile: one line, nothing half-written
        raise OutputError(f"writing the report folder {str(out)!r} failed ({exc}); the previous report, if any, "
                          "is unchanged") from exc
    return ReportFiles(out, out / "summary.json", out / "density.png", out / "report.html", summary)
