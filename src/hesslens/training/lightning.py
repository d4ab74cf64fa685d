"""A PyTorch Lightning callback around :class:`~hesslens.training.tracker.Tracker` (optional extra).

    trainer = lightning.Trainer(callbacks=[hesslens.training.lightning.HessianCallback(tracker)])

The tracker is stepped at the end of every training epoch (or every optimisation step when it was
built with ``unit="step"``), with the epoch, the global step and Lightning's logged scalars as metrics.
Every measurement of the tracker works through it (``"hesd"`` included: its string column ``hesd_type``
stays in ``tracker.history``; the tracker's loggers receive only the numeric values, as floats; and
``"layerwise"``: per-block tables in ``tracker.layerwise_history``, scalars ``layerwise/<block>/<metric>``).
Under a data-parallel strategy every rank steps its tracker on its shard of the analysis set, and only
rank 0's loggers are called (:class:`~hesslens.Tracker`'s ``distributed``).
"""

from __future__ import annotations

from typing import Any

from .tracker import Tracker

try:
    from lightning.pytorch import Callback as _Callback
except ImportError:  # the older package name
    try:
        from pytorch_lightning import Callback as _Callback
    except ImportError:
        _Callback = None


def _scalars(trainer: Any) -> dict[str, float]:
    out = {}
    for key, value in trainer.callback_metrics.items():
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            continue
    return out


if _Callback is not None:

    class HessianCallback(_Callback):
        """Steps a :class:`Tracker` from a Lightning ``Trainer``."""

        def __init__(self, tracker: Tracker):
            super().__init__()
            self.tracker = tracker

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            if not self.tracker.every_step:
                self.tracker.step(pl_module, epoch=trainer.current_epoch, step=trainer.global_step,
                                  metrics=_scalars(trainer))

        def on_train_batch_end(self, trainer: Any, pl_module: Any, *args: Any) -> None:
            if self.tracker.every_step:
                self.tracker.step(pl_module, epoch=trainer.current_epoch, step=trainer.global_step,
                                  metrics=_scalars(trainer))

        def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
            self.tracker.close()

else:

    class HessianCallback:  # type: ignore[no-redef]
        def __init__(self, *args: Any, **kwargs: Any):
            raise ImportError("HessianCallback needs PyTorch Lightning: pip install 'hesslens[lightning]'")
