"""The result of ``hl.train``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

#: Why a run ended.
STOP_REASONS = ("epochs", "until_train_acc", "max_epochs", "diverged", "callback")

HISTORY_COLUMNS = ("epoch", "step", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds")


@dataclass(frozen=True, eq=False)
class TrainResult:
    """Outcome of one training run.

    Attributes
    ----------
    epochs : epochs started (the last one may be partial when the run diverged or was stopped).
    steps : optimisation steps taken.
    train_loss, train_acc, test_loss, test_acc : metrics of the final model, evaluated in eval
        mode on the full train and test sets. Accuracies are None for regression; test metrics are
        None without a test set.
    diverged : a mini-batch loss or the evaluated training loss was NaN or infinite; training
        stopped there (the step with the non-finite loss was not taken).
    stop_reason : one of :data:`STOP_REASONS`.
    seconds : wall-clock time of the whole run, evaluations included.
    history : one row per evaluation (epoch 0 is the initial model), columns
        :data:`HISTORY_COLUMNS` (accuracies NaN for regression, ``seconds`` elapsed so far).
    """

    epochs: int
    steps: int
    train_loss: float
    train_acc: float | None
    test_loss: float | None
    test_acc: float | None
    diverged: bool
    seconds: float
    history: pd.DataFrame = field(repr=False)
    stop_reason: str = "epochs"

    @property
    def reached_target(self) -> bool:
        """True when the run stopped because it reached ``until_train_acc``."""
        return self.stop_reason == "until_train_acc"

    def summary(self) -> dict[str, Any]:
        """The scalar fields as a flat dict (a study record), without the history."""
        return {"epochs": self.epochs, "steps": self.steps, "train_loss": self.train_loss,
                "train_acc": self.train_acc, "test_loss": self.test_loss, "test_acc": self.test_acc,
                "diverged": self.diverged, "stop_reason": self.stop_reason, "seconds": self.seconds}
