"""Per-block Lanczos: SLQ densities and extreme eigenpairs of every diagonal block at once.

The Lanczos recurrences of :mod:`hesslens.linalg.lanczos` and the restarted solver of
:mod:`hesslens.linalg.eigen`, written as generators that yield each block to multiply, run here one
per block, driven by :func:`~hesslens.linalg.blocks.advance_together` so that every iteration is one
block product (:meth:`~hesslens.operators.blocks.BlockView.matmat`) of all blocks still running:
over a :class:`~hesslens.HessianOperator` each block's product pruned to its parameters where the
operator's block engine can (double backward), else one product of the zero-padded columns. See
:mod:`hesslens.linalg.blocks` for how each block's random start vectors are drawn and why they do
not depend on the other blocks.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .. import memory
from ..errors import InvalidInputError
from ..operators.blocks import BlockView
from ..progress import product_bar
from . import checks
from .blocks import _PADDED, BlockResults, _column_room, _product_rows, advance_together, checked_view
from .density import SpectralDensity, _quadrature
from .eigen import restart_plan, restarted_lanczos
from .lanczos import lanczos_recurrences
from .random import gaussian, generator, rademacher_columns, rademacher_signs


# -- spectral densities ---------------------------------------------------------------------------


def block_spectral_density(view: BlockView, steps: int, probes: int, seed: int, *, probe_batch: int | None = None,
                           max_bytes: int | str | None = None, progress: bool | None = None) -> BlockResults:
    """Per-block SLQ (see :func:`hesslens.spectral_density`; arguments checked by it).

    All blocks' recurrences advance together: each step is one block product
    (:meth:`~hesslens.operators.blocks.BlockView.matmat`) of the vectors of every recurrence still
    running (K·p block columns for a group of p probes, each one product: pruned to its block where
    the operator's block products are pruned, zero-padded otherwise). A block of n_i < steps coordinates
    stops after n_i steps (its Krylov space is then exhausted), its rows padded with weight-0 nodes
    to ``steps`` as for a single operator. Memory per probe: each block's (min(steps, n_i) + 3)·n_i
    Lanczos numbers and, per block, two vectors of the product (n long where it pads, the rows of the
    block's parameters where it is pruned); probes run in groups that fit the budget next to the
    n·probes bytes of signs.
    """
    view = checked_view(view)
    t0, n, sizes = time.perf_counter(), view.n, view.sizes
    lengths = [min(steps, s) for s in sizes]
    signs_bytes = memory.estimate(n, probes, itemsize=1)
    in_flight = _PADDED // 8 * sum(_product_rows(view))  # per probe, one column per block: n long each where it pads
    per_probe = memory.estimate(sum((m + 3) * s for m, s in zip(lengths, sizes)) + in_flight)
    batch = memory.items_that_fit(per_probe, probe_batch or probes, signs_bytes, max_bytes, advice="lower steps, or "
                                  "use fewer blocks at once (view.subset)", what=f"per-block SLQ of {len(view)} blocks "
                                  f"with {steps} steps (one probe's Lanczos bases, block products and the signs)")
    signs = rademacher_signs(n, probes, generator(seed))  # the whole operator's probes, drawn once
    nodes = [np.zeros((probes, steps)) for _ in sizes]
    weights = [np.zeros((probes, steps)) for _ in sizes]
    used = [0] * len(view)
    start_count = view.matvecs
    with product_bar(total=probes * sum(lengths), desc=f"SLQ ({len(view)} blocks)", enabled=progress) as bar:
        for start in range(0, probes, batch):
            stop = min(probes, start + batch)
            group = signs[:, start:stop]
            solvers = {i: lanczos_recurrences(rademacher_columns(view.restrict(group, i)), lengths[i])
                       for i in range(len(view))}
            tris = advance_together(view, solvers, len(view) * (stop - start), bar.update)
            planned = (stop - start) * sum(lengths)
            done = sum(t.matvecs for t in tris.values())
            if done < planned:
                bar.total -= planned - done
                bar.refresh()
            for i, tri in tris.items():
                used[i] += tri.matvecs
                for r in range(stop - start):
                    nodes[i][start + r], weights[i][start + r] = _quadrature(tri.alpha[r], tri.beta[r],
                                                                             int(tri.lengths[r]), steps)
    seconds = time.perf_counter() - t0
    results = tuple(
        SpectralDensity(nodes[i], weights[i], sizes[i], used[i], seconds,
                        {"steps": steps, "probes": probes, "seed": int(seed), "probe": "rademacher",
                         "reorthogonalisation": "full", "block": name, "block_probes": "rows of the whole operator's"})
        for i, name in enumerate(view.names))
    return BlockResults(view.names, results, sizes, view.matvecs - start_count, seconds)


# -- extreme eigenvalues --------------------------------------------------------------------------


def block_eigenvalues(view: BlockView, k: int, which: str, *, tol: float, max_matvecs: int | None, seed: int,
                      v0: Any, block_size: int | None, ncv: int | None, max_bytes: int | str | None,
                      progress: bool | None) -> BlockResults:
    """Per-block extreme eigenpairs (see :func:`hesslens.eigenvalues`; arguments checked by it).

    Every block runs its own thick-restarted block Lanczos (its own basis, restarts, convergence
    test against its own ‖H_ii‖ and its own ``max_matvecs`` cap); at each iteration the blocks of
    all solvers still running are multiplied in one shared block product
    (:meth:`~hesslens.operators.blocks.BlockView.matmat`). A block small enough for
    the dense path (n_i ≤ ncv + b) contributes its identity columns to the first product and is
    diagonalised. ``v0`` is None or a mapping block name → (n_i,) or (n_i, j) warm start.
    """
    view = checked_view(view)
    t0, n, sizes, names = time.perf_counter(), view.n, view.sizes, view.names
    plans = [restart_plan(s, k, which, tol, max_matvecs, block_size, ncv, what=f"block {name!r} (n={s}): ")
             for name, s in zip(names, sizes)]
    b = plans[0].b
    starts: dict[int, torch.Tensor] = {}
    if v0 is not None:
        if not isinstance(v0, Mapping):
            raise InvalidInputError("v0 for a block view must be a mapping of block names to (n_i,) or (n_i, j) arrays")
        for name, v in v0.items():
            i = view.index(name)
            starts[i] = checks.start_vectors(f"v0[{name!r}]", v, sizes[i], max_columns=b)
    lanczos_blocks = [i for i, (p, s) in enumerate(zip(plans, sizes)) if not p.dense(s)]
    first = sum(s if p.dense(s) else b for p, s in zip(plans, sizes))
    fixed = sum(p.peak_bytes(s) for p, s in zip(plans, sizes)) + (memory.estimate(n, b) if lanczos_blocks else 0)
    room = _column_room(view, fixed, first, max_bytes, f"eigenvalues(k={k}, which={which!r}) of {len(view)} blocks "
                        "(their bases or dense matrices and one product column)", "lower k, ncv or block_size, "
                        "or use fewer blocks at once (view.subset)")
    gen = generator(seed)
    full_start = gaussian(n, b, gen) if lanczos_blocks else None  # as eigenvalues(op, seed=) draws it
    state = gen.get_state()
    solvers, converged = {}, np.zeros(len(view), dtype=bool)
    for i, (plan, s) in enumerate(zip(plans, sizes)):
        block_gen = torch.Generator(device="cpu")
        block_gen.set_state(state)

        def start(i: int = i) -> torch.Tensor:
            block = view.restrict(full_start, i)  # type: ignore[arg-type]
            if i in starts:
                block[:, : starts[i].shape[1]] = starts[i]
            return block

        def report(res: np.ndarray, done: np.ndarray, scale: float, restarts: int, i: int = i) -> None:
            converged[i] = bool(done.all())

        solvers[i] = restarted_lanczos(s, plan, start, block_gen, t0, report, label=f" block {names[i]!r}")
    with product_bar(total=None, desc=f"Lanczos ({which}, {len(view)} blocks)", enabled=progress) as bar:
        def on_product(columns: int) -> None:
            if not bar.disable:
                bar.set_postfix_str(f"{int(converged.sum())}/{len(lanczos_blocks)} iterative blocks converged",
                                    refresh=False)
            bar.update(columns)

        start_count = view.matvecs
        found = advance_together(view, solvers, room, on_product)
    results = tuple(found[i] for i in range(len(view)))
    return BlockResults(names, results, sizes, view.matvecs - start_count, time.perf_counter() - t0)
