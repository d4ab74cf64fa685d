"""The algorithms on every diagonal block of one operator at once (local, layer-wise Hessians).

:func:`~hesslens.spectral_density`, :func:`~hesslens.eigenvalues`, :func:`~hesslens.trace` and
:func:`~hesslens.exact_spectrum` accept a :class:`~hesslens.operators.blocks.BlockView` where they
accept an operator and dispatch here; each returns a :class:`BlockResults`, block name → the usual
result. The blocks' computations are independent, but their products are shared: at every step
the vectors of all blocks still running go through ONE call of :meth:`BlockView.matmat`, split into
several calls only where the memory budget demands it (which changes no result). Over a
:class:`~hesslens.HessianOperator` that call is the operator's block product
(:mod:`hesslens.operators.block_products`): with double backward each block's product is a
backward pass pruned to the block's own parameters, from the one operator's gradient graph (kept,
or built once per batch and shared by all blocks when streaming); an operator with a forward-mode
engine (linearize, forward-over-reverse streaming) multiplies the zero-padded columns unless a pruned
double-backward block engine proved itself and faster (``op.engine_report.block_engine``). Over
dense tensors and SciPy operators it is one product of the zero-padded columns. Either way one
block column is one product column in ``matvecs``.

What each block's randomness is, so that a block's result depends only on the seed and its own
index ranges — never on which other blocks are in the view:

* SLQ probes: the (n, probes) Rademacher signs that ``spectral_density(op, probes=, seed=)``
  draws for the whole operator; block i's probes are their rows I_i (normalised on the block).
* Eigenvalue start blocks: the (n, b) Gaussian block ``eigenvalues(op, seed=)`` draws; block i
  starts from its rows I_i, and the random replacements after a breakdown continue, per block,
  the generator's stream after that draw.
* Hutch++: the (n, m/3) sketch and the (n, m − 2·m/3) probes of ``trace(op, m, seed=)``; block i
  uses their rows (and the first min(m/3, n_i) sketch columns). Hutchinson: the (n, m) probes.

A view with one block covering the whole operator therefore reproduces the single-operator result.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Callable, Generator

import numpy as np
import torch

from .. import memory
from ..errors import InvalidInputError
from ..operators.base import _symmetrise_in_place
from ..operators.blocks import BlockView
from ..progress import product_bar
from . import checks
from .random import generator, rademacher, rademacher_columns, rademacher_signs
from .trace import _PER_COLUMN, TraceResult

#: Largest block exact_spectrum() forms densely by default (a 4096×4096 float64 matrix is 128 MiB).
DEFAULT_MAX_BLOCK = 4096
#: Bytes per coordinate of one product column in flight: its input and the product, float64.
_PADDED = 2 * 8


def _product_rows(view: BlockView) -> tuple[int, ...]:
    """Per block, the length of the columns that :meth:`BlockView.matmat` holds for it: n where the
    product pads (dense and SciPy operators; a HessianOperator whose block products are, or may yet
    be, the padded product of a forward-mode engine), the rows m_i ≥ n_i of the parameters the block
    touches where they are pruned (the operator's engine prunes, or the pruned block engine has been
    chosen). The operator's own per-call buffers (at most ``max_columns`` columns of its engine's
    tangents and products at a time, a second gradient graph for a pruned block engine) are bounded
    by the operator against its own budget, as for its plain products."""
    plan = view._plan
    if plan is not None:
        source, blocks = plan
        engine = getattr(source, "_block_engine", None)
        if engine is None:
            engine = getattr(source, "_engine", None)
        if getattr(engine, "pruned_blocks", False):
            return tuple(blocks.rows)
    return (view.n,) * len(view)


@dataclass(frozen=True, eq=False)
class BlockResults(Mapping):
    """One result per block, in the view's order: ``results["fc1"]``, ``for name in results``,
    ``results.items()``. Keys are block names only (a Sequential's blocks are named "0", "2", …).

    ``matvecs`` counts the operator's product columns in all (each block column — pruned to the
    block or zero-padded, see :meth:`BlockView.matmat` — and each full-length column is one
    product); each block's own result counts the columns that served it. ``seconds`` is the
    wall time of the whole call.
    """

    names: tuple[str, ...]
    results: tuple[Any, ...]
    sizes: tuple[int, ...]
    matvecs: int = 0
    seconds: float = 0.0

    def __getitem__(self, name: str) -> Any:
        try:
            return self.results[self.names.index(name)]
        except ValueError:
            raise KeyError(name) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        kind = type(self.results[0]).__name__ if self.results else "nothing"
        return f"BlockResults({len(self)} blocks of {kind}: {', '.join(self.names[:6])}{', …' if len(self) > 6 else ''})"


def checked_view(view: BlockView) -> BlockView:
    """The view over its operator checked as :func:`hesslens.linalg.checks.operator` checks any
    operator (dense inputs symmetric and finite, foreign products guarded)."""
    if not isinstance(view, BlockView):
        raise InvalidInputError(f"expected a BlockView, got {type(view).__name__}")
    return view.with_operator(checks.operator(view.operator))


def products(view: BlockView, vs: list[torch.Tensor | None], max_columns: int) -> list[torch.Tensor | None]:
    """:meth:`BlockView.matmat` in calls of at most ``max_columns`` block columns in all (a block's
    columns may be split between calls); one call when everything fits."""
    cols = [0 if v is None else v.shape[1] for v in vs]
    if sum(cols) <= max_columns:
        return view.matmat(vs)
    pieces: list[list[torch.Tensor]] = [[] for _ in vs]
    current: list[torch.Tensor | None] = [None] * len(vs)
    room = max_columns

    def flush() -> None:
        for i, out in enumerate(view.matmat(current)):
            if out is not None:
                pieces[i].append(out)
                current[i] = None

    for i, v in enumerate(vs):
        done = 0
        while done < cols[i]:
            take = min(room, cols[i] - done)
            current[i] = v[:, done:done + take]  # type: ignore[index]
            done, room = done + take, room - take
            if room == 0:
                flush()
                room = max_columns
    if room < max_columns:
        flush()
    return [None if v is None else torch.cat(p, dim=1) if p else v.new_zeros(v.shape)
            for v, p in zip(vs, pieces)]


def advance_together(view: BlockView, solvers: dict[int, Generator], max_columns: int,
                     on_product: Callable[[int], None]) -> dict[int, Any]:
    """Drive per-block generators (each yields the block to multiply and is sent H_ii times it)
    with shared products until every one has returned; their results by block index."""
    pending = {i: next(s) for i, s in solvers.items()}
    results: dict[int, Any] = {}
    while pending:
        outs = products(view, [pending.get(i) for i in range(len(view))], max_columns)
        on_product(sum(v.shape[1] for v in pending.values()))
        for i in list(pending):
            try:
                pending[i] = solvers[i].send(outs[i])
            except StopIteration as finished:
                results[i] = finished.value
                del pending[i]
    return results


def _column_room(view: BlockView, fixed: int, wanted: int, max_bytes: int | str | None, what: str, advice: str, *,
                 full: bool = False, drawn: int = 0) -> int:
    """How many product columns fit next to ``fixed`` bytes (at most ``wanted``, at least one), each
    :data:`~hesslens.linalg.trace._PER_COLUMN` vectors as long as the longest column the product holds
    (:func:`_product_rows`: n where it pads, the longest block's m_i where it is pruned; n for
    ``full``-length products, :meth:`BlockView.full_matmat`), plus ``drawn`` bytes per column that
    the caller holds beside it."""
    length = view.n if full else max(_product_rows(view))
    return memory.items_that_fit(_PER_COLUMN * memory.estimate(length) + drawn, max(1, wanted), fixed, max_bytes,
                                 what=what, advice=advice)


# -- traces ---------------------------------------------------------------------------------------


def block_trace(view: BlockView, num_matvecs: int, method: str, seed: int, *, max_bytes: int | str | None = None,
                progress: bool | None = False) -> BlockResults:
    """Per-block traces tr(H_ii) with standard errors (see :func:`hesslens.trace`; arguments checked by it).

    ``"hutchinson"``: ONE pass of ``num_matvecs`` full-length Rademacher probes z through the whole
    operator (not its blocks): tr(H_ii) ≈ mean_r z_iᵀ(Hz)_i. Unbiased, since E[z_iᵀ H_ij z_j] = 0
    for j ≠ i; the cross-block terms add variance (Σ_{j≠i} 2‖H_ij‖_F² per probe), included in the
    standard error. ``num_matvecs`` products in all, shared by every block.

    ``"hutch++"``: per block, Hutch++ on H_ii itself through block products (:meth:`BlockView.matmat`:
    pruned to each block over a HessianOperator whose engine can, zero-padded otherwise): a sketch
    Q_i = orth(H_ii S_i) of s_i = min(m/3, n_i) columns, tr(Q_iᵀ H_ii Q_i) exactly, and m − 2·(m/3)
    deflated probes (m = ``num_matvecs``); all blocks batched in each of the three phases. Each
    block costs 2 s_i + m − 2·(m/3) ≤ m product columns (fewer only for blocks smaller than m/3,
    which the sketch then spans exactly), so about K·m in all.
    """
    view = checked_view(view)
    t0, n, sizes, count0 = time.perf_counter(), view.n, view.sizes, view.matvecs
    gen = generator(seed)
    s_all = num_matvecs // 3 if method == "hutch++" else 0
    s = [min(s_all, size) for size in sizes]
    count = num_matvecs - 2 * s_all
    if s_all:
        memory.check(memory.estimate(n, s_all) + 2 * memory.estimate(sum(si * ni for si, ni in zip(s, sizes))),
                     f"the per-block Hutch++ sketches (the {n}×{s_all} draw, H_ii·S_i and their bases)", max_bytes,
                     advice="lower num_matvecs or use method='hutchinson'")
    fixed = 2 * memory.estimate(sum(si * ni for si, ni in zip(s, sizes))) + memory.estimate(n, count, itemsize=1)
    # Hutch++: block columns, each block's probes its rows of a full-length draw (n/K of it per column
    # where columns are shorter than n); Hutchinson: full-length columns through the whole operator.
    pruned = max(_product_rows(view)) < n
    room = _column_room(view, fixed, max(count, len(view) * s_all), max_bytes,
                        f"per-block trace with {num_matvecs} products (the sketches, the probes' signs and one "
                        "product column)", "lower num_matvecs", full=not s_all,
                        drawn=memory.estimate(-(-n // len(view))) if s_all and pruned else 0)
    per_block = [2 * si + count for si in s] if s_all else [num_matvecs] * len(view)
    total = sum(per_block) if s_all else num_matvecs
    with product_bar(total=total, desc=f"trace ({method}, {len(view)} blocks)", enabled=progress) as bar:
        if s_all:
            sketch = rademacher(n, s_all, gen)
            hs = products(view, [view.restrict(sketch, i)[:, :si] for i, si in enumerate(s)], room)
            del sketch
            bar.update(sum(s))
            qs = [torch.linalg.qr(h)[0] for h in hs]
            exact = [float((q * hq).sum(0).sum()) for q, hq in zip(qs, products(view, qs, room))]  # type: ignore[arg-type]
            bar.update(sum(s))
        signs = rademacher_signs(n, count, gen)
        forms: list[list[torch.Tensor]] = [[] for _ in sizes]
        group = max(1, room // len(view)) if s_all else room  # probes per pass: K·group block or group full columns
        for start in range(0, count, group):
            stop = min(count, start + group)
            z = rademacher_columns(signs[:, start:stop])
            if s_all:  # (I − Q_i Q_iᵀ) g_i: each block's deflated probes, through block products
                deflated = [view.restrict(z, i) for i in range(len(view))]
                deflated = [g - q @ (q.T @ g) for g, q in zip(deflated, qs)]
                for i, hz in enumerate(products(view, deflated, room)):  # type: ignore[arg-type]
                    forms[i].append((deflated[i] * hz).sum(0))
                bar.update(len(view) * (stop - start))
            else:  # full-length probes through the whole operator: z_iᵀ (Hz)_i for every block
                hz = view.full_matmat(z)
                for i in range(len(view)):
                    forms[i].append((view.restrict(z, i) * view.restrict(hz, i)).sum(0))
                bar.update(stop - start)
    seconds = time.perf_counter() - t0
    results = []
    for i in range(len(view)):
        samples = torch.cat(forms[i]).numpy()
        stderr = float(samples.std(ddof=1) / np.sqrt(len(samples)))
        results.append(TraceResult((exact[i] if s_all else 0.0) + float(samples.mean()), stderr, per_block[i], method,
                                   seconds, samples))
    return BlockResults(view.names, tuple(results), sizes, view.matvecs - count0, seconds)


# -- exact spectra --------------------------------------------------------------------------------


def _exact_peak(sizes: tuple[int, ...], rows: tuple[int, ...], columns: int) -> int:
    """Peak bytes of :func:`block_exact_spectrum` with ``columns`` identity columns per product:
    the product (block i's columns ``rows[i]`` long, :func:`_product_rows`), the dense blocks being
    filled, and one working copy for eigvalsh."""
    peak, c0, bounds = 0, 0, []
    for size in sizes:
        bounds.append((c0, c0 + size))
        c0 += size
    for start in range(0, c0, columns):
        stop = min(c0, start + columns)
        alive = [s for s, (a, b) in zip(sizes, bounds) if a < stop and b > start]
        finishing = [s for s, (a, b) in zip(sizes, bounds) if start < b <= stop]
        product = sum(memory.estimate(r, min(b, stop) - max(a, start)) for r, (a, b) in zip(rows, bounds)
                      if a < stop and b > start)
        peak = max(peak, product * _PADDED // 8
                   + sum(memory.estimate(s, s) for s in alive) + max(memory.estimate(s, s) for s in finishing or [0]))
    return peak


def block_exact_spectrum(view: BlockView, *, max_block: int | None = None, max_bytes: int | str | None = None
                         ) -> BlockResults:
    """Every eigenvalue of every block H_ii, ascending (see :func:`hesslens.exact_spectrum`).

    Each block is assembled densely from products with its identity columns — the columns of all
    blocks batched, as many per block product (:meth:`BlockView.matmat`) as the memory budget
    allows — symmetrised and diagonalised with ``torch.linalg.eigvalsh`` as soon as its last column
    is in (n_i products per block, n in all for a covering view). Blocks larger than ``max_block`` (default
    :data:`DEFAULT_MAX_BLOCK` = 4096 coordinates) are refused, naming them, before any product: use
    ``view.subset(...)`` for the small blocks and :func:`~hesslens.spectral_density` or
    :func:`~hesslens.eigenvalues` for the others. The peak memory (the product — zero-padded
    n-length columns, or each block's columns at its own length where the operator's block products
    are pruned —, the blocks being filled, one working copy) is checked against the budget first.
    """
    limit = DEFAULT_MAX_BLOCK if max_block is None else checks.integer("max_block", max_block, 1)
    view = checked_view(view)
    t0, sizes, count0 = time.perf_counter(), view.sizes, view.matvecs
    rows = _product_rows(view)
    large = [f"{name!r} ({size})" for name, size in zip(view.names, sizes) if size > limit]
    if large:
        raise InvalidInputError(f"exact_spectrum forms blocks of at most max_block={limit} coordinates densely; "
                                f"too large: {', '.join(large[:8])}{', …' if len(large) > 8 else ''}. Use view.subset() "
                                "for the small blocks and spectral_density() or eigenvalues() for the large ones, or "
                                "raise max_block")
    columns = sum(sizes)
    budget = memory.budget(max_bytes)
    while columns > 1 and _exact_peak(sizes, rows, columns) > budget:
        columns = (columns + 1) // 2
    memory.check(_exact_peak(sizes, rows, columns), f"the dense blocks of {len(view)} local Hessians (largest "
                 f"{max(sizes)}×{max(sizes)} float64, with a working copy) and a product column", max_bytes,
                 advice="lower max_block or use fewer blocks at once (view.subset)")
    dense: list[torch.Tensor | None] = [None] * len(view)
    spectra: list[np.ndarray | None] = [None] * len(view)
    filled = [0] * len(view)
    i, c = 0, 0  # the next identity column: column c of block i
    while i < len(view):
        vs: list[torch.Tensor | None] = [None] * len(view)
        room = columns
        while room and i < len(view):  # consecutive columns of the blocks' identities, `columns` per product
            take = min(room, sizes[i] - c)
            eye = torch.zeros(sizes[i], take, dtype=torch.float64)
            eye[torch.arange(c, c + take), torch.arange(take)] = 1.0
            vs[i] = eye
            room, c = room - take, c + take
            if c == sizes[i]:
                i, c = i + 1, 0
        _assemble(view, vs, dense, spectra, filled)
    return BlockResults(view.names, tuple(spectra), sizes, view.matvecs - count0, time.perf_counter() - t0)


def _assemble(view: BlockView, vs: list, dense: list, spectra: list, filled: list) -> None:
    """One product (:meth:`BlockView.matmat`) of the queued identity columns; finished blocks are
    diagonalised and freed."""
    for i, out in enumerate(view.matmat(vs)):
        if out is None:
            continue
        size = view.sizes[i]
        if dense[i] is None:
            dense[i] = torch.empty(size, size, dtype=torch.float64)
        dense[i][:, filled[i]:filled[i] + out.shape[1]] = out
        filled[i] += out.shape[1]
        if filled[i] == size:
            _symmetrise_in_place(dense[i], 256)
            spectra[i] = torch.linalg.eigvalsh(dense[i]).numpy()
            dense[i] = None
