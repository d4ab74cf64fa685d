"""The analysis data: batches, their sizes and weights.

The Hessian hesslens analyses is that of the loss over a *fixed* analysis set, never a fresh
mini-batch per product. Over batches b of unequal sizes n_b (N = Σ n_b) a mean-reduced loss is

    L(θ) = Σ_b (n_b / N) · L_b(θ),

so each batch's product is weighted by n_b/N, not 1/num_batches. A sum-reduced loss
(``reduction="sum"``) adds the batches with weight 1, giving the Hessian of the total sum.

n_b is read from the batch's tensors along their batch dimension, ``batch_dim``, which follows
``torch.vmap``'s ``in_dims`` convention: one int for every tensor (default 0), or a prefix of the
batch's structure, e.g. ``(1, 1)`` for ``(inputs, targets)`` of a ``batch_first=False`` sequence
model, ``((1, None), 1)`` when the second input is not batched. Every batched tensor must agree on
n_b; a 0-dimensional tensor is never batched. ``batch_size=fn(batch) -> int`` overrides all of this
for structures the convention cannot describe.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch.utils._pytree import _broadcast_to_and_flatten, tree_flatten, tree_leaves, tree_unflatten

from ..errors import InvalidInputError


BatchDim = Any  # int, None, or a pytree prefix of the batch with int/None leaves (vmap's in_dims)
BatchSize = Callable[[Any], int]


def _is_batch(obj: Any) -> bool:
    """A single batch: a tensor, a mapping, or an (inputs, targets) pair whose targets are a tensor.

    The inputs of a pair may be a tensor, a mapping or a tuple of tensors (a model taking several
    inputs). Two mappings side by side are two (dict) batches; two tensors side by side are read
    as one (inputs, targets) pair, so a list of two tensor-only batches must be given as a
    DataLoader or a longer structure.
    """
    if isinstance(obj, (torch.Tensor, Mapping)):
        return True
    if isinstance(obj, (tuple, list)) and len(obj) == 2 and isinstance(obj[1], torch.Tensor):
        inputs = obj[0]
        if isinstance(inputs, (tuple, list)):
            return all(isinstance(x, torch.Tensor) for x in inputs)
        return isinstance(inputs, (torch.Tensor, Mapping))
    return False


def _leaf_dims(batch: Any, batch_dim: BatchDim) -> tuple[list[Any], list[Any], Any]:
    leaves, spec = tree_flatten(batch)
    dims = _broadcast_to_and_flatten(batch_dim, spec)
    if dims is None:
        raise InvalidInputError(f"batch_dim={batch_dim!r} does not match the structure of the batch "
                                f"({type(batch).__name__} with {len(leaves)} leaves); give one int, or a prefix "
                                "of the batch's structure as for vmap's in_dims, e.g. (1, 0)")
    return leaves, dims, spec


def _batched(leaf: Any, dim: Any) -> bool:
    return isinstance(leaf, torch.Tensor) and dim is not None and leaf.ndim > 0


def batch_size_of(batch: Any, batch_dim: BatchDim = 0, batch_size: BatchSize | None = None) -> int:
    """Number of samples in a batch: the size of every batched tensor along its ``batch_dim``."""
    if batch_size is not None:
        n = batch_size(batch)
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise InvalidInputError(f"batch_size(batch) must return a non-negative int, got {n!r}")
        return n
    leaves, dims, _ = _leaf_dims(batch, batch_dim)
    found: tuple[int, int, tuple[int, ...]] | None = None
    for i, (leaf, dim) in enumerate(zip(leaves, dims)):
        if not _batched(leaf, dim):
            continue
        if not isinstance(dim, int) or not -leaf.ndim <= dim < leaf.ndim:
            raise InvalidInputError(f"batch_dim {dim!r} is out of range for tensor {i} of the batch "
                                    f"(shape {tuple(leaf.shape)})")
        n = int(leaf.shape[dim])
        if found is None:
            found = (n, i, tuple(leaf.shape))
        elif n != found[0]:
            raise InvalidInputError(
                f"the batch's tensors disagree on the number of samples: tensor {found[1]} (shape {found[2]}) has "
                f"{found[0]} along its batch dimension, tensor {i} (shape {tuple(leaf.shape)}) has {n} along dim {dim}; "
                "pass batch_dim= (an int, or per tensor as for vmap's in_dims, None for an unbatched tensor) "
                "or batch_size=fn(batch) -> int")
    if found is None:
        raise InvalidInputError(f"a batch must contain at least one batched tensor, got {type(batch).__name__}")
    return found[0]


def doubled_batch(batch: Any, batch_dim: BatchDim = 0) -> Any:
    """The batch with every sample twice (each batched tensor concatenated with itself)."""
    leaves, dims, spec = _leaf_dims(batch, batch_dim)
    return tree_unflatten([torch.cat([leaf, leaf], dim=dim) if _batched(leaf, dim) else leaf
                           for leaf, dim in zip(leaves, dims)], spec)


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
    batch_dim: BatchDim = 0
    batch_size: BatchSize | None = None
    #: samples of the whole analysis set where these batches are one process's shard of it
    #: (:mod:`hesslens.operators.distributed`); None where they are all of it
    population: int | None = None

    @property
    def total(self) -> int:
        """Samples in these batches."""
        return sum(self.sizes)

    def weights(self, reduction: str) -> tuple[float, ...]:
        """w_b: 1 for a sum-reduced loss, n_b / N for a mean (N over every shard where this is one)."""
        if reduction == "sum":
            return tuple(1.0 for _ in self.sizes)
        everything = self.population or self.total
        return tuple(n / everything for n in self.sizes)

    def __iter__(self):
        return iter(self.source)

    def __len__(self) -> int:
        return len(self.sizes)


def as_analysis_data(data: Any, batch_dim: BatchDim = 0, batch_size: BatchSize | None = None) -> AnalysisData:
    """Normalise one batch, a sequence of batches, an iterator or a DataLoader."""
    if data is None:
        raise InvalidInputError("data is None; pass a batch (inputs, targets), a list of batches or a DataLoader")
    if batch_size is not None and not callable(batch_size):
        raise InvalidInputError(f"batch_size must be a function batch -> int, got {type(batch_size).__name__}")
    # Iterating a DataLoader draws its base seed from the global RNG: fork it so the caller's stream is kept.
    with torch.random.fork_rng(devices=[]):
        return _as_analysis_data(data, batch_dim, batch_size)


def _as_analysis_data(data: Any, batch_dim: BatchDim, batch_size: BatchSize | None) -> AnalysisData:
    if _is_batch(data):
        source: Any = [data]
    elif isinstance(data, Iterable):
        # An iterator returns itself from iter(): it would be exhausted after one pass.
        source = list(data) if iter(data) is data else data
    else:
        raise InvalidInputError(f"data must be a batch or an iterable of batches, got {type(data).__name__}")
    sizes = tuple(batch_size_of(b, batch_dim, batch_size) for b in source)
    if not sizes or sum(sizes) == 0:
        raise InvalidInputError("data is empty: it yielded no samples")
    return AnalysisData(source=source, sizes=sizes, batch_dim=batch_dim, batch_size=batch_size)
