"""Diagonal blocks of one operator, seen together: the local (layer-wise) Hessians H_ii.

For a symmetric n×n operator H and K disjoint sets of coordinates (the blocks, each a union of
index ranges of the flat parameter vector), the local Hessian of block i is the principal
submatrix H_ii = H[I_i, I_i]: the Hessian of the loss in the block's parameters with every other
parameter held fixed (Bolshim & Kugaevskikh 2025; see ``docs``' science notes, §3).

A :class:`BlockView` is a view, not K operators: the operator is built once (one set of checks,
one engine, one pass over the data) and a product for all K blocks is *one* call. Given per-block
matrices V_i of shape (n_i, c_i), :meth:`BlockView.matmat` returns H_ii V_i for every block:

* over a :class:`~hesslens.HessianOperator`, by its block product
  (:meth:`~hesslens.HessianOperator.block_torch_matmat`, :mod:`hesslens.operators.block_products`):
  with double backward each block's backward pass is pruned to the block's own parameters — the
  work of an operator over that block alone, from the one operator's gradient graph (an operator
  whose engine cannot prune, linearize or forward-over-reverse streaming, gets a pruned
  double-backward engine for its block products where that proves itself and is faster, recorded
  in its ``engine_report``; otherwise it multiplies padded columns);
* over anything else (dense matrices, SciPy operators), and as the fallback, by ONE product of the
  (n, Σ c_i) matrix whose columns for block i hold V_i at the block's rows and zeros elsewhere,
  keeping for block i the rows I_i of its own columns:

      (H [pad(V_1) … pad(V_K)])[I_i, cols_i] = H_ii V_i.

Either way a call counts Σ c_i product columns in :attr:`BlockView.matvecs`: one block column is
one product (a pruned one where the operator prunes, a full padded one otherwise). The algorithms
of :mod:`hesslens.linalg` accept a view where they accept an operator and return one result per
block (:mod:`hesslens.linalg.blocks`).

A block's coordinates are its indices in ascending order. Blocks need not cover the operator (a
:meth:`BlockView.subset` keeps some of them), but they never overlap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import torch
from torch import nn

from ..errors import InvalidInputError
from .base import SymmetricOperator, as_operator
from .block_products import BlockPlan, block_product_source, pad_local, plan, restrict_local
from .groups import ROOT, Group, _shown, resolve_groups  # ROOT: the root module's block name, re-exported

Ranges = tuple[tuple[int, int], ...]


class _Counter:
    """Product columns multiplied through a view (mutable inside the frozen view)."""

    def __init__(self) -> None:
        self.value = 0


@dataclass(frozen=True, eq=False)
class BlockView:
    """K named diagonal blocks of one symmetric operator, multiplied together.

    ``operator`` is the underlying operator (as :func:`~hesslens.operators.base.as_operator` wraps
    it), ``names`` the block names, ``ranges[i]`` the sorted, disjoint ``(start, stop)`` index
    ranges of block i in the operator's flat vector, ``params[i]`` the parameter names of block i
    (views of a :class:`~hesslens.HessianOperator` built by :func:`blocks`; None otherwise).
    Build it with :func:`blocks` (parameter groups of a model) or :meth:`from_slices`. Frozen and
    small (no vectors, only ranges); two views are equal only if they are the same object.
    """

    operator: SymmetricOperator
    names: tuple[str, ...]
    ranges: tuple[Ranges, ...]
    params: tuple[tuple[str, ...], ...] | None = None
    _counter: _Counter = field(default_factory=_Counter, compare=False, repr=False)

    def __post_init__(self) -> None:
        n = self.operator.n
        if not self.names:
            raise InvalidInputError("a block view needs at least one block")
        if len(self.ranges) != len(self.names) or (self.params is not None and len(self.params) != len(self.names)):
            raise InvalidInputError("a block view needs one set of ranges (and parameter names) per block name")
        for name in self.names:
            if not isinstance(name, str) or not name:
                raise InvalidInputError(f"block names must be non-empty strings, got {name!r}")
        if len(set(self.names)) != len(self.names):
            dup = next(x for x in self.names if self.names.count(x) > 1)
            raise InvalidInputError(f"block name {dup!r} is used twice: every block needs its own name")
        owner: list[tuple[int, int, str]] = []
        for name, ranges in zip(self.names, self.ranges):
            if not ranges:
                raise InvalidInputError(f"block {name!r} is empty: a block needs at least one coordinate")
            for a, b in ranges:
                if not 0 <= a < b <= n:
                    raise InvalidInputError(f"block {name!r}: range [{a}, {b}) is empty or outside [0, {n})")
                owner.append((a, b, name))
        owner.sort()
        for (a0, b0, first), (a1, _, second) in zip(owner, owner[1:]):
            if a1 < b0:
                where = f"blocks {first!r} and {second!r}" if first != second else f"block {first!r}"
                raise InvalidInputError(f"{where} overlap at index {a1}: every coordinate belongs to one block at most")

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_slices(cls, op: Any, slices: Mapping[str, slice | range | Sequence[slice | range]]) -> "BlockView":
        """A view of ``op`` (any operator: a hesslens operator, a dense symmetric tensor or array, a
        SciPy ``LinearOperator``) with blocks given as index ranges: ``{"a": slice(0, 3),
        "b": [slice(3, 5), slice(7, 9)]}``. Slices need explicit bounds within [0, n) and step 1;
        a block's ranges are sorted (its coordinates are its indices in ascending order) and adjacent
        ones merged. Blocks must not overlap; they need not cover the operator.

        >>> import torch
        >>> view = BlockView.from_slices(torch.eye(9), {"a": slice(0, 3), "b": [slice(3, 5), slice(7, 9)]})
        >>> view.names, view.sizes
        (('a', 'b'), (3, 4))
        """
        if not isinstance(slices, Mapping) or not slices:
            raise InvalidInputError("slices must be a non-empty mapping of block names to slices (or lists of slices)")
        sym = as_operator(op)
        ranges = tuple(_ranges(name, spec, sym.n) for name, spec in slices.items())
        return cls(sym, tuple(slices), ranges)

    def subset(self, names: Sequence[str | int]) -> "BlockView":
        """A view of some blocks (by name or index, in the order given) of the same operator: each
        keeps its ranges, so its probes and results are those it has in this view."""
        idx = [self.index(x) for x in names]
        return BlockView(self.operator, tuple(self.names[i] for i in idx), tuple(self.ranges[i] for i in idx),
                         None if self.params is None else tuple(self.params[i] for i in idx))

    def with_operator(self, operator: SymmetricOperator) -> "BlockView":
        """The same blocks over ``operator`` (e.g. the checked operator of the linear-algebra layer),
        sharing this view's product counter."""
        if operator.n != self.operator.n:
            raise InvalidInputError(f"operator dimension {operator.n} differs from the view's {self.operator.n}")
        return replace(self, operator=operator)

    # -- description ----------------------------------------------------------------------------
    @property
    def n(self) -> int:
        """Dimension of the underlying operator."""
        return self.operator.n

    @property
    def sizes(self) -> tuple[int, ...]:
        """n_i, the number of coordinates of each block."""
        return tuple(sum(b - a for a, b in r) for r in self.ranges)

    @property
    def matvecs(self) -> int:
        """Product columns multiplied through this view so far (one block column is one product,
        pruned to the block where the operator offers block products, a full padded one otherwise)."""
        return self._counter.value

    def __len__(self) -> int:
        return len(self.names)

    def index(self, block: str | int) -> int:
        """The position of a block given by name or index."""
        if isinstance(block, str):
            if block not in self.names:
                raise InvalidInputError(f"no block named {block!r}; the blocks are {_shown(self.names)}")
            return self.names.index(block)
        if isinstance(block, bool) or not isinstance(block, int) or not -len(self) <= block < len(self):
            raise InvalidInputError(f"block must be a name or an index in [0, {len(self)}), got {block!r}")
        return block % len(self)

    def slices(self, block: str | int) -> tuple[slice, ...]:
        """The index ranges of a block as slices of the flat vector."""
        return tuple(slice(a, b) for a, b in self.ranges[self.index(block)])

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}: {size}" for name, size in list(zip(self.names, self.sizes))[:6])
        more = ", …" if len(self) > 6 else ""
        return f"BlockView(n={self.n}, blocks={len(self)}, sizes={{{shown}{more}}})"

    # -- products -------------------------------------------------------------------------------
    def restrict(self, v: torch.Tensor, block: str | int) -> torch.Tensor:
        """The rows of a block from a full-length (n, c) (or (n,)) tensor, as a new (n_i, c) tensor."""
        ranges = self.ranges[self.index(block)]
        if len(ranges) == 1:
            a, b = ranges[0]
            return v[a:b].clone()
        return torch.cat([v[a:b] for a, b in ranges])

    def pad(self, vs: Sequence[torch.Tensor | None]) -> torch.Tensor:
        """One float64 (n, Σ c_i) matrix: block i's (n_i, c_i) columns at its rows, zeros elsewhere
        (None or zero columns: nothing for that block)."""
        cols = self._columns(vs)
        big = torch.zeros(self.n, sum(cols), dtype=torch.float64)
        c0 = 0
        for v, ranges, c in zip(vs, self.ranges, cols):
            if c:
                r0 = 0
                for a, b in ranges:
                    big[a:b, c0:c0 + c] = v[r0:r0 + b - a]
                    r0 += b - a
            c0 += c
        return big

    def matmat(self, vs: Sequence[torch.Tensor | None]) -> list[torch.Tensor | None]:
        """H_ii V_i for every block at once, in ONE call of the operator.

        ``vs`` has one entry per block: an (n_i, c_i) tensor, or None for a block with nothing to
        multiply. Returns the (n_i, c_i) float64 products (None where None was given). Over a
        :class:`~hesslens.HessianOperator` the operator's block product (pruned to each block's
        parameters where its engine can), otherwise one product of the zero-padded columns
        (:meth:`padded_matmat`): the same numbers to round-off. Counts Σ c_i product columns in
        :attr:`matvecs`.
        """
        cols = self._columns(vs)
        total = sum(cols)
        if total == 0:
            return [None if v is None else torch.zeros(s, 0, dtype=torch.float64) for v, s in zip(vs, self.sizes)]
        if self._plan is None:
            return self.padded_matmat(vs)
        source, blocks = self._plan
        live = [i for i, c in enumerate(cols) if c]
        hv = source.block_torch_matmat([blocks.groups[i] for i in live],
                                       [pad_local(vs[i].to(torch.float64), blocks.local[i], blocks.rows[i]) for i in live])
        self._counter.value += total
        out: list[torch.Tensor | None] = [None if v is None else torch.zeros(s, 0, dtype=torch.float64)
                                          for v, s in zip(vs, self.sizes)]
        for i, h in zip(live, hv):
            out[i] = restrict_local(h, blocks.local[i])
        return out

    def padded_matmat(self, vs: Sequence[torch.Tensor | None]) -> list[torch.Tensor | None]:
        """:meth:`matmat` by ONE product of the zero-padded columns with the whole operator (every
        padded column a full product, of which each block keeps its own rows); any operator."""
        cols = self._columns(vs)
        total = sum(cols)
        if total == 0:
            return [None if v is None else torch.zeros(s, 0, dtype=torch.float64) for v, s in zip(vs, self.sizes)]
        hv = self.operator.matmat(self.pad(vs))
        self._counter.value += total
        out: list[torch.Tensor | None] = []
        c0 = 0
        for v, ranges, c in zip(vs, self.ranges, cols):
            if v is None:
                out.append(None)
                continue
            parts = [hv[a:b, c0:c0 + c] for a, b in ranges]
            out.append(parts[0].contiguous() if len(parts) == 1 else torch.cat(parts))
            c0 += c
        return out

    @cached_property
    def _plan(self) -> tuple[Any, BlockPlan] | None:
        """(operator, its parameter groups per block) where the operator multiplies blocks itself."""
        source = block_product_source(self.operator)
        if source is None:
            return None
        return source, plan(self.ranges, list(source.blocks.values()))

    def full_matmat(self, v: torch.Tensor) -> torch.Tensor:
        """H V for full-length (n, c) columns (products with the whole operator, not its blocks),
        counted in :attr:`matvecs`; the per-block Hutchinson trace reads z_iᵀ(Hz)_i from these."""
        hv = self.operator.matmat(v)
        self._counter.value += v.shape[1]
        return hv

    def block(self, block: str | int) -> SymmetricOperator:
        """H_ii alone as a :class:`~hesslens.operators.base.SymmetricOperator` of dimension n_i (each
        product is a :meth:`matmat` of this block alone)."""
        i = self.index(block)
        count = len(self)

        def matmat(v: torch.Tensor) -> torch.Tensor:
            vs: list[torch.Tensor | None] = [None] * count
            vs[i] = v
            return self.matmat(vs)[i]  # type: ignore[return-value]

        return SymmetricOperator(self.sizes[i], matmat, self)

    def _columns(self, vs: Sequence[torch.Tensor | None]) -> list[int]:
        if len(vs) != len(self):
            raise InvalidInputError(f"expected one entry per block ({len(self)}), got {len(vs)}")
        cols = []
        for name, v, size in zip(self.names, vs, self.sizes):
            if v is None:
                cols.append(0)
                continue
            if not isinstance(v, torch.Tensor) or v.ndim != 2 or v.shape[0] != size:
                raise InvalidInputError(f"block {name!r} needs a ({size}, c) tensor, got "
                                        f"{tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__}")
            cols.append(int(v.shape[1]))
        return cols


def _ranges(name: str, spec: Any, n: int) -> Ranges:
    items = [spec] if isinstance(spec, (slice, range)) else spec
    if not isinstance(items, Sequence) or isinstance(items, str) or not items:
        raise InvalidInputError(f"block {name!r} must be a slice, a range or a non-empty list of them, got {spec!r}")
    pairs = []
    for s in items:
        if not isinstance(s, (slice, range)):
            raise InvalidInputError(f"block {name!r}: {s!r} is not a slice or a range")
        start, stop, step = s.start, s.stop, s.step
        if start is None or stop is None or step not in (None, 1) or isinstance(start, bool) or \
                not isinstance(start, int) or not isinstance(stop, int):
            raise InvalidInputError(f"block {name!r}: {s!r} needs integer bounds and step 1 (e.g. slice(0, 10))")
        if not 0 <= start < stop <= n:
            raise InvalidInputError(f"block {name!r}: {s!r} is empty or outside [0, {n})")
        pairs.append((start, stop))
    return _merge(name, pairs)


def _merge(name: str, pairs: list[tuple[int, int]]) -> Ranges:
    """Sort and merge adjacent ranges; overlapping ranges of one block are refused."""
    pairs.sort()
    merged = [list(pairs[0])]
    for a, b in pairs[1:]:
        if a < merged[-1][1]:
            raise InvalidInputError(f"block {name!r} lists index {a} twice (its ranges overlap)")
        if a == merged[-1][1]:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    return tuple((a, b) for a, b in merged)


# -- blocks of a model's parameters -------------------------------------------------------------------


def blocks(op: Any, spec: str | Sequence[Group] | Mapping[str, Group] = "auto") -> BlockView:
    """The blocks of a :class:`~hesslens.HessianOperator`'s parameters, as a :class:`BlockView`.

    ``spec``:

    * ``"auto"`` (default): the functional blocks — every module that owns selected parameters
      directly (``module.named_parameters(recurse=False)``: a Linear, a convolution, a norm layer,
      an embedding, attention's input projection), its weight and bias together, in model order
      (``model.named_modules()``, which is also the flat order). A block is named by the module's
      qualified name ("0", "encoder.layers.1.linear1"; the root module's own parameters by
      :data:`ROOT`). ``nn.MultiheadAttention`` owns ``in_proj_weight`` and ``in_proj_bias`` (or the
      separate q/k/v weights) directly, so its block, named by the attention module
      ("…self_attn"), is the input projection; ``…self_attn.out_proj`` is a Linear block of its
      own. A parameter shared by several modules belongs to the first.
    * ``"parameters"``: one block per parameter tensor, named by the parameter (the entries of
      ``op.blocks``).
    * a dict ``{name: group}`` or a list of groups (named by the group: a name or pattern itself,
      a module's qualified name, items joined by "+"). A group is a parameter name, a glob pattern
      (the same globs as ``HessianOperator(params=)``, e.g. ``"0.*"``), a module of the model, a
      parameter tensor, or a list of these. Blocks follow the order given.

    Every parameter of the operator (its ``params=`` selection) must fall in exactly one block:
    uncovered parameters, a parameter in two groups, empty groups and names or modules that match
    nothing are refused with an :class:`~hesslens.errors.InvalidInputError` naming them (restrict
    the operator with ``params=`` to analyse only some layers).

    Why a function and not a ``HessianOperator.blocks(spec)`` method: ``op.blocks`` is already the
    operator's public map from each parameter to its slice of θ (what ``spec="parameters"`` turns
    into a view), and the view depends on the operator, not the other way round — so any operator
    that exposes ``model``, ``param_names`` and that map works, and the operator class is unchanged.
    For other operators (dense matrices, SciPy operators) use :meth:`BlockView.from_slices`.

    >>> import torch, hesslens as hl
    >>> X, y = torch.randn(16, 3, dtype=torch.float64), torch.randint(0, 2, (16,))
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
    >>> view = hl.blocks(hl.HessianOperator(model, torch.nn.CrossEntropyLoss(), (X, y)))
    >>> view.names, view.sizes
    (('0', '2'), (16, 10))
    """
    model, names = getattr(op, "model", None), getattr(op, "param_names", None)
    slices = getattr(op, "blocks", None)
    if not isinstance(model, nn.Module) or names is None or not isinstance(slices, Mapping):
        raise InvalidInputError(f"blocks() needs a HessianOperator (its model and parameters), got {type(op).__name__}; "
                                "for a dense matrix or another operator use BlockView.from_slices(op, {name: slice})")
    groups = resolve_groups(model, names, spec)
    order = {n: i for i, n in enumerate(names)}
    params = tuple(tuple(sorted(members, key=order.__getitem__)) for _, members in groups)
    ranges = tuple(_merge(label, [(slices[p].start, slices[p].stop) for p in members])
                   for (label, _), members in zip(groups, params))
    return BlockView(as_operator(op), tuple(label for label, _ in groups), ranges, params)
