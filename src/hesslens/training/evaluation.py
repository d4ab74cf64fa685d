"""Evaluation passes of ``hl.train``: mean loss and accuracy over a whole split, in eval mode."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn


def _logits(outputs: Any) -> torch.Tensor:
    return outputs if isinstance(outputs, torch.Tensor) else outputs.logits


def _correct(outputs: torch.Tensor, y: torch.Tensor) -> int:
    if outputs.dim() == 2 and outputs.shape[1] == 1:  # one logit per sample: binary, threshold at 0
        pred = (outputs[:, 0] > 0).long()
    else:
        pred = outputs.argmax(dim=1)
    return int((pred == y).sum())


def _evaluate(model: nn.Module, loss_fn: Callable, data: tuple[torch.Tensor, torch.Tensor] | None,
              classification: bool, chunk: int) -> tuple[float | None, float | None]:
    """Mean loss and accuracy over a whole split in eval mode (no gradients, no buffer updates)."""
    if data is None:
        return None, None
    x, y = data
    n = len(x)
    training = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            total, correct = 0.0, 0
            for start in range(0, n, chunk):
                xb, yb = x[start:start + chunk], y[start:start + chunk]
                out = model(xb)
                loss = float(loss_fn(out, yb))
                # A single chunk returns loss_fn's own value, so full-batch numbers match exactly.
                total = loss if n <= chunk else total + loss * len(xb)
                if classification:
                    correct += _correct(_logits(out), yb)
    finally:
        for m, flag in training.items():
            m.training = flag
    return (total if n <= chunk else total / n), (correct / n if classification else None)
