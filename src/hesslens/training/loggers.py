"""Where a :class:`~hesslens.Tracker` sends its numbers besides its own history: TensorBoard, MLflow, or
any object with ``log(metrics, step)`` and ``close()``. The back ends are imported only when used."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidInputError

__all__ = ["MLflowLogger", "TensorBoardLogger", "check_logger", "make_logger"]


class TensorBoardLogger:
    """Scalars to TensorBoard (``torch.utils.tensorboard``), under ``hesslens/<metric>``."""

    def __init__(self, log_dir: str | None):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=log_dir)

    def log(self, metrics: dict[str, float], step: int) -> None:
        for k, v in metrics.items():
            self.writer.add_scalar(f"hesslens/{k}", v, step)

    def close(self) -> None:
        self.writer.close()


class MLflowLogger:
    """Metrics to the active MLflow run, as ``hesslens.<metric>``."""

    def __init__(self) -> None:
        import mlflow

        self.mlflow = mlflow

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.mlflow.log_metrics({f"hesslens.{k}": v for k, v in metrics.items()}, step=step)

    def close(self) -> None:
        pass


def check_logger(spec: Any) -> Any:
    """A :class:`~hesslens.Tracker` ``loggers`` entry, checked: "tensorboard", "mlflow", or an object with
    ``log(metrics, step)`` and ``close()``."""
    if spec in ("tensorboard", "mlflow") or (hasattr(spec, "log") and hasattr(spec, "close")):
        return spec
    raise InvalidInputError(f"loggers entries must be 'tensorboard', 'mlflow' or objects with log() and close(), got {spec!r}")


def make_logger(spec: Any, log_dir: str | None) -> Any:
    """The logger of a ``loggers`` entry (:func:`check_logger`)."""
    if check_logger(spec) == "tensorboard":
        return TensorBoardLogger(log_dir)
    if spec == "mlflow":
        return MLflowLogger()
    return spec
