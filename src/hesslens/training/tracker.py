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
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import InvalidInputError
from ..linalg import SpectralDensity, eigenvalues, spectral_density, trace
from ..operators import HessianOperator

if TYPE_CHECKING:
    import pandas as pd

MEASUREMENTS = ("lambda_max", "lambda_min", "trace", "density")


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
    checkpoint; ``densities`` keeps each checkpoint's :class:`SpectralDensity`.

    Parameters
    ----------
    loss_fn, data, batch_loss, params, mode : as for :class:`HessianOperator`; ``data`` is the fixed
        analysis set (see :func:`evenly_spaced`).
    measure : any of ``"lambda_max"``, ``"lambda_min"``, ``"trace"``, ``"density"``.
    tol : relative residual tolerance of the eigenvalue solves.
    trace_matvecs, slq_steps, slq_probes : budgets of the trace and density estimates.
    warm_start : start each eigenvalue solve from the previous checkpoint's eigenvector.
    lr : the learning rate, recorded with every row and used for the 2/η line.
    loggers : objects with ``log(metrics: dict, step: int)`` and ``close()``, or the names
        ``"tensorboard"`` / ``"mlflow"`` (used when the package is installed).
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
        loggers: Iterable[Any] = (),
        log_dir: str | None = None,
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
        self.loss_fn, self.data, self.batch_loss, self.params, self.mode = loss_fn, data, batch_loss, params, mode
        self.every, self.unit, self.measure = every, unit, tuple(measure)
        self.tol, self.trace_matvecs, self.slq_steps, self.slq_probes = tol, trace_matvecs, slq_steps, slq_probes
        self.seed, self.warm_start, self.lr = seed, warm_start, lr
        self.every_step = unit == "step"
        self.loggers = [_make_logger(l, log_dir) for l in loggers]
        self.rows: list[dict[str, Any]] = []
        self.densities: list[tuple[int, SpectralDensity]] = []
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
                             batch_loss=self.batch_loss, engine=self._engine, expected_matvecs=self._expected_matvecs())
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
        if "density" in self.measure:
            sd = spectral_density(op, steps=self.slq_steps, probes=self.slq_probes, seed=self.seed)
            self.densities.append((len(self.rows), sd))
        row["matvecs"] = op.matvecs
        row["seconds"] = time.perf_counter() - t0
        self.rows.append(row)
        counter = step if step is not None else (epoch if epoch is not None else len(self.rows) - 1)
        scalars = {k: float(v) for k, v in row.items() if isinstance(v, (int, float)) and v is not None and k not in ("epoch", "step")}
        for logger in self.loggers:
            logger.log(scalars, int(counter))
        return row

    def _expected_matvecs(self) -> int:
        eig = 30 * sum(m in self.measure for m in ("lambda_max", "lambda_min"))
        return eig + self.trace_matvecs * ("trace" in self.measure) + self.slq_steps * self.slq_probes * ("density" in self.measure)

    @property
    def history(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.rows)

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


class _TensorBoardLogger:
    def __init__(self, log_dir: str | None):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=log_dir)

    def log(self, metrics: dict[str, float], step: int) -> None:
        for k, v in metrics.items():
            self.writer.add_scalar(f"hesslens/{k}", v, step)

    def close(self) -> None:
        self.writer.close()


class _MLflowLogger:
    def __init__(self) -> None:
        import mlflow

        self.mlflow = mlflow

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.mlflow.log_metrics({f"hesslens.{k}": v for k, v in metrics.items()}, step=step)

    def close(self) -> None:
        pass


def _make_logger(spec: Any, log_dir: str | None) -> Any:
    if spec == "tensorboard":
        return _TensorBoardLogger(log_dir)
    if spec == "mlflow":
        return _MLflowLogger()
    if hasattr(spec, "log") and hasattr(spec, "close"):
        return spec
    raise InvalidInputError(f"loggers entries must be 'tensorboard', 'mlflow' or objects with log() and close(), got {spec!r}")
