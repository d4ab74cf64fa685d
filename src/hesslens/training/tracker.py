"""Curvature measured along training: ``Tracker``.

Every N epochs (or steps) the tracker builds a :class:`~hesslens.HessianOperator` on a *fixed*
analysis subset and records the chosen measurements, so that trajectories across checkpoints are
comparable: the same samples, the same trace probes and the same SLQ probes (fixed ``seed``) at
every checkpoint.

λ_max and λ_min are warm-started from the previous checkpoint's eigenvector (``v0=``). Between
nearby checkpoints the top eigenvector moves little, so Lanczos converges in a fraction of the
products of a cold start (``benchmarks/tracking.py`` measures the saving).

Under full-batch gradient descent with step η, λ_max rises to about 2/η and hovers there (the
edge of stability, Cohen et al. 2021, arXiv 2103.00065); :meth:`Tracker.plot_lambda_max` draws
that line when ``lr`` is given.

The measurement ``"hesd"`` follows the unified procedure of Gabdullin (2025) along training: each
checkpoint's SLQ density (the same fixed probes as ``"density"``, computed once when both are asked
for) is typed MP/MN/QS by :func:`hesslens.hesd_type` and given the criteria re and Kh by
:func:`hesslens.hesd_criteria` where they apply. Quasi-singularity is a collapse of the spectral
scale, so the relative test needs a reference: by default the first checkpoint's density
(``hesd_reference="first"``), against which every later checkpoint's scale max|λ| is compared.

The measurement ``"layerwise"`` (local Hessians per block, Bolshim & Kugaevskikh 2025) is
:mod:`hesslens.training.layerwise_tracking`.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ..analysis import hesd_criteria, hesd_type
from ..analysis.layerwise import Layerwise
from ..errors import InvalidInputError
from ..linalg import SpectralDensity, eigenvalues, spectral_density, trace
from ..operators import HessianOperator
from ..operators.distributed import check_flag, secondary_rank
from . import layerwise_tracking
from .loggers import check_logger, make_logger

if TYPE_CHECKING:
    import pandas as pd

MEASUREMENTS = ("lambda_max", "lambda_min", "trace", "density", "hesd", "layerwise")
#: The columns the measurement "hesd" adds to every row.
HESD_COLUMNS = ("hesd_type", "hesd_decisive", "hesd_balance", "hesd_balance_stderr", "hesd_scale",
                "hesd_reference_scale", "re", "kh")
#: Keys of ``hesd_options``: those of hesd_type (margin, qs_floor, qs_relative) and hesd_criteria (n);
#: zero_tol goes to both.
_TYPE_OPTIONS = ("margin", "qs_floor", "qs_relative", "zero_tol")
_CRITERIA_OPTIONS = ("n", "zero_tol")


def evenly_spaced(x: torch.Tensor, y: torch.Tensor, n: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` evenly spaced samples of (x, y) (all when there are fewer), as Kaur et al. measure λ_max."""
    if len(x) <= n:
        return x, y
    idx = torch.linspace(0, len(x) - 1, n).round().long()
    return x[idx], y[idx]


class Tracker:
    """Record curvature every ``every`` epochs (``unit="epoch"``) or optimisation steps (``unit="step"``).

    Use it as a training callback (``hl.train(..., callbacks=[tracker])``), call
    ``tracker.step(model, epoch=..., step=...)`` from a plain PyTorch loop, or use it as a context
    manager, which closes the loggers on exit. ``history`` is a pandas DataFrame, one row per
    checkpoint; ``densities`` keeps each checkpoint's :class:`SpectralDensity` (as ``(row, density)``
    pairs, whenever ``"density"`` or ``"hesd"`` is measured).

    Parameters
    ----------
    loss_fn, data, batch_loss, params, mode : as for :class:`HessianOperator`; ``data`` is the fixed
        analysis set (see :func:`evenly_spaced`).
    measure : any of ``"lambda_max"``, ``"lambda_min"``, ``"trace"``, ``"density"``, ``"hesd"``,
        ``"layerwise"``.
        ``"hesd"`` types the checkpoint's SLQ density (the same fixed probes as ``"density"``, computed
        once for both) and records the columns ``hesd_type`` ("MP", "MN" or "QS", by hesslens's
        criterion, :func:`hesslens.hesd_type`), ``hesd_decisive`` (|C| beyond the margin; always True
        for QS), ``hesd_balance`` and ``hesd_balance_stderr`` (the spectral-mass balance
        C = (P − N)/(P + N), P = Σ_{λ>0} λ w, N = Σ_{λ<0} |λ| w, mean and standard error over probes),
        ``hesd_scale`` (max|λ| carrying weight), ``hesd_reference_scale`` (the scale of the reference
        of the relative quasi-singularity test, NaN without one), and ``re`` = |min λ / max λ| and
        ``kh`` = Σ_{λ<0} (|λ| w)^n / Σ_{λ>0} (λ w)^n (:func:`hesslens.hesd_criteria`, averaged over
        probes). re and Kh are NaN where the criteria do not apply (MN) or are undefined; for QS they are
        recorded, but the type says that they are unreliable. The string column ``hesd_type`` is never
        sent to ``loggers`` (they get the numeric values only; ``hesd_decisive`` as 0/1).
        ``"layerwise"`` runs :func:`hesslens.layerwise` on the checkpoint's operator with ``slq_steps``,
        ``slq_probes``, ``trace_matvecs``, ``tol``, ``seed`` and ``hesd_options``, keeps the results in
        ``tracker.layerwise`` as ``(row index, result)`` pairs (detached from the operator), their tables in
        :attr:`layerwise_history`, and logs each numeric metric as ``layerwise/<block>/<metric>``.
    tol : relative residual tolerance of the eigenvalue solves.
    trace_matvecs, slq_steps, slq_probes : budgets of the trace and density estimates.
    warm_start : start each eigenvalue solve from the previous checkpoint's eigenvector.
    lr : the learning rate, recorded with every row and used for the 2/η line.
    hesd_reference : the reference of the relative quasi-singularity test of ``"hesd"``
        (QS when the scale falls below ``qs_relative`` × the reference scale): ``"first"`` (default) —
        the density of the first checkpoint (the first with a scale > 0) for all later ones; ``None`` —
        no reference, only the absolute floor ``qs_floor``; or a number > 0, a given scale.
    layerwise_options : ``blocks`` (default "auto"), ``exact_below`` and ``rel_tol`` of
        :func:`hesslens.layerwise` for ``"layerwise"``; None: their defaults.
    hesd_options : keyword arguments of the type and criteria of ``"hesd"`` (and of ``"layerwise"``'s
        per-block types and criteria): ``margin``, ``qs_floor``,
        ``qs_relative`` (:func:`hesslens.hesd_type`), ``n`` (Kh's exponent, :func:`hesslens.hesd_criteria`)
        and ``zero_tol`` (both); None: their defaults.
    loggers : objects with ``log(metrics: dict, step: int)`` and ``close()``, or the names
        ``"tensorboard"`` / ``"mlflow"`` (used when the package is installed).
    distributed : as for :class:`HessianOperator`. Under ``torchrun`` (a process group of several ranks,
        ``distributed`` not False) every rank records the same rows from its own shard of ``data``, and
        only rank 0 logs: the other ranks check their ``loggers`` entries but never call them (nor build
        them, where the process group exists when the tracker is made). A model wrapped in
        ``DistributedDataParallel`` can be passed as it is; every rank analyses rank 0's buffers.
    """

    def __init__(
        self,
        loss_fn: Callable | None = None,
        data: Any = None,
        *,
        every: int = 1,
        unit: str = "epoch",
        measure: Sequence[str] = ("lambda_max",),
        tol: float = 1e-4,
        trace_matvecs: int = 30,
        slq_steps: int = 40,
        slq_probes: int = 4,
        seed: int = 0,
        mode: str = "eval",
        batch_loss: Callable | None = None,
        params: Any = None,
        warm_start: bool = True,
        lr: float | None = None,
        hesd_reference: str | float | None = "first",
        hesd_options: dict[str, Any] | None = None,
        layerwise_options: dict[str, Any] | None = None,
        loggers: Iterable[Any] = (),
        log_dir: str | None = None,
        distributed: bool | None = None,
    ):
        unknown = [m for m in measure if m not in MEASUREMENTS]
        if unknown:
            raise InvalidInputError(f"measure has unknown entries {unknown}; choose from {MEASUREMENTS}")
        if unit not in ("epoch", "step"):
            raise InvalidInputError(f"unit must be 'epoch' or 'step', got {unit!r}")
        if every < 1:
            raise InvalidInputError(f"every must be a positive integer, got {every}")
        if data is None:
            raise InvalidInputError("data is None: pass the fixed analysis set (e.g. evenly_spaced(x_train, y_train))")
        self.hesd_reference = _hesd_reference(hesd_reference)
        self.hesd_options = _hesd_options(hesd_options)
        self.layerwise_options = layerwise_tracking.check_options(layerwise_options)
        self.loss_fn, self.data, self.batch_loss, self.params, self.mode = loss_fn, data, batch_loss, params, mode
        self.every, self.unit, self.measure = every, unit, tuple(measure)
        self.tol, self.trace_matvecs, self.slq_steps, self.slq_probes = tol, trace_matvecs, slq_steps, slq_probes
        self.seed, self.warm_start, self.lr = seed, warm_start, lr
        self.every_step = unit == "step"
        self.distributed = check_flag(distributed)
        specs = [check_logger(spec) for spec in loggers]
        # Every rank of a distributed tracker computes the same numbers: one of them writes them.
        self.loggers = [] if secondary_rank(distributed) else [make_logger(spec, log_dir) for spec in specs]
        self.rows: list[dict[str, Any]] = []
        self.densities: list[tuple[int, SpectralDensity]] = []
        self.layerwise: list[tuple[int, Layerwise]] = []
        # The reference scale of the relative QS test: a given number, else set at the first checkpoint.
        self._hesd_scale: float | None = self.hesd_reference if isinstance(self.hesd_reference, float) else None
        self._hesd_thresholds = (math.nan, math.nan, math.nan)  # margin, qs_floor, qs_relative as applied
        self._vectors: dict[str, np.ndarray] = {}
        self._calls = 0
        self._engine = "auto"

    # -- recording ---------------------------------------------------------------------------------
    def __call__(self, model: nn.Module, epoch: int | None = None, step: int | None = None,
                 metrics: dict[str, Any] | None = None) -> dict[str, Any] | None:
        return self.step(model, epoch=epoch, step=step, metrics=metrics)

    def step(self, model: nn.Module, epoch: int | None = None, step: int | None = None,
             metrics: dict[str, Any] | None = None, force: bool = False) -> dict[str, Any] | None:
        """Record a checkpoint if one is due (every ``every`` calls); returns the row or None."""
        counter = (step if self.unit == "step" else epoch)
        if counter is None:
            counter = self._calls
        self._calls += 1
        if not force and counter % self.every != 0:
            return None
        return self.record(model, epoch=epoch, step=step, metrics=metrics)

    def record(self, model: nn.Module, epoch: int | None = None, step: int | None = None,
               metrics: dict[str, Any] | None = None) -> dict[str, Any]:
        """Measure now, whatever the schedule."""
        t0 = time.perf_counter()
        # The engine timed at the first checkpoint is reused: the model's structure does not change.
        op = HessianOperator(model, self.loss_fn, self.data, params=self.params, mode=self.mode,
                             batch_loss=self.batch_loss, engine=self._engine, expected_matvecs=self._expected_matvecs(),
                             distributed=self.distributed)
        self._engine = op.engine
        row: dict[str, Any] = {"epoch": epoch, "step": step, "lr": self.lr, "analysis_loss": op.loss_value}
        row.update({k: v for k, v in (metrics or {}).items() if np.isscalar(v)})
        for which, key in (("largest", "lambda_max"), ("smallest", "lambda_min")):
            if key in self.measure:
                v0 = self._vectors.get(key) if self.warm_start else None
                r = eigenvalues(op, k=1, which=which, tol=self.tol, seed=self.seed, v0=v0)
                self._vectors[key] = r.vectors[:, 0]
                row.update({key: float(r.values[0]), f"{key}_residual": float(r.residuals[0]),
                            f"{key}_matvecs": r.matvecs})
        if "trace" in self.measure:
            t = trace(op, self.trace_matvecs, seed=self.seed)
            row.update({"trace": t.estimate, "trace_stderr": t.stderr})
        if "density" in self.measure or "hesd" in self.measure:
            sd = spectral_density(op, steps=self.slq_steps, probes=self.slq_probes, seed=self.seed)
            self.densities.append((len(self.rows), sd))
            if "hesd" in self.measure:
                row.update(self._hesd_columns(sd))
        scalars: dict[str, float] = {}
        if "layerwise" in self.measure:
            result, scalars = layerwise_tracking.measure(op, self)
            self.layerwise.append((len(self.rows), result.detached()))
        row["matvecs"] = op.matvecs
        row["seconds"] = time.perf_counter() - t0
        self.rows.append(row)
        counter = step if step is not None else (epoch if epoch is not None else len(self.rows) - 1)
        for logger in [] if op.shards is not None and secondary_rank(self.distributed) else self.loggers:
            logger.log({**numeric(row), **scalars}, int(counter))
        return row

    def _hesd_columns(self, sd: SpectralDensity) -> dict[str, Any]:
        """Type and criteria of one checkpoint's density (the columns of the measurement "hesd")."""
        type_options = {k: v for k, v in self.hesd_options.items() if k in _TYPE_OPTIONS}
        kind = hesd_type(sd, reference=self._hesd_scale, **type_options)
        if self.hesd_reference == "first" and self._hesd_scale is None and kind.scale > 0:
            # The first checkpoint is its own reference (the relative test cannot fire on it).
            self._hesd_scale = kind.scale
            kind = hesd_type(sd, reference=self._hesd_scale, **type_options)
        self._hesd_thresholds = (kind.margin, kind.qs_floor, kind.qs_relative)
        nan = float("nan")
        re = kh = nan
        if kind.kind != "MN":
            c = hesd_criteria(sd, **{k: v for k, v in self.hesd_options.items() if k in _CRITERIA_OPTIONS})
            re, kh = c.re, c.kh
        return {"hesd_type": kind.kind, "hesd_decisive": bool(kind.decisive), "hesd_balance": kind.balance,
                "hesd_balance_stderr": kind.balance_stderr, "hesd_scale": kind.scale,
                "hesd_reference_scale": nan if kind.reference_scale is None else kind.reference_scale,
                "re": re, "kh": kh}

    def _expected_matvecs(self) -> int:
        eig = 30 * sum(m in self.measure for m in ("lambda_max", "lambda_min"))
        slq = "density" in self.measure or "hesd" in self.measure
        blocks = layerwise_tracking.expected_matvecs(self) if "layerwise" in self.measure else 0
        return eig + self.trace_matvecs * ("trace" in self.measure) + self.slq_steps * self.slq_probes * slq + blocks

    @property
    def history(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.rows)

    @property
    def layerwise_history(self) -> pd.DataFrame:
        """The per-block tables of ``"layerwise"``, long form: one row per checkpoint and block, columns
        ``checkpoint`` (the row of :attr:`history`), ``epoch``, ``step``, then the columns of
        :attr:`hesslens.Layerwise.table` (``block``, ``type``, ``n_params``, the metrics, …)."""
        return layerwise_tracking.history(self.layerwise, self.rows)

    # -- context manager ----------------------------------------------------------------------------
    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        for logger in self.loggers:
            logger.close()

    # -- figures -----------------------------------------------------------------------------------
    def plot_lambda_max(self, ax: Any = None, x: str | None = None):
        """λ_max over training, with the edge-of-stability line 2/η when ``lr`` is known."""
        import matplotlib.pyplot as plt

        df = self.history
        if "lambda_max" not in df:
            raise InvalidInputError("no lambda_max recorded: add 'lambda_max' to measure")
        x = x or ("step" if df["step"].notna().any() else "epoch")
        fig, ax = (plt.subplots(figsize=(6, 3.6), constrained_layout=True) if ax is None else (ax.figure, ax))
        ax.plot(df[x], df["lambda_max"], marker="o", ms=3, label="λ_max")
        if self.lr:
            ax.axhline(2 / self.lr, color="C3", ls="--", label="2/η")
        ax.set_xlabel(x)
        ax.set_ylabel("λ_max")
        ax.legend()
        return fig

    def plot_density_heatmap(self, ax: Any = None, num: int = 400, log: bool = True):
        """The smoothed spectral density of every checkpoint as one column of a heat map."""
        import matplotlib.pyplot as plt

        if not self.densities:
            raise InvalidInputError("no densities recorded: add 'density' to measure")
        lo = min(sd.support[0] for _, sd in self.densities)
        hi = max(sd.support[1] for _, sd in self.densities)
        pad = 0.05 * (hi - lo or 1.0)
        grid = np.linspace(lo - pad, hi + pad, num)
        sigma = (hi - lo or 1.0) / 100
        image = np.stack([sd.density(grid, sigma) for _, sd in self.densities], axis=1)
        if log:
            image = np.log10(np.maximum(image, image.max() * 1e-8))
        fig, ax = (plt.subplots(figsize=(6, 4), constrained_layout=True) if ax is None else (ax.figure, ax))
        mesh = ax.imshow(image, aspect="auto", origin="lower", extent=(-0.5, len(self.densities) - 0.5, grid[0], grid[-1]))
        fig.colorbar(mesh, ax=ax, label="log10 density" if log else "density")
        ax.set_xlabel("checkpoint")
        ax.set_ylabel("eigenvalue")
        return fig

    def plot_hesd(self, ax: Any = None, x: str | None = None):
        """The HESD type along training: the balance C (left axis, in [−1, 1], with the margin ±``margin``
        shaded as "weak") and the spectral scale max|λ| (right axis, log), QS checkpoints marked with red
        crosses, the absolute floor ``qs_floor`` dashed and the reference scale × ``qs_relative`` dotted.
        ``x``: the column along the x axis (default: ``step`` if recorded, else ``epoch``, else the
        checkpoint's index). Drawn on a bare matplotlib ``Figure`` (or into ``ax``); returns the Figure."""
        from matplotlib.figure import Figure

        df = self.history
        if "hesd_type" not in df:
            raise InvalidInputError("no hesd recorded: add 'hesd' to measure")
        if x is None:
            x = next((c for c in ("step", "epoch") if c in df and df[c].notna().any()), None)
        elif x not in df:
            raise InvalidInputError(f"x must be a column of the history, got {x!r}; columns: {list(df.columns)}")
        xs = np.arange(len(df)) if x is None else df[x].to_numpy()
        if ax is None:
            fig = Figure(figsize=(6.5, 3.8), layout="constrained")
            ax = fig.subplots()
        fig = ax.figure
        margin, floor, relative = self._hesd_thresholds
        ax.axhspan(-margin, margin, color="0.9", zorder=0, label=f"|C| < {margin:g}: weak")
        ax.axhline(0.0, color="0.5", lw=0.8, ls=":")
        ax.plot(xs, df["hesd_balance"], marker="o", ms=3, color="C0", label="balance C")
        ax.set_ylim(-1.05, 1.05)
        ax.set_xlabel(x or "checkpoint")
        ax.set_ylabel("balance C = (P − N)/(P + N)")
        scale_ax = ax.twinx()
        scale_ax.semilogy(xs, df["hesd_scale"], marker="s", ms=3, color="C1", label="scale max|λ|")
        qs = (df["hesd_type"] == "QS").to_numpy()
        if qs.any():
            scale_ax.plot(xs[qs], df["hesd_scale"].to_numpy()[qs], "x", ms=9, mew=2, color="C3", ls="none", label="QS")
        scale_ax.axhline(floor, color="0.4", lw=0.8, ls="--", label=f"absolute floor {floor:g}")
        ref = df["hesd_reference_scale"].dropna()
        if len(ref):
            scale_ax.axhline(relative * float(ref.iloc[-1]), color="C3", lw=0.8, ls=":",
                             label=f"{relative:g} × reference scale")
        scale_ax.set_ylabel("spectral scale max|λ| (log)")
        handles = [h for a in (ax, scale_ax) for h in a.get_legend_handles_labels()[0]]
        ax.legend(handles, [h.get_label() for h in handles], fontsize="small", loc="lower left", frameon=False)
        return fig


def numeric(row: dict[str, Any]) -> dict[str, float]:
    """The values of ``row`` that loggers take: real numbers (booleans as 0/1, NumPy scalars included) as
    floats, without ``epoch`` and ``step`` (the logging step) and without strings such as ``hesd_type``."""
    return {k: float(v) for k, v in row.items()
            if isinstance(v, (numbers.Real, np.bool_)) and k not in ("epoch", "step")}


def _hesd_reference(value: Any) -> str | float | None:
    if value is None or (isinstance(value, str) and value == "first"):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InvalidInputError(f"hesd_reference must be 'first' (the first checkpoint's density), None (only the "
                                f"absolute floor) or a scale > 0, got {value!r}")
    return float(value)


def _hesd_options(options: Any) -> dict[str, Any]:
    """``hesd_options`` checked now, by hesd_type and hesd_criteria themselves on a one-node density."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise InvalidInputError(f"hesd_options must be a dict of keyword arguments, got {type(options).__name__}")
    allowed = sorted(set(_TYPE_OPTIONS) | set(_CRITERIA_OPTIONS))
    unknown = sorted(str(k) for k in options if k not in allowed)
    if unknown:
        raise InvalidInputError(f"hesd_options has unknown keys {unknown}; choose from {allowed} (the reference is "
                                "hesd_reference)")
    probe = SpectralDensity([[1.0]], [[1.0]])
    try:
        hesd_type(probe, **{k: v for k, v in options.items() if k in _TYPE_OPTIONS})
        hesd_criteria(probe, **{k: v for k, v in options.items() if k in _CRITERIA_OPTIONS})
    except InvalidInputError as exc:
        raise InvalidInputError(f"hesd_options: {exc}") from exc
    return dict(options)
