"""The callback seam of ``hl.train``.

A callback is any callable ``cb(model, *, epoch, step, metrics)``. ``hl.train`` calls it

* once before the first step, with ``epoch=0, step=0`` and the metrics of the initial model
  (so a trajectory starts at initialisation);
* at the end of every epoch, with ``epoch`` (1-based), ``step`` (optimisation steps so far) and
  ``metrics``: the row just added to the history when the epoch was evaluated
  (``train_loss``, ``train_acc``, ``test_loss``, ``test_acc``, ``lr``, ``seconds``), else only
  ``lr`` and ``epoch_loss`` (the mean mini-batch loss of the epoch).

A callback with a true attribute ``every_step`` is instead called after *every* optimisation
step (and once at ``step=0``), with ``metrics={"loss": <mini-batch loss before the step>,
"lr": ...}``; the call for the last step of an epoch comes after that epoch's evaluation and
carries the epoch's metrics as well. It is not called a second time at the epoch's end, so a
step-wise recorder never sees the same step twice.

The model is passed in training mode with the parameters after the step; a callback that
evaluates it should restore what it changes (``hesslens.preserved_state`` does). Raising
:class:`StopTraining` ends training cleanly after the current step (``stop_reason="callback"``).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from torch import nn


class StopTraining(Exception):
    """Raised by a callback to end training; ``hl.train`` returns normally with ``stop_reason="callback"``."""


@runtime_checkable
class Callback(Protocol):
    """What ``hl.train(..., callbacks=[...])`` calls (see the module docstring for when)."""

    def __call__(self, model: nn.Module, *, epoch: int, step: int, metrics: dict[str, Any]) -> Any: ...


def is_step_callback(cb: Any) -> bool:
    return bool(getattr(cb, "every_step", False))
