"""The trial of a candidate product engine: its products against double backward's, and its speed.

A candidate is trusted only after its products on seeded trial columns agree with the reference —
double backward, one column at a time (reverse-over-reverse through a kept gradient graph: the most
general product autograd offers) — on *every* one of at least two calls:

    max |H_e V − H_ref V|  ≤  τ · max |H_ref V|,      τ = √ε(dtype)

(√ε: 1.5e-8 in float64, 3.5e-4 in float32; the defects this guards against were 0.5–100 % off).
The same calls time it: seconds per product column, the better of two steady-state calls (on a slow
model, of the first call and one repeat), of one column where the engine loops and at the trial's width
where it vmaps. A candidate clearly slower than the best so far is called less: one repeat on a fast
model, none after a slow first call (it is then ``skipped``, not verified: it cannot be chosen). :mod:`hesslens.operators.choice` weighs the
verified candidates; :mod:`hesslens.operators.block_products` does the same for block products.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from .engines import BatchLoss, DoubleBackwardEngine, Engine, Params

#: A first (warm-up) call slower than this is taken as the measurement, and the repeat call that
#: checks replay consistency is the only one (of one column where the engine loops): on large models
#: set-up stays a few gradients.
SLOW_CALL_SECONDS = 1.0

#: A candidate whose first steady-state repeat costs more than this many times the best rate measured so
#: far gets no second repeat: the better of two would refine a rate that cannot win (ties are decided
#: within 5 %), and on the benchmark CNN those repeats were a fifth of the engine choice.
REFINE_RATIO = 1.3


def agreement_tolerance(dtype: torch.dtype) -> float:
    """τ = √ε of the products' dtype: half the digits, far above round-off, far below a defect."""
    return float(torch.finfo(dtype).eps) ** 0.5


@dataclass(frozen=True)
class EngineCheck:
    """One candidate: ``status`` is ``"chosen"``, ``"verified"``, ``"refused"`` (wrong products),
    ``"unavailable"`` (it raised, or is known to crash) or ``"skipped"`` (not built, or not called past a
    first slow call: it could not pay off)."""

    label: str
    status: str
    reason: str = ""
    seconds_per_column: float | None = None
    relative_error: float | None = None


def first_line(err: BaseException) -> str:
    """The first line of an error's message (at most 200 characters), as a check's reason."""
    return (str(err).splitlines() or [type(err).__name__])[0][:200]


def relative_error(out: Params, ref: Params) -> float:
    """max |out − ref| / max |ref| over all tensors (0 where both are zero, inf where only ref is, or on NaN)."""
    scale = max(float(r.abs().max()) for r in ref) if ref else 0.0
    err = max(float((o - r).abs().max()) for o, r in zip(out, ref)) if ref else 0.0
    if err != err:  # NaN
        return float("inf")
    return err / scale if scale > 0 else (0.0 if err == 0 else float("inf"))


def first_columns(tangents: Params, k: int) -> Params:
    """The first ``k`` columns of every tangent."""
    return tuple(t[:k] for t in tangents)


@dataclass
class Trial:
    """Trial columns, the reference products on them (and how long they took), and the tolerance."""

    tangents: Params
    reference: Params
    reference_seconds: float
    tolerance: float
    columns: int
    slow: bool
    caller_columns: bool = False  # the tangents are the first product's own columns (see start_trial)

    def seeded(self, reference: Engine) -> Trial:
        """This trial on seeded columns: candidates are compared, and timed, on columns no caller
        chose (a caller's first columns may be degenerate: zero, or a unit vector)."""
        if not self.caller_columns:
            return self
        return _reference_trial(reference, seeded_columns([t[0] for t in self.tangents], self.columns),
                                self.columns, self.slow, False)

    def _timed(self, engine: Engine, columns: int) -> tuple[Params, float]:
        t0 = time.perf_counter()
        out = engine.hvp(first_columns(self.tangents, columns))
        return out, time.perf_counter() - t0

    def check(self, engine: Engine, *, is_reference: bool = False, best: float | None = None) -> tuple[EngineCheck, float]:
        """Every call against the reference: a first call at the trial's width (for the reference engine
        itself, the reference computation), a repeat and, on fast models, one more repeat so that the
        timing is the better of two steady-state calls — unless the first repeat's rate is beyond
        :data:`REFINE_RATIO` times ``best`` (the best seconds per column measured so far). An engine that
        loops repeats on one column: it multiplies one column at a time in use too
        (:meth:`~hesslens.operators.engines.Engine.columns_per_call`), so its rate is per column. A vmapped
        engine repeats at the trial's width: on one column vmap has nothing to batch and costs what the
        loop does (on the benchmark's ResNet-18 a one-column repeat made vmap look as fast as the loop,
        where two columns cost it more per column). Returns the check (status ``verified`` or
        ``refused``) and the measured seconds per column. On a slow model (a call above
        :data:`SLOW_CALL_SECONDS`) a candidate whose first call is already beyond :data:`REFINE_RATIO` times
        ``best`` is not called again: its check is ``skipped``, with that call's rate and agreement."""
        if is_reference:
            first, first_seconds = self.reference, self.reference_seconds
        else:
            first, first_seconds = self._timed(engine, self.columns)
        errors = [relative_error(first, self.reference)]
        slow = self.slow or first_seconds > SLOW_CALL_SECONDS
        first_rate = first_seconds / self.columns
        if slow and best is not None and not is_reference and first_rate > REFINE_RATIO * best \
                and errors[0] <= self.tolerance:
            # On a slow model one call is the measurement: a repeat would confirm a rate that cannot win (on the
            # benchmark GPT, vmap's repeat was 2.2 s of an 8.8 s set-up), and an engine not chosen needs no
            # proof that its replays agree.
            reason = (f"not timed further: its first call ({first_rate:.3g} s per column) was beyond {REFINE_RATIO}× "
                      f"the best rate so far ({best:.3g} s)")
            return EngineCheck(engine.label, "skipped", reason, first_rate, errors[0]), first_rate
        width = self.columns if engine.use_vmap else 1
        rates = []
        for _ in range(1 if slow else 2):
            if rates and best is not None and rates[0] > REFINE_RATIO * best:
                break
            out, t = self._timed(engine, width)
            errors.append(relative_error(out, first_columns(self.reference, width)))
            rates.append(t / width)
        # The first call allocates and compiles; on a slow model its rate is taken beside the single
        # repeat's, the better of the two (for the reference the first call is the very first product,
        # with every one-time cost in it: taken alone it would favour the candidates timed after it).
        # Otherwise the steady-state repeats are the measurement.
        per_column = min(first_rate, *rates) if slow else min(rates)
        worst = max(errors)
        if worst <= self.tolerance:
            return EngineCheck(engine.label, "verified", "agrees with double backward", per_column, worst), per_column
        which = "first call" if errors[0] > self.tolerance else "repeated call (replays drift)"
        reason = (f"products differ from double backward by {worst:.2g} (relative; tolerance {self.tolerance:.1g}) "
                  f"on the {which}")
        return EngineCheck(engine.label, "refused", reason, per_column, worst), per_column


def seeded_columns(like: Params, columns: int) -> Params:
    """``columns`` seeded Gaussian columns shaped like each tensor of ``like``: the trial's own."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    return tuple(torch.randn(columns, *p.shape, generator=gen, dtype=p.dtype).to(p.device) for p in like)


def _reference_trial(ref: Engine, tangents: Params, columns: int, slow: bool, caller: bool) -> Trial:
    t0 = time.perf_counter()
    products = ref.hvp(tangents)
    seconds = time.perf_counter() - t0
    dtype = tangents[0].dtype if tangents else torch.float64
    return Trial(tangents, products, seconds, agreement_tolerance(dtype), columns, slow, caller)


def start_trial(loss: BatchLoss, params: Params, batch: Any, columns: int,
                first: Params | None = None) -> tuple[Trial, DoubleBackwardEngine, float]:
    """Build the reference engine on ``batch`` and its products on the trial's columns.

    ``first``: the columns of the product that asked for the engine, shaped like the tangents. Where
    they are exactly the trial's width the reference multiplies them (``Trial.caller_columns``): where
    the reference's loop is then kept, that product is the caller's answer and is not made twice; before
    candidates are compared the trial moves to seeded columns (:meth:`Trial.seeded`).
    """
    t0 = time.perf_counter()
    ref = DoubleBackwardEngine(loss, params, [batch], (1.0,), use_vmap=False)
    build = time.perf_counter() - t0
    slow = build > SLOW_CALL_SECONDS / 4
    if slow:
        columns = min(columns, 2)
    caller = first is not None and len(first) == len(params) and all(t.shape[0] == columns for t in first)
    tangents = tuple(first) if caller else seeded_columns(params, columns)
    return _reference_trial(ref, tangents, columns, slow, caller), ref, build
