"""The product engine of one :class:`~hesslens.HessianOperator`, chosen when it is first needed.

``engine="auto"`` is chosen (:func:`~hesslens.operators.choice.choose_engine`) at the first product, for
the number of product columns the first estimator announces (:meth:`EngineSlot.expect`): build time plus
that many products at the measured seconds per column, so that a linearisation is built only where the
work that follows can repay it. A requested engine is verified instead
(:func:`~hesslens.operators.choice.verified_engine`). An operator told ``expected_matvecs=`` at
construction, one with a requested engine, and the ranks of a distributed operator (who must choose
together) choose at construction.
"""

from __future__ import annotations

import time
from typing import Any

from .. import memory
from .choice import EngineReport, best_linearize_ratio, choose_engine, verified_engine

#: product columns assumed where nothing was announced
DEFAULT_EXPECTED_MATVECS = 1000


class EngineSlot:
    """What an operator knows of its engine before and after the choice.

    ``requested``: the constructor's ``engine=`` (validated there); ``first_batch``: the batch the
    choice times on (dropped once chosen); ``expected_matvecs``: the constructor's, or None to take
    the first announcement.
    """

    def __init__(self, requested: str, first_batch: Any, expected_matvecs: int | None):
        self.requested = requested
        self.expected_matvecs = DEFAULT_EXPECTED_MATVECS if expected_matvecs is None else expected_matvecs
        self.expected_columns: int | None = None
        self._announced = expected_matvecs is not None
        self._first_batch = first_batch
        self.engine: Any = None
        self.report: EngineReport | None = None
        self.setup_seconds: float | None = None
        #: the choice's product of the first columns asked for, where its reference run was on them
        self.first_products: Any = None

    @property
    def chosen(self) -> bool:
        return self.engine is not None

    def expect(self, matvecs: int, columns: int | None = None) -> None:
        """Record the first announcement of the work ahead; later ones, or any after the choice, are ignored."""
        if not self._announced and not self.chosen:
            self.expected_matvecs, self._announced = max(1, int(matvecs)), True
            self.expected_columns = None if columns is None else max(1, int(columns))

    def take_first_products(self) -> Any:
        """The choice's answer to the first product, once (None afterwards, or if it kept none)."""
        answered, self.first_products = self.first_products, None
        return answered

    def choose(self, op: Any, first: Any = None) -> None:
        """Choose (or verify) ``op``'s engine; ``first``: the asking product's columns split per parameter, or None.

        Reads the operator's loss, snapshot, data, weights, gradient profile and cache sizes; narrows
        ``op.max_columns`` to the width a chosen ``+vmap`` engine was timed at.
        """
        engine = self.requested
        name, _, columns = engine.partition("+")
        profile, weights, first_batch = op._gradient_profile, op.data.weights(op.reduction), self._first_batch
        cache_fits = op._cache_bytes <= op._budget
        # Only a cached engine holds every batch; streaming re-reads the data and needs the first.
        cached = name != "streaming" and (engine != "auto" or cache_fits)
        batches = list(op.data) if cached else [first_batch]
        t0 = time.perf_counter()
        if engine == "auto":
            choice = choose_engine(op._loss, op._primal, batches if cache_fits else op.data, weights,
                                   cache_fits=cache_fits, linearize_blocker=profile.linearize_blocker(),
                                   expected_matvecs=self.expected_matvecs,
                                   linearize_estimate=profile.linearize_estimate(),
                                   linearize_best_ratio=best_linearize_ratio(profile.ops),
                                   columns=self.expected_columns,
                                   linearize_cache=profile.linearize_cache_estimate(len(batches)),
                                   memory_room=max(0, op._budget - op._cache_bytes), first=first)
        else:
            choice = verified_engine(name, columns != "loop", op._loss, op._primal, batches, weights,
                                     source=op.data if name == "streaming" else batches,
                                     linearize_blocker=profile.linearize_blocker())
        self.engine, self.report, self.first_products = choice.engine, choice.report, choice.first_products
        if engine == "auto" and choice.report.engine.endswith("+vmap"):
            op.max_columns = min(op.max_columns, max(2, choice.report.columns))
        if engine == "auto" and (len(choice.report.build_seconds) > 1 or len(batches) > 1):
            # the trial built caches it dropped (an unchosen linearisation, the first batch's): give
            # their pages back rather than keep the trial's peak for the whole analysis
            memory.release_freed_memory()
        self.setup_seconds = time.perf_counter() - t0
        self._first_batch = None  # no longer needed here
