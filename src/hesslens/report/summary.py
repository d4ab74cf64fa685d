"""The ``summary.json`` document of a report: a versioned, self-describing record of one analysis.

Schema ``hesslens.summary/1`` (all eigenvalue-like numbers in the units of the loss per squared
parameter unit; every time in seconds)::

    {
      "schema": "hesslens.summary/1",
      "created": ISO-8601 UTC time,
      "lambda_max": {"value", "residual", "converged"},   # largest eigenvalue of H
      "lambda_min": {"value", "residual", "converged"},   # smallest (most negative) eigenvalue
      "eigen": {"k", "which", "order",                     # hesslens.eigenvalues(op, k, which)
                "values": [{"end", "rank", "value", "residual", "converged"}, ...],   # in "order"
                "matvecs", "seconds", "restarts", "tol", "method",  # totals over "runs"
                "runs": [{"k", "which", "matvecs", "seconds", "restarts"}, ...]},
      "trace": {"estimate", "stderr", "method", "matvecs", "seconds"},
      "density": SpectralDensity.to_dict(),   # nodes, weights (probes × steps), its own schema
      "settings": {"seed", "steps", "probes", "trace_matvecs", "tol", "k", "which", "mode", "loss", "params"},
      "engine": {"name", "reason", "timings", "setup_seconds",
                 "tolerance", "checks": [{"label", "status", "reason", "seconds_per_column", "relative_error"}]},
      "timings": {step: seconds, ..., "total": seconds},
      "model": {"name", "parameters", "analysed_parameters", ...},
      "data": {"name", "samples", "batches", "loss_value", "reduction", "reduction_source", "order",
               "shards": [[samples, batches] per rank]},   # "shards" only from a torch.distributed run
      "versions": {"hesslens", "torch", "numpy", "python", "platform"},
      "hesd": {"type", "decisive", "balance", "balance_stderr", "scale", "margin", "qs_floor", "qs_relative",
               "reason", "applicable", "criteria": {"re", "kh", "re_stderr", "kh_stderr", "n", "undefined"} | null,
               "verdict", "warnings", "seconds"},  # hesslens.assess on the density (absent in older files)
      "layerwise": {"table": [{"block", "type", "n_params", "exact", "lambda_max", "lambda_min", "trace",
                               "trace_stderr", "neg_mass", "condition", …, "hesd_type", "warnings", …}, ...],
                    "ranges": [[[start, stop], ...], ...],   # each block's slices of θ, in table order
                    "densities": {block: SpectralDensity.to_dict()},
                    "settings", "matvecs", "seconds", "engine", "notes",
                    "diagnostics": [{"block", "message"}, ...], "diagnosable"}   # absent in older files
    }

``residual`` is the Lanczos residual norm ‖H y − θ y‖, a bound on the distance from the Ritz value θ
to the nearest eigenvalue. ``eigen.values`` lists the requested eigenvalues in the order
``hesslens.eigenvalues`` returns them, each naming its end (``"smallest"``/``"largest"``) and rank (1 is
λ_min or λ_max); ``eigen.order`` says that order in words. ``lambda_max`` and ``lambda_min`` are always
present: the end ``which`` leaves out comes from a second ``k=1`` run (listed in ``eigen.runs``).
``settings.params`` holds the ``--params`` patterns (``null``: every trainable parameter) and
``model.selected_parameters`` the names they selected (only when θ spans part of the model).
Summaries written before ``k``/``which`` existed lack those keys; readers treat them as k=1, "both".

``layerwise`` is :func:`hesslens.layerwise` on the analysis's own operator (see
:func:`hesslens.report.analysis.layerwise_summary`): ``table`` holds one dict per block with every
column of :attr:`hesslens.Layerwise.table` (:data:`hesslens.analysis.layerwise.COLUMNS`: block name,
module type, size, whether it was formed exactly, λ_max and λ_min with residuals, trace ± stderr, the
density metrics with their standard errors, Kh, re, the balance C, the HESD type, the numerical
warnings joined by "; ", the module classes and parameter names); ``densities`` each block's spectral
density (exact or SLQ) and ``settings`` the options it ran with, ``notes`` why they differ from the
analysis's own, if they do; ``diagnostics`` the evidence-based diagnoses (:attr:`hesslens.Layerwise.diagnostics`,
rules learned by the ``layerwise`` study) and ``diagnosable`` whether the model is of the family they were
learned on (three Linear blocks). It is absent (``{}`` once loaded) in summaries written before it existed,
with ``settings.layerwise`` false, and for operators that are not a model's ``HessianOperator``; it is
not written when empty.

Non-finite numbers (a standard error from one sample, an undefined metric) are written as ``null`` so
that the file is strict JSON.

A reader must check ``schema``: :func:`load_summary` refuses documents of another kind or of a
later major version, instead of misreading them.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError
from ..linalg import SpectralDensity

SCHEMA = "hesslens.summary/1"
REQUIRED = ("lambda_max", "lambda_min", "eigen", "trace", "density", "settings", "engine", "timings",
            "model", "data", "versions")


def _strict(value: Any) -> Any:
    """Recursively turn NaN/Inf into None and NumPy scalars into Python ones (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy / torch scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(frozen=True)
class Summary:
    """One analysis, as written to ``summary.json``. See the module docstring for every field."""

    lambda_max: dict[str, Any]
    lambda_min: dict[str, Any]
    eigen: dict[str, Any]
    trace: dict[str, Any]
    density: dict[str, Any]
    settings: dict[str, Any]
    engine: dict[str, Any]
    timings: dict[str, float]
    model: dict[str, Any]
    data: dict[str, Any]
    versions: dict[str, str]
    created: str = ""
    schema: str = field(default=SCHEMA)
    hesd: dict[str, Any] = field(default_factory=dict)
    layerwise: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not d["layerwise"]:  # optional: written only when the analysis computed the table
            del d["layerwise"]
        # schema first: the one field a reader needs before anything else
        return _strict({"schema": d.pop("schema"), **d})

    def to_json(self, path: str | Path | None = None, indent: int | None = 2) -> str:
        text = json.dumps(self.to_dict(), indent=indent, allow_nan=False)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Summary":
        schema = d.get("schema") if isinstance(d, dict) else None
        if not isinstance(schema, str) or not schema.startswith("hesslens.summary/"):
            raise InvalidInputError(f"not a hesslens summary (schema {schema!r}, expected {SCHEMA!r})")
        if schema != SCHEMA:
            raise InvalidInputError(f"unsupported summary version {schema!r}; this hesslens reads {SCHEMA!r}")
        missing = [k for k in REQUIRED if k not in d]
        if missing:
            raise InvalidInputError(f"summary is missing field(s) {', '.join(missing)}")
        return cls(**{k: d[k] for k in REQUIRED}, created=str(d.get("created", "")), schema=schema,
                   hesd=dict(d.get("hesd") or {}), layerwise=dict(d.get("layerwise") or {}))

    @property
    def spectral_density(self) -> SpectralDensity:
        return SpectralDensity.from_dict(self.density)


def load_summary(source: str | Path | dict[str, Any]) -> Summary:
    """Read a ``summary.json`` (a path, its text, or the parsed dict) and validate its schema."""
    if isinstance(source, dict):
        return Summary.from_dict(source)
    text = str(source)
    if not text.lstrip().startswith("{"):
        path = Path(text)
        if path.is_dir():
            path = path / "summary.json"
        text = path.read_text(encoding="utf-8")
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"summary is not valid JSON: {exc}") from None
    return Summary.from_dict(parsed)
