"""Which engine computes the products: every candidate proves itself before it is timed.

Each candidate's products are checked against double backward's on the first batch
(:mod:`hesslens.operators.trial`: agreement within τ = √ε of the dtype on every call) and refused,
with the reason recorded in :class:`EngineReport`, where they disagree or drift. Among the verified
candidates the choice is by speed: build time plus the expected number of products at the measured
seconds per column. Timings jitter, so a candidate earlier in :data:`PREFERENCE` is kept unless a
later one is faster by more than :data:`SPEED_MARGIN`: two runs on the same machine then rarely
choose differently.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..errors import EngineRefusedError
from .engines import (
    ENGINES,
    UNSUPPORTED,
    BatchLoss,
    DoubleBackwardEngine,
    Engine,
    LinearizeEngine,
    Params,
    StreamingEngine,
)
from .trial import EngineCheck, Trial, first_line, start_trial

ONE_COLUMN = "the products have one column: nothing for vmap to batch"

#: Tie-break order of the cached engines: double backward (cheapest to build, smallest cache) before
#: linearize, one column at a time before vmap.
PREFERENCE = ("double_backward+loop", "double_backward+vmap", "linearize+loop", "linearize+vmap")

#: A later engine in PREFERENCE must beat an earlier one by this fraction of the total to be chosen.
SPEED_MARGIN = 0.05

#: The fastest a linearisation's products were against double backward's on the benchmark models (per
#: column, as low as 0.55 on the CNN; 0.8 on the MLP, 1.2 on ResNet-18, 0.86 on the transformer): the
#: most a linearisation is assumed to save.
LINEARIZE_BEST_RATIO = 0.5

#: The same bound for a gradient without a convolution: no such benchmark model's linearisation went below
#: 0.8 of double backward's time per column (the MLP 0.8 and 0.9 on two machines, GPT 0.95, the transformer
#: 0.86-0.87 since its in-place writes are made out of place, 1.5-1.9 before); what a replay saves there is
#: autograd's per-node overhead, not a cheaper kernel. With 0.5 the MLP's linearisation was built for an
#: 800-product SLQ in a fresh process (about 1 s, a quarter of the job) and then not chosen.
LINEARIZE_BEST_RATIO_WITHOUT_CONVOLUTION = 0.8


def best_linearize_ratio(ops: frozenset[str]) -> float:
    """The smallest fraction of double backward's time per column a linearisation is assumed to reach, for a
    gradient whose autograd graph runs the nodes ``ops`` (``grad_fn`` class names)."""
    if any(op.startswith("Convolution") for op in ops):
        return LINEARIZE_BEST_RATIO
    return LINEARIZE_BEST_RATIO_WITHOUT_CONVOLUTION


#: A linearisation whose cache is estimated above this many bytes is not built. Where a gradient saves
#: that much, the products are compute-bound and replaying a trace saves little: on the benchmark's two
#: models past it (ResNet-18, GPT) the linearisation's products took 1.27× and 0.95× double backward's
#: time per column, while its build took 15–18 s (engine timings of a full benchmark run) and its
#: cache 0.36–1.6 GB beyond double backward's peak (``benchmarks.linearize_cache``).
LINEARIZE_MAX_CACHE_BYTES = 2**30


@dataclass(frozen=True)
class EngineReport:
    """How the product engine was chosen: every candidate, its check and its timing."""

    engine: str
    reason: str
    tolerance: float
    columns: int
    checks: tuple[EngineCheck, ...] = ()
    build_seconds: dict[str, float] = field(default_factory=dict)
    #: The engine of block products (:mod:`hesslens.operators.block_products`), chosen at the first
    #: one: "" until then; its reason and candidates' checks (against double backward, first batch).
    block_engine: str = ""
    block_reason: str = ""
    block_checks: tuple[EngineCheck, ...] = ()

    @property
    def timings(self) -> dict[str, float]:
        """Seconds per product column of each verified candidate, and ``build:*`` set-up times."""
        out = {c.label: c.seconds_per_column for c in self.checks if c.seconds_per_column is not None}
        out.update({f"build:{k}": v for k, v in self.build_seconds.items()})
        return out

    @property
    def refused(self) -> tuple[EngineCheck, ...]:
        return tuple(c for c in self.checks if c.status in ("refused", "unavailable"))

    def to_dict(self) -> dict[str, Any]:
        def rows(checks: Sequence[EngineCheck]) -> list[dict[str, Any]]:
            return [{"label": c.label, "status": c.status, "reason": c.reason,
                     "seconds_per_column": c.seconds_per_column, "relative_error": c.relative_error} for c in checks]

        out = {"engine": self.engine, "reason": self.reason, "tolerance": self.tolerance, "columns": self.columns,
               "build_seconds": dict(self.build_seconds), "checks": rows(self.checks)}
        if self.block_engine:
            out["block_products"] = {"engine": self.block_engine, "reason": self.block_reason,
                                     "checks": rows(self.block_checks)}
        return out


@dataclass(frozen=True)
class EngineChoice:
    """The engine to use and the report of how it was chosen."""

    engine: Engine
    report: EngineReport
    #: The reference's products on the caller's first columns where ``engine`` is that very reference
    #: (nothing else was a candidate): the first product's answer, already made.
    first_products: Params | None = None


def _refusal_summary(checks: Sequence[EngineCheck]) -> str:
    return "; ".join(f"{c.label}: {c.reason}" for c in checks if c.status in ("refused", "unavailable"))


def choose_engine(
    loss: BatchLoss,
    params: Params,
    batches: Sequence[Any],
    weights: Sequence[float],
    *,
    cache_fits: bool,
    linearize_blocker: str | None = None,
    expected_matvecs: int = 1000,
    probe_columns: int = 4,
    linearize_estimate: float | None = None,
    linearize_best_ratio: float = LINEARIZE_BEST_RATIO,
    columns: int | None = None,
    linearize_cache: int | None = None,
    memory_room: int | None = None,
    first: Params | None = None,
) -> EngineChoice:
    """Verify the candidate engines on the first batch, then keep the fastest verified one for
    ``expected_matvecs`` products (build time + products × seconds per column).

    Double backward is timed first; the linearisation is built only where its estimated build time,
    ``linearize_estimate`` seconds (:data:`~hesslens.operators.gradient_profile.LINEARIZE_SECONDS_PER_NODE` per
    node of the gradient's graph),
    is below what ``expected_matvecs`` double-backward products cost — with fewer products it could not
    pay for itself even with products ``linearize_best_ratio`` of double backward's (:func:`best_linearize_ratio`
    of the gradient's nodes), and is recorded
    as ``"skipped"``; so is one whose cache, ``linearize_cache`` bytes (estimated), would exceed
    :data:`LINEARIZE_MAX_CACHE_BYTES` or the ``memory_room`` the budget leaves beside the double-backward
    cache: its peak would be paid whether or not it is chosen (the operator gives a dropped cache's pages back,
    :func:`~hesslens.memory.release_freed_memory`, but not the peak). ``columns`` is the
    widest product expected (None: unknown): the trial multiplies at most that many columns, and with one
    column vmap is not tried. ``first``: the columns of the product that asked (see
    :func:`~hesslens.operators.trial.start_trial`); where double backward's loop is chosen and kept as it
    was built, the reference's trial product on them is returned as :attr:`EngineChoice.first_products`
    (where another engine is chosen it is one product more than the job's). A chosen ``+vmap`` engine takes one-column products through its loop where
    that loop was verified too (:attr:`~hesslens.operators.engines.Engine.loop_for_one_column`).

    If the cache does not fit in memory only the streaming engine is considered; its forward-mode
    product is verified the same way and replaced by double backward where it disagrees.
    """
    first_batch = next(iter(batches))  # batches may be a re-iterable source when streaming
    # Not the caller's columns where the cache does not fit: a streaming engine is never the reference kept
    # as built, and a product there (a pass over all the data) is the dearest of all to make twice.
    trial, reference, ref_build = start_trial(loss, params, first_batch, min(probe_columns, columns or probe_columns),
                                              first if cache_fits else None)
    if not cache_fits:
        return _choose_streaming(loss, params, batches, weights, trial, linearize_blocker)
    caller = trial if trial.caller_columns else None
    checks: list[EngineCheck] = []
    build = {DoubleBackwardEngine.name: ref_build}
    built: dict[str, Engine] = {DoubleBackwardEngine.name: reference}
    total: dict[str, float] = {}

    per_column: dict[str, float] = {}

    def time_both(name: str, engine: Engine) -> None:
        for use_vmap in (False, True):  # both column strategies share one cache
            engine.use_vmap = use_vmap
            if use_vmap and columns == 1:  # products of one column at a time: vmap has nothing to batch
                checks.append(EngineCheck(engine.label, "skipped", ONE_COLUMN))
                continue
            try:
                check, seconds = trial.check(engine, is_reference=engine is reference and not use_vmap,
                                             best=min(per_column.values(), default=None))
            except UNSUPPORTED as err:
                checks.append(EngineCheck(engine.label, "unavailable", first_line(err)))
                continue
            checks.append(check)
            if check.status == "verified":
                total[engine.label] = build[name] + expected_matvecs * seconds
                per_column[engine.label] = seconds

    def linearize_skip(per_column: float) -> list[EngineCheck]:
        """The linearisation's checks if it is not to be built at double backward's ``per_column`` seconds."""
        # A linearisation whose build costs more than it can save over the expected products is not built
        # (its tracing dominates a fresh process's set-up on small models): its products are taken to be at
        # best linearize_best_ratio of double backward's.
        limit = LINEARIZE_MAX_CACHE_BYTES if memory_room is None else min(LINEARIZE_MAX_CACHE_BYTES, memory_room)
        saving = (1 - linearize_best_ratio - SPEED_MARGIN) * expected_matvecs * per_column
        if linearize_blocker:
            return [EngineCheck(f"linearize+{m}", "unavailable", linearize_blocker) for m in ("vmap", "loop")]
        if linearize_cache is not None and linearize_cache > limit:
            reason = (f"not built: its cache (about {linearize_cache / 2**20:,.0f} MB, estimated from the gradient's saved "
                      f"tensors) would exceed {limit / 2**20:,.0f} MB; products this large are "
                      "compute-bound, where a linearisation saves little")
            return [EngineCheck(f"linearize+{m}", "skipped", reason) for m in ("vmap", "loop")]
        if linearize_estimate is not None and saving <= linearize_estimate:
            reason = (f"not built: its build (about {linearize_estimate:.2g} s, estimated) would cost more than it "
                      f"can save over {expected_matvecs} products (at most {saving:.2g} s)")
            return [EngineCheck(f"linearize+{m}", "skipped", reason) for m in ("vmap", "loop")]
        return []

    # The reference's first call, every one-time cost in it, bounds its steady rate from above: where even
    # at that rate nothing else could be chosen — one-column products (no vmap) and no linearisation —
    # double backward's loop is the only candidate, and its timing repeats would decide nothing.
    first_rate = trial.reference_seconds / trial.columns
    skipped = linearize_skip(first_rate)
    if columns == 1 and skipped:
        label = f"{DoubleBackwardEngine.name}+loop"
        checks += [EngineCheck(label, "verified", "the only candidate: the reference itself, not timed further",
                               first_rate, 0.0),
                   EngineCheck(f"{DoubleBackwardEngine.name}+vmap", "skipped", ONE_COLUMN)]
        total[label], per_column[label] = ref_build + expected_matvecs * first_rate, first_rate
    else:
        trial = trial.seeded(reference)
        time_both(DoubleBackwardEngine.name, reference)
        skipped = linearize_skip(min(per_column.values(), default=math.inf))
    if skipped:
        checks += skipped
    else:
        try:
            t0 = time.perf_counter()
            built[LinearizeEngine.name] = LinearizeEngine(loss, params, [first_batch], (1.0,), use_vmap=True)
            build[LinearizeEngine.name] = time.perf_counter() - t0
        except UNSUPPORTED as err:
            checks += [EngineCheck(f"linearize+{m}", "unavailable", first_line(err)) for m in ("vmap", "loop")]
        else:
            time_both(LinearizeEngine.name, built[LinearizeEngine.name])
    if not total:
        raise EngineRefusedError("no Hessian-vector product engine gives verified products for this model:\n"
                                 + "\n".join(f"{c.label}: {c.reason}" for c in checks))
    best = min(total.values())
    label = next(lab for lab in PREFERENCE if lab in total and total[lab] <= best + SPEED_MARGIN * abs(best))
    name, mode = label.split("+")
    if not any(c.label.startswith("linearize") and c.status in ("verified", "skipped") for c in checks):
        warnings.warn("hesslens: the linearize engine is not used for this model; using double backward: "
                      + _refusal_summary(checks), stacklevel=3)
    if len(batches) == 1 and tuple(weights) == (1.0,):  # the trial engine already holds the whole cache
        engine = built[name]
        engine.use_vmap = mode == "vmap"
    else:
        engine = ENGINES[name](loss, params, batches, weights, use_vmap=(mode == "vmap"))
    engine.loop_for_one_column = mode == "vmap" and f"{name}+loop" in total
    reason = (f"fastest verified engine for {expected_matvecs} products (build + products, timed on the first batch "
              f"with {trial.columns} columns; ties within {SPEED_MARGIN:.0%} go to the simpler engine)")
    refusals = _refusal_summary(checks)
    if refusals:
        reason += "; not used: " + refusals
    checks = [EngineCheck(c.label, "chosen", c.reason, c.seconds_per_column, c.relative_error) if c.label == label else c
              for c in checks]
    # The reference's run on the caller's columns is that product wherever the reference's loop is kept.
    first_products = caller.reference if caller is not None and engine is reference and not engine.use_vmap else None
    return EngineChoice(engine, EngineReport(label, reason, trial.tolerance, trial.columns, tuple(checks), build),
                        first_products)


def _choose_streaming(loss: BatchLoss, params: Params, batches: Any, weights: Sequence[float], trial: Trial,
                      linearize_blocker: str | None) -> EngineChoice:
    """The first streaming variant (forward-over-reverse before double backward, vmap before a
    loop) whose products pass the check; each is named with its mode in the report."""
    checks: list[EngineCheck] = []
    reason = "the cache would not fit in the memory budget: streaming (nothing kept between products)"
    first_batch = next(iter(batches))
    for forward_mode in ((True, False) if linearize_blocker is None else (False,)):
        how = "forward-over-reverse" if forward_mode else "double backward"
        for use_vmap in (True, False):
            candidate = StreamingEngine(loss, params, [first_batch], (1.0,), use_vmap=use_vmap, forward_mode=forward_mode)
            label = f"{candidate.label} ({how})"
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # a forward-mode failure is recorded below instead
                    check, _ = trial.check(candidate)
            except UNSUPPORTED as err:
                checks.append(EngineCheck(label, "unavailable", first_line(err)))
                continue
            if candidate.forward_mode != forward_mode:  # it fell back to double backward on its own
                checks.append(EngineCheck(label, "unavailable", "no forward-mode derivative"))
                continue
            status = "chosen" if check.status == "verified" else check.status
            checks.append(EngineCheck(label, status, check.reason, check.seconds_per_column, check.relative_error))
            if status == "chosen":
                engine = StreamingEngine(loss, params, batches, weights, use_vmap=use_vmap, forward_mode=forward_mode)
                return EngineChoice(engine, EngineReport(engine.label, f"{reason}, {how}; " + _refusal_summary(checks),
                                                         trial.tolerance, trial.columns, tuple(checks)))
    raise EngineRefusedError("no streaming Hessian-vector product gives verified products for this model:\n"
                             + "\n".join(f"{c.label}: {c.reason}" for c in checks))


def verified_engine(
    name: str,
    use_vmap: bool,
    loss: BatchLoss,
    params: Params,
    batches: Sequence[Any],
    weights: Sequence[float],
    *,
    source: Any,
    linearize_blocker: str | None,
    probe_columns: int = 2,
) -> EngineChoice:
    """A requested engine, built only after it passes the same check on the first batch.

    Raises :class:`~hesslens.errors.EngineRefusedError` naming the disagreement.
    """
    label = f"{name}+{'vmap' if use_vmap else 'loop'}"
    if name == "linearize" and linearize_blocker:
        raise EngineRefusedError(f"engine={label!r} is unavailable for this model: {linearize_blocker}")
    trial, reference, _ = start_trial(loss, params, batches[0], probe_columns)
    extra = {"forward_mode": linearize_blocker is None} if name == "streaming" else {}
    try:
        if name == "double_backward":
            candidate: Engine = reference
        else:
            candidate = ENGINES[name](loss, params, [batches[0]], (1.0,), use_vmap=use_vmap, **extra)
        candidate.use_vmap = use_vmap
        check, _ = trial.check(candidate, is_reference=candidate is reference and not use_vmap)
    except UNSUPPORTED as err:
        raise EngineRefusedError(f"engine={label!r} does not work for this model: {first_line(err)}") from err
    if check.status != "verified":
        raise EngineRefusedError(f"engine={label!r} is refused for this model: {check.reason}; "
                                 "use engine='auto' to pick a verified engine")
    if isinstance(source, list) and len(source) == 1 and tuple(weights) == (1.0,) and name != "streaming":
        engine = candidate
    else:
        engine = ENGINES[name](loss, params, source, weights, use_vmap=use_vmap, **extra)
    # double backward's loop is the reference computation itself; other engines' loops were not verified here
    engine.loop_for_one_column = use_vmap and name == "double_backward"
    check = EngineCheck(label, "chosen", check.reason, check.seconds_per_column, check.relative_error)
    return EngineChoice(engine, EngineReport(label, "requested", trial.tolerance, trial.columns, (check,)))
