"""Tiny float64 models with several functional blocks, shared by the block-view and layer-wise tests: an
MLP, a conv net with BatchNorm (non-trivial running statistics) and a one-layer transformer encoder."""

from __future__ import annotations

import torch
from torch import nn

DT = torch.float64


class TinyTransformer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(d_model=4, nhead=2, dim_feedforward=6, dropout=0.0, batch_first=True)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layer(x).mean(1))


def block_model(name: str, g: torch.Generator) -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    """(model, (x, y)) of ``name`` ∈ {"mlp", "cnn-bn", "transformer"}, drawn from ``g`` (and the global RNG,
    which the caller seeds, for the initial weights)."""
    if name == "mlp":
        model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).to(DT)
        return model, (torch.randn(12, 4, generator=g, dtype=DT), torch.randint(0, 3, (12,), generator=g))
    if name == "cnn-bn":
        model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.Tanh(), nn.Flatten(),
                              nn.Linear(2 * 4 * 4, 3)).to(DT)
        with torch.no_grad():  # non-trivial running statistics and affine parameters
            model[1].running_mean.copy_(torch.tensor([0.2, -0.1], dtype=DT))
            model[1].running_var.copy_(torch.tensor([0.8, 1.3], dtype=DT))
            model[1].weight.copy_(torch.tensor([1.2, 0.7], dtype=DT))
        return model, (torch.randn(8, 1, 4, 4, generator=g, dtype=DT), torch.randint(0, 3, (8,), generator=g))
    if name == "transformer":
        model = TinyTransformer().to(DT)
        return model, (torch.randn(6, 3, 4, generator=g, dtype=DT), torch.randint(0, 2, (6,), generator=g))
    raise ValueError(name)
