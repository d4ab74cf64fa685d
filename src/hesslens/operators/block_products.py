"""Products with several diagonal blocks H_ii of one Hessian, each pruned to its block.

A :class:`~hesslens.operators.blocks.BlockView` over a :class:`~hesslens.HessianOperator` asks for
H_ii V_i of every block at once (:meth:`~hesslens.HessianOperator.block_torch_matmat`). Without
this, the view multiplies the zero-padded columns with the whole operator: every padded column is a
FULL Hessian-vector product of which only n_i rows are kept. With it, the operator's engine
computes (:meth:`~hesslens.operators.engines.Engine.block_hvp`)

* double backward (kept or streamed gradient graph g = ∇L): for block i one backward pass of
  ⟨g_i, V_i⟩ to the block's own parameters θ_i only — autograd runs only the part of the graph
  that leads to θ_i, the work an operator built over that block alone does per product, while the
  graph (one forward and first backward per batch) is the one operator's;
* linearize and forward-over-reverse streaming: a JVP computes every output anyway, so they
  multiply the padded tangents (the same numbers, the same cost as the padded product).

What a "matvec" is stays the same: one column of one block's V_i is one product (of H_ii, pruned
where the engine can), so a view's count is Σ c_i either way and equals its operator's.

Which engine multiplies the blocks is settled at the first block product (:func:`block_engine`)
and recorded in the operator's ``engine_report`` (``block_engine``, ``block_reason``,
``block_checks``). An operator whose engine prunes (double backward, kept or streamed) uses it. For
the others (linearize, forward-over-reverse streaming) the padded product costs Σ c_i FULL
products per call, so pruned candidates are tried: double backward (a kept gradient graph where it
fits in the memory budget next to the operator's cache, else a streamed one), and — where the
operator's own engine is linearize, so linearize is verified on this model, and K more caches fit —
a **linearisation per block** (:class:`~hesslens.operators.engines.BlockLinearizeEngine`: each
block's own gradient θ_i ↦ ∇_{θ_i} L traced once, what an operator over that block alone uses; for
an early block of a deep network it is the cheapest of all, where pruned double backward must still
traverse nearly the whole graph). Like every engine (:mod:`hesslens.operators.choice`), each must
first agree with double backward on the first batch, with the first call's columns per block (at
most :data:`TRIAL_COLUMNS`), on
two calls (τ = √ε), timed block by block. Each block then takes the fastest verified candidate
(within :data:`~hesslens.operators.choice.SPEED_MARGIN`: the padded product first, loops before
vmap); one engine for all blocks is kept where that is as fast, else a
:class:`~hesslens.operators.engines.MixedBlockEngine` gives every block its own. The result is kept
only if its builds plus ``expected_matvecs`` block columns at the measured speeds beat the padded
product (the operator's measured seconds per column) by more than the margin; otherwise the padded
product stays. The operator's own products (``torch_matmat``) never change.

Blocks are given to the operator as groups of parameter tensors. A view's block need not be made
of whole parameters (:meth:`~hesslens.operators.blocks.BlockView.from_slices` may cut through
one): :func:`plan` maps each block to the parameters it touches and its rows among theirs, and the
view pads the block's vectors to those parameters only (H_PP restricted to I ⊂ P is H_II).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Sequence

import torch

from ..errors import InvalidInputError
from .choice import SPEED_MARGIN
from .trial import EngineCheck, agreement_tolerance, first_line, relative_error
from .engines import (UNSUPPORTED, BlockLinearizeEngine, DoubleBackwardEngine, Engine, LinearizeEngine,
                      MixedBlockEngine, StreamingEngine)
from .state import preserved_state

if TYPE_CHECKING:  # pragma: no cover
    from .hessian import HessianOperator

Ranges = tuple[tuple[int, int], ...]


def rounds(cols: Sequence[int], limit: int, per_block: bool) -> list[list[tuple[int, int, int]]]:
    """The engine calls as lists of (block, first column, stop): at most ``limit`` columns of each
    block per call when the blocks are multiplied one after the other (``per_block``), at most
    ``limit`` in all when they go through one padded product. A block appears once per call."""
    if per_block:
        return [[(i, a, min(c, a + limit)) for i, c in enumerate(cols) if a < c]
                for a in range(0, max(cols, default=0), limit)]
    calls: list[list[tuple[int, int, int]]] = []
    current: list[tuple[int, int, int]] = []
    room = limit
    for i, c in enumerate(cols):
        a = 0
        while a < c:
            take = min(room, c - a)
            current.append((i, a, a + take))
            a, room = a + take, room - take
            if room == 0:
                calls.append(current)
                current, room = [], limit
    return calls + [current] if current else calls


def _split(v: torch.Tensor, shapes: Sequence[tuple[int, ...]]) -> tuple[torch.Tensor, ...]:
    """(m, k) over consecutive parameters of the given shapes → one (k, *shape) tangent each."""
    k, r0, out = v.shape[1], 0, []
    for shape in shapes:
        size = math.prod(shape)
        out.append(v[r0:r0 + size].T.reshape(k, *shape))
        r0 += size
    return tuple(out)


def block_matmat(op: "HessianOperator", groups: Sequence[Sequence[int]], vs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """H_ii V_i per group of ``op``'s parameter tensors (see :meth:`HessianOperator.block_torch_matmat`):
    as ``torch_matmat`` does, in ``op``'s dtype and device, the model's state preserved, chunked to
    ``op.max_columns`` columns, counted in ``op.matvecs`` and ``op.product_seconds``, non-finite
    products refused, all blocks' products summed over the ranks of a distributed operator by one
    all-reduce (``op._reduce_blocks``); returned in the dtype of ``vs``."""
    sizes = [math.prod(s) for s in op.param_shapes]
    if not all(g and all(isinstance(j, int) and 0 <= j < len(sizes) for j in g) and list(g) == sorted(set(g))
               for g in groups):
        raise InvalidInputError(f"groups must be non-empty, strictly ascending lists of parameter indices in [0, {len(sizes)})")
    rows = [sum(sizes[j] for j in g) for g in groups]
    if len(vs) != len(groups) or any(not isinstance(v, torch.Tensor) or v.ndim != 2 or v.shape[0] != m
                                     for v, m in zip(vs, rows)):
        raise InvalidInputError(f"expected one (m_i, c_i) tensor per group, with m_i = {rows}")
    out_dtype = vs[0].dtype if vs else torch.float64
    op._check_product(vs)
    vs = [v.to(op.dtype).to(op.device) for v in vs]
    cols = [v.shape[1] for v in vs]
    pieces: list[list[torch.Tensor]] = [[] for _ in vs]
    op._engine  # the operator's own engine, chosen now if still pending (set-up, not product time)
    t0 = time.perf_counter()
    with preserved_state(op.model, op.mode), torch.no_grad():
        engine = block_engine(op, groups, max(cols, default=1))
        for call in rounds(cols, op.max_columns, engine.pruned_blocks):
            tangents = [_split(vs[i][:, a:b], [op.param_shapes[j] for j in groups[i]]) for i, a, b in call]
            outs = engine.block_hvp([groups[i] for i, _, _ in call], tangents)
            for (i, _, _), parts in zip(call, outs):
                pieces[i].append(torch.cat([p.reshape(p.shape[0], -1) for p in parts], dim=1).T)
    # one all-reduce for every block of a distributed operator; a block without columns has nothing to add
    hv = op._reduce_blocks([p[0] if len(p) == 1 else torch.cat(p, dim=1) if p else v.new_zeros(v.shape)
                            for p, v in zip(pieces, vs)])
    op.product_seconds += time.perf_counter() - t0
    op.matvecs += sum(cols)
    # min and max propagate NaN and show ±Inf without a mask, as torch_matmat checks its products
    if not all(math.isfinite(float(x)) for h in hv if h.numel() for x in torch.aminmax(h)):
        raise InvalidInputError("a Hessian-vector product is not finite: the loss surface has NaN/Inf curvature here")
    return [h.to(out_dtype) for h in hv]


def block_engine(op: "HessianOperator", groups: Sequence[Sequence[int]], columns: int = 1) -> Engine:
    """The engine of ``op``'s block products: chosen at the first call (timed on ``groups``, with as many
    columns per block as that call has, at most :data:`TRIAL_COLUMNS`) and kept; the choice and its checks go
    into ``op.engine_report``."""
    if op._block_engine is not None:
        return op._block_engine
    t0 = time.perf_counter()
    if op._engine.pruned_blocks:
        engine, label, checks = op._engine, op._engine.label, ()
        reason = "the operator's engine: double backward, each block's backward pass pruned to its parameters"
    else:
        engine, label, reason, checks = _choose(op, [tuple(g) for g in groups], max(1, min(columns, TRIAL_COLUMNS)))
    op._block_engine = engine
    build = dict(op.engine_report.build_seconds)
    if checks:
        build["block products"] = time.perf_counter() - t0
    op.engine_report = replace(op.engine_report, block_engine=label, block_reason=reason, block_checks=tuple(checks),
                               build_seconds=build)
    return engine


#: The most columns per block in the block-product trial. It takes the first call's (an SLQ over a view
#: multiplies its probes per block per step): vmap's cost per column depends on how many it batches.
TRIAL_COLUMNS = 8


def _flat(blocks: Sequence[Sequence[torch.Tensor]]) -> tuple[torch.Tensor, ...]:
    return tuple(t for block in blocks for t in block)


def _choose(op: "HessianOperator", groups: list[tuple[int, ...]], trial: int = 1) -> tuple[Engine, str, str, list[EngineCheck]]:
    """Padded products of the operator's engine, or verified pruned engines where they are faster for
    ``op.expected_matvecs`` block columns — one engine for all blocks, or per block the fastest (see the
    module docstring)."""
    first = next(iter(op.data))
    gen = torch.Generator(device="cpu").manual_seed(0)
    tangents = [tuple(torch.randn(trial, *op.param_shapes[j], generator=gen, dtype=op.dtype).to(op.device)
                      for j in g) for g in groups]
    columns, per_block_columns = trial * len(groups), op.expected_matvecs / len(groups)
    t0 = time.perf_counter()
    ref = DoubleBackwardEngine(op._loss, op._primal, [first], (1.0,), use_vmap=False)
    build = time.perf_counter() - t0
    reference = Engine.block_hvp(ref, groups, tangents)  # full products of padded columns, one at a time
    chosen = next((c for c in op.engine_report.checks if c.status == "chosen"), None)
    padded = chosen.seconds_per_column if chosen is not None else None
    if padded is None:  # the operator's engine over all batches, per batch
        t0 = time.perf_counter()
        op._engine.block_hvp(groups, tangents)
        padded = (time.perf_counter() - t0) / (columns * len(op.data))
    padded_label = f"{op.engine} (padded)"
    checks = [EngineCheck(padded_label, "verified", "the operator's engine on zero-padded columns (each a full product)",
                          padded, None)]
    weights = op.data.weights(op.reduction)
    reuse = len(op.data) == 1 and tuple(weights) == (1.0,)
    kept = not isinstance(op._engine, StreamingEngine) and 2 * op._cache_bytes <= op._budget
    # per-block linearisations: only where the operator's own engine is linearize (verified on this model)
    # and K more caches of about its size fit in the budget
    per_block = isinstance(op._engine, LinearizeEngine) and (len(groups) + 2) * op._cache_bytes <= op._budget
    tolerance = agreement_tolerance(op.dtype)
    #: label → (per-block seconds per column, build seconds for all batches, the trial engine, use_vmap)
    verified: dict[str, tuple[list[float], float, Engine, bool]] = {}
    lin = None
    for family in ("double_backward", "linearize") if per_block else ("double_backward",):
        for use_vmap in (False, True):
            mode = "vmap" if use_vmap else "loop"
            try:
                if family == "linearize":
                    label = f"linearize+{mode} (pruned per block)"
                    if lin is None:
                        t0 = time.perf_counter()
                        lin = BlockLinearizeEngine(op._loss, op._primal, [first], (1.0,), False, groups, op._engine)
                        lin_build = (time.perf_counter() - t0) * len(op.data)
                    candidate, cost = lin, (0.0 if reuse else lin_build)
                elif kept:
                    candidate, cost, label = ref, (0.0 if reuse else build), f"double_backward+{mode} (pruned)"
                else:
                    candidate = StreamingEngine(op._loss, op._primal, [first], (1.0,), use_vmap=use_vmap, forward_mode=False)
                    cost, label = 0.0, f"streaming+{mode} (double backward, pruned)"
                candidate.use_vmap = use_vmap
                errors, seconds = [], [0.0] * len(groups)
                for _ in range(2):  # a first call and a steady-state repeat, both checked
                    for i, (g, t) in enumerate(zip(groups, tangents)):
                        t0 = time.perf_counter()
                        out = candidate.block_hvp([g], [t])
                        seconds[i] = (time.perf_counter() - t0) / trial
                        errors.append(relative_error(_flat(out), _flat([reference[i]])))
            except UNSUPPORTED as err:
                checks.append(EngineCheck(label, "unavailable", first_line(err)))
                continue
            per_column, worst = sum(seconds) / len(groups), max(errors)
            if worst > tolerance:
                checks.append(EngineCheck(label, "refused", f"block products differ from double backward by {worst:.2g} "
                                          f"(relative; tolerance {tolerance:.1g})", per_column, worst))
                continue
            checks.append(EngineCheck(label, "verified", "agrees with double backward", per_column, worst))
            verified[label] = (seconds, cost, candidate, use_vmap)
    padded_total = op.expected_matvecs * padded
    # per block the fastest, the padded product included (a full product per column)
    options = {padded_label: ([padded] * len(groups), 0.0), **{k: (v[0], v[1]) for k, v in verified.items()}}
    # within SPEED_MARGIN of the fastest, prefer the padded product (nothing to build), then loops over vmap
    order = sorted(options, key=lambda k: (k != padded_label, "+vmap" in k))
    pick = [next(k for k in order if options[k][0][i] <= (1 + SPEED_MARGIN) * min(o[0][i] for o in options.values()))
            for i in range(len(groups))]
    used = set(pick)
    totals = {k: v[1] + per_block_columns * sum(v[0]) for k, v in options.items()}
    mixed_total = sum(options[k][1] for k in used) + per_block_columns * sum(options[k][0][i] for i, k in enumerate(pick))
    best_single = min((k for k in options if k != padded_label), key=totals.get, default=None)
    single_total = totals[best_single] if best_single is not None else math.inf
    if min(single_total, mixed_total) >= (1 - SPEED_MARGIN) * padded_total:
        reason = (f"the operator's engine on padded columns: no pruned candidate faster by more than {SPEED_MARGIN:.0%} "
                  f"for {op.expected_matvecs} block columns (timed on the first batch, {trial} column{'s' if trial > 1 else ''} per block)")
        checks = [replace(c, status="chosen") if c.label == padded_label else c for c in checks]
        return op._engine, padded_label, reason, checks
    engines: dict[str, Engine] = {}

    def final(label: str) -> Engine:  # the engine over every batch for a verified trial candidate
        if label not in engines:
            _, _, tried, use_vmap = verified[label]
            if reuse:
                engines[label] = tried
            elif isinstance(tried, BlockLinearizeEngine):
                engines[label] = next((e for e in engines.values() if isinstance(e, BlockLinearizeEngine)), None) or \
                    BlockLinearizeEngine(op._loss, op._primal, list(op.data), weights, use_vmap, groups, op._engine)
            elif kept:
                engines[label] = next((e for e in engines.values() if isinstance(e, DoubleBackwardEngine)), None) or \
                    DoubleBackwardEngine(op._loss, op._primal, list(op.data), weights, use_vmap=use_vmap)
            else:
                engines[label] = StreamingEngine(op._loss, op._primal, op.data, weights, use_vmap=use_vmap,
                                                 forward_mode=False)
        return engines[label]

    how = "a kept gradient graph next to the operator's cache" if kept else "streamed: a fresh gradient graph per batch and call"
    if single_total <= mixed_total * (1 + SPEED_MARGIN) or len(used) == 1:
        label = best_single if single_total <= mixed_total * (1 + SPEED_MARGIN) else next(iter(used))
        engine = final(label)
        engine.use_vmap = verified[label][3]
        total = totals[label]
        what = "pruned per block, linearising each block's own gradient" if "per block" in label else \
            f"pruned double backward ({how})"
    else:
        by_group = {g: ((op._engine, None) if k == padded_label else (final(k), verified[k][3]))
                    for g, k in zip(groups, pick)}
        names = [op.param_names[g[0]].rsplit(".", 1)[0] or op.param_names[g[0]] for g in groups]
        label = "per block: " + ", ".join(f"{n} {k}" for n, k in zip(names, pick))
        engine, total, what = MixedBlockEngine(by_group, op._engine, label), mixed_total, "each block its fastest engine"
    reason = (f"{what}: {total:.3g} s against {padded_total:.3g} s for the padded products of {op.engine}, for "
              f"{op.expected_matvecs} block columns (timed on the first batch)")
    checks = [replace(c, status="chosen") if c.label in (used if isinstance(engine, MixedBlockEngine) else {label})
              else c for c in checks]
    return engine, label, reason, checks


@dataclass(frozen=True)
class BlockPlan:
    """How a view's blocks map onto an operator's parameter tensors: ``groups[i]`` the parameters
    block i touches, ``local[i]`` its rows among their coordinates (as ranges), or None where the
    block is exactly those parameters (nothing to pad)."""

    groups: tuple[tuple[int, ...], ...]
    local: tuple[Ranges | None, ...]
    rows: tuple[int, ...]


def plan(ranges: Sequence[Ranges], param_slices: Sequence[slice]) -> BlockPlan:
    """The :class:`BlockPlan` of blocks given by sorted index ranges over parameters laid out as
    ``param_slices`` (consecutive, in θ order)."""
    groups, local, rows = [], [], []
    for block in ranges:
        touched = sorted({j for a, b in block for j, s in enumerate(param_slices) if s.start < b and a < s.stop})
        offset, r0 = {}, 0
        for j in touched:
            offset[j], r0 = r0, r0 + param_slices[j].stop - param_slices[j].start
        mine = [(offset[j] + max(a, s.start) - s.start, offset[j] + min(b, s.stop) - s.start)
                for a, b in block for j in touched for s in [param_slices[j]] if s.start < b and a < s.stop]
        groups.append(tuple(touched))
        rows.append(r0)
        local.append(None if sum(b - a for a, b in mine) == r0 else tuple(mine))
    return BlockPlan(tuple(groups), tuple(local), tuple(rows))


def pad_local(v: torch.Tensor, local: Ranges | None, rows: int) -> torch.Tensor:
    """A block's (n_i, c) columns at its rows among its parameters' ``rows`` coordinates."""
    if local is None:
        return v
    out = v.new_zeros(rows, v.shape[1])
    r0 = 0
    for a, b in local:
        out[a:b] = v[r0:r0 + b - a]
        r0 += b - a
    return out


def restrict_local(hv: torch.Tensor, local: Ranges | None) -> torch.Tensor:
    """The block's own rows of a product over its parameters' coordinates."""
    if local is None:
        return hv
    parts = [hv[a:b] for a, b in local]
    return parts[0].contiguous() if len(parts) == 1 else torch.cat(parts)


def block_product_source(operator: Any) -> Any:
    """The operator behind a view's :class:`~hesslens.operators.base.SymmetricOperator` when it
    offers block products (a :class:`~hesslens.HessianOperator`), else None. As
    :func:`hesslens.linalg.checks.operator` does, a wrapper whose source has ``torch_matmat`` is
    taken to multiply as that source."""
    source = getattr(operator, "source", None)
    if callable(getattr(source, "block_torch_matmat", None)) and hasattr(source, "torch_matmat") \
            and getattr(source, "n", None) == operator.n and isinstance(getattr(source, "blocks", None), dict):
        return source
    return None
