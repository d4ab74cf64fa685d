"""The analysis data: batches, their sizes and weights.

The Hessian hesslens analyses is that of the loss over a *fixed* analysis set, never a fresh
mini-batch per product. Over batches b of unequal sizes n_b (N = Σ n_b) a mean-reduced loss is

    L(θ) = Σ_b (n_b / N) · L_b(θ),

so each batch's product is weighted by n_b/N, not 1/num_batches. A sum-reduced loss
(``reduction="sum"``) adds the batches with weight 1, giving the Hessian of the total sum.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._pytree import tree_leaves

from ..errors import InvalidInputError


def _is_batch(obj: Any) -> bool:
    """A single batch: a tensor, a mapping, or an (inputs, targets) pair whose targets are a tensor.

    Two mappings side by side are two (dict) batches; two tensors side by side are read as one
    (inputs, targets) pair, so a list of two tensor-only batches must be given as a DataLoader or
    a longer structure.
    """
    if isinstance(obj, (torch.Tensor, Mapping)):
        return True
    if isinstance(obj, (tuple, list)) and len(obj) == 2:
        return isinstance(obj[0], (torch.Tensor, Mapping)) and isinstance(obj[1], torch.Tensor)
    return False


def batch_size_of(batch: Any) -> int:
    """Number of samples in a batch: the leading dimension of its first tensor."""
    for leaf in tree_leaves(batch):
        if isinstance(leaf, torch.Tensor):
            if leaf.ndim == 0:
                raise InvalidInputError("a batch's first tensor is a scalar; it has no sample dimension")
            return int(leaf.shape[0])
    raise InvalidInputError(f"a batch must contain at least one tensor, got {type(batch).__name__}")


def first_non_finite_leaf(batch: Any) -> str | None:
    """Describe the first tensor of ``batch`` holding NaN or Inf, or return None."""
    for i, leaf in enumerate(tree_leaves(batch)):
        if isinstance(leaf, torch.Tensor) and leaf.is_floating_point() and not torch.isfinite(leaf).all():
            kind = "NaN" if torch.isnan(leaf).any() else "Inf"
            return f"tensor {i} of the batch (shape {tuple(leaf.shape)}) contains {kind}"
    return None


@dataclass(frozen=True)
class AnalysisData:
    """Re-iterable analysis data with the size of every batch.

    ``source`` is what the user passed when it can be iterated again (a list, a DataLoader);
    one-shot iterators are materialised once into a list.
    """

    source: Sequence[Any] | Iterable[Any]
    sizes: tuple[int, ...]

    @property
    def total(self) -> int:
        return sum(self.sizes)

    def weights(self, reduction: str) -> tuple[float, ...]:
        if reduction == "sum":
            return tuple(1.0 for _ in self.sizes)
        return tuple(n / self.total for n in self.sizes)

    def __iter__(self):
        return iter(self.source)

    def __len__(self) -> int:
        return len(self.sizes)


def as_analysis_data(data: Any) -> AnalysisData:
    """Normalise one batch, a sequence of batches, an iterator or a DataLoader."""
    if data is None:
        raise InvalidInputError("data is None; pass a batch (inputs, targets), a list of batches or a DataLoader")
    # Iterating a DataLoader draws its base seed from the global RNG: fork it so the caller's stream is kept.
    with torch.random.fork_rng(devices=[]):
        return _as_analysis_data(data)


def _as_analysis_data(data: Any) -> AnalysisData:
    if _is_batch(data):
        source: Any = [data]
    elif isinstance(data, Iterable):
        # An iterator returns itself from iter(): it would be exhausted after one pass.
        source = list(data) if iter(data) is data else data
    else:
        raise InvalidInputError(f"data must be a batch or an iterable of batches, got {type(data).__name__}")
    sizes = tuple(batch_size_of(b) for b in source)
    if not sizes or sum(sizes) == 0:
        raise InvalidInputError("data is empty: it yielded no samples")
    return AnalysisData(source=source, sizes=sizes)
