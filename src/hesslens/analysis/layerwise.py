"""Layer-wise (local) Hessians: the spectrum and metrics of every functional block of a model.

Bolshim & Kugaevskikh (2025, arXiv 2510.17486) read a network as a chain of functional blocks, each a
parameterised map with parameters θ_i. The **local Hessian** of block i is the diagonal block
H_ii = ∇²_{θ_i} L of the full Hessian of the training loss L — its second derivatives in θ_i with every
other parameter held fixed. :func:`layerwise` computes, for every block, its spectral density, extreme
eigenvalues, trace and the metrics of :mod:`hesslens.analysis.metrics`, in one table.

**One operator.** The model's :class:`~hesslens.HessianOperator` is built once (one set of checks, one
engine choice); the blocks are a :class:`~hesslens.operators.blocks.BlockView` of it, so every step of
every algorithm multiplies all blocks still running in ONE block product
(:meth:`~hesslens.HessianOperator.block_torch_matmat`). With double backward each block's product is
a backward pass of the operator's kept gradient graph (one per batch) pruned to the block's
parameters — the work of an operator over that block alone, without building K operators; streaming
double backward builds one graph per batch and call, shared by all blocks. With a forward-mode engine
(linearize, forward-over-reverse streaming) the operator multiplies the zero-padded columns (each a
full product), or pruned block engines — double backward, or a linearisation of each block's own
gradient, per block the fastest — where they agree with double backward on the first batch and are
faster (``engine_report.block_engine``). Either way one block column counts
as one product column.

* blocks of at most ``exact_below`` coordinates (default :data:`DEFAULT_EXACT_BELOW` = 2048; a block of
  one coordinate always) are formed densely and diagonalised (:func:`~hesslens.exact_spectrum` on the
  view's subset, n_i products each): their density is :meth:`SpectralDensity.from_spectrum`, λ_max,
  λ_min and the trace are exact (residuals and ``trace_stderr`` 0);
* larger blocks get per-block SLQ (``steps`` × ``probes``), λ_max and λ_min from
  ``eigenvalues(view, k=1, which="both")`` (thick-restarted block Lanczos, with residuals) and the trace
  from the per-block **Hutchinson** estimate of ``trace(view, trace_matvecs, method="hutchinson")``: one
  pass of ``trace_matvecs`` Rademacher probes z through the whole model, tr(H_ii) ≈ mean z_iᵀ(Hz)_i
  (unbiased; the cross-block terms add variance, included in ``trace_stderr``).

**The table** (:attr:`Layerwise.table`, one row per block in model order): ``block`` (the module's
qualified name), ``type`` (its class, e.g. "Linear", "Conv1d", "LayerNorm", "MultiheadAttention"; a
group spanning several modules joins their classes with "+"; torch's internal subclasses are named by the
public class they derive from), ``n_params``, ``exact``, ``lambda_max``,
``lambda_min`` and their ``_residual`` ‖H_ii y − θ y‖, ``trace`` ± ``trace_stderr``, and from the
block's density: ``neg_mass``, ``condition``, ``stable_rank`` (tr/λ_max), ``stable_rank_abs``
(tr|H|/max|λ|), ``effective_rank``, ``spectral_entropy`` (normalised), each with a ``_stderr`` over
probes (NaN for exact blocks: one run) — formulas in :mod:`hesslens.analysis.metrics` —; ``kh``, ``re``
(:func:`~hesslens.hesd_criteria`), ``balance`` C and ``hesd_type`` MP/MN/QS with ``hesd_decisive``
(:func:`~hesslens.hesd_type`, hesslens's criterion); ``warnings``; ``module_type`` (the classes'
qualified names) and ``parameters`` (the block's parameter names).

**Warnings are numerical only** — "SLQ steps exceed block size: nodes exact", "λ_max not converged",
"type weakly determined", "quasi-singular", "criteria undefined: no positive node", a metric undefined
and why. **Diagnoses** ("possibly under-parameterised", "overfitting") are not warnings: the paper
reports that such readings exist but its thresholds were not available, and hesslens gives one only with
evidence from its own study, in :attr:`Layerwise.diagnostics`: :data:`DIAGNOSTIC_RULES`, learned by the ``layerwise`` study with their
cross-validated accuracy, for the family it trained (two-hidden-layer MLPs) only.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np
import torch
from torch import nn

from ..errors import InvalidInputError
from ..linalg import SpectralDensity, checks, eigenvalues, exact_spectrum, spectral_density, trace
from ..operators import HessianOperator
from ..operators.base import SymmetricOperator
from ..operators.blocks import BlockView
from ..operators.blocks import blocks as block_view
from .hesd import hesd_criteria, hesd_type
from .layer_features import StudyRule
from .metrics import DEFAULT_REL_TOL, spectral_metrics

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["COLUMNS", "DEFAULT_EXACT_BELOW", "DIAGNOSTIC_RULES", "METRICS", "Layerwise", "layerwise"]

#: Blocks of at most this many coordinates are formed densely and diagonalised (a 2048×2048 float64
#: block is 32 MiB and 2048 products); larger ones use SLQ.
DEFAULT_EXACT_BELOW = 2048
#: The density metrics with a standard error over probes (a ``<name>_stderr`` column each).
_WITH_STDERR = ("neg_mass", "condition", "stable_rank", "stable_rank_abs", "effective_rank", "spectral_entropy",
                "kh")
#: The numeric per-block metrics: what the tracker logs as ``layerwise/<block>/<metric>``.
METRICS = ("lambda_max", "lambda_max_residual", "lambda_min", "lambda_min_residual", "trace", "trace_stderr",
           *[c for name in _WITH_STDERR for c in (name, f"{name}_stderr")], "re", "balance")
#: The columns of :attr:`Layerwise.table`, in order.
COLUMNS = ("block", "type", "n_params", "exact", *METRICS, "hesd_type", "hesd_decisive", "warnings",
           "module_type", "parameters")
#: Keys of ``hesd_options``: hesd_type's (margin, qs_floor, qs_relative), hesd_criteria's (n), zero_tol both.
_TYPE_OPTIONS, _CRITERIA_OPTIONS = ("margin", "qs_floor", "qs_relative", "zero_tol"), ("n", "zero_tol")

#: Evidence-based diagnostic rules, ``rule(table) -> iterable of (block or None, message)``, applied by
#: :attr:`Layerwise.diagnostics`. Each was learned by hesslens's ``layerwise`` study (``hesslens study
#: layerwise --preset full``, 555 two-hidden-layer MLPs: 37 datasets × 3 capacity regimes × 5 seeds; page
#: docs/studies/layerwise.md, rules printed in its ``rules.csv``) as the single spectral feature and threshold
#: that best separates one regime from the others, scored by leave-datasets-out cross-validation, and kept
#: because its balanced accuracy reached :data:`~hesslens.analysis.layer_features.MIN_BALANCED_ACCURACY`
#: (0.8, declared before the study ran). They apply only to tables of three Linear blocks — the family they
#: were learned on — and say nothing elsewhere. ``tests/analysis/test_layer_rules.py`` re-derives them from
#: the study's committed results.
_SOURCE = "hesslens study layerwise --preset full; docs/studies/layerwise.md"
DIAGNOSTIC_RULES: tuple[Callable[[Any], Iterable[tuple[str | None, str]]], ...] = (
    StudyRule("overfitting (over-parameterised and memorising its training set)", "log_trace_per_param_hidden", "<",
              -3.268240800107519, 0.8891891891891892, _SOURCE),
    StudyRule("possibly under-parameterised", "log_trace_per_param_hidden", ">", -1.3952630200907152,
              0.931081081081081, _SOURCE),
)


@dataclass(frozen=True, eq=False)
class Layerwise:
    """The result of :func:`layerwise`: ``table`` (a pandas DataFrame, one row per block; columns
    :data:`COLUMNS`, described in the module docstring), ``densities`` (block name →
    :class:`~hesslens.SpectralDensity`: exact for formed blocks, SLQ otherwise), ``blocks`` (the
    :class:`~hesslens.BlockView`), ``matvecs`` (product columns of the whole computation, every block
    column — pruned or zero-padded — and every full-length column one product), ``seconds`` (wall
    time, the operator's construction included), ``engine`` (the operator's product engine, None for
    a view over another operator) and ``settings``.
    """

    table: "pd.DataFrame"
    densities: Mapping[str, SpectralDensity]
    blocks: BlockView
    matvecs: int
    seconds: float
    engine: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        """The block names, in model order."""
        return self.blocks.names

    @property
    def diagnostics(self) -> tuple[tuple[str | None, str], ...]:
        """(block or None for the model, message) from the evidence-based :data:`DIAGNOSTIC_RULES` (each
        message names its rule, its cross-validated accuracy and the study it came from); empty for models
        outside the family the rules were learned on."""
        return tuple(d for rule in DIAGNOSTIC_RULES for d in rule(self.table))

    def plot(self, **kwargs: Any):
        """One panel per block (:func:`hesslens.plot_layerwise`); returns the matplotlib Figure."""
        from ..report.layerwise_figures import plot_layerwise

        return plot_layerwise(self, **kwargs)

    def detached(self) -> "Layerwise":
        """A copy whose ``blocks`` keeps the names, ranges and parameter names but no longer refers to the
        operator (nor, through it, to the model, the data and the engine's cache): what a tracker keeps
        for every checkpoint. Its view refuses products."""
        view = self.blocks

        def refuse(v: torch.Tensor) -> torch.Tensor:
            raise InvalidInputError("this block view was detached from its operator (Layerwise.detached()); "
                                    "build a new one with hl.blocks(HessianOperator(...))")

        stub = BlockView(SymmetricOperator(view.n, refuse), view.names, view.ranges, view.params)
        return replace(self, blocks=stub)

    def __repr__(self) -> str:
        exact = int(self.table["exact"].sum())
        return (f"Layerwise({len(self.table)} blocks: {exact} exact, {len(self.table) - exact} SLQ; "
                f"{self.matvecs} products in {self.seconds:.3g} s)")


def layerwise(model: Any, loss_fn: Any = None, data: Any = None, *, blocks: Any = "auto", steps: int = 80,
              probes: int = 10, seed: int = 0, trace_matvecs: int = 100, exact_below: int = DEFAULT_EXACT_BELOW,
              tol: float = 1e-4, rel_tol: float = DEFAULT_REL_TOL, hesd_options: Mapping[str, Any] | None = None,
              params: Any = None, mode: str | None = None, max_bytes: int | str | None = None,
              progress: bool | None = None, **operator_options: Any) -> Layerwise:
    """Spectra and metrics of every block's local Hessian H_ii, as a table (see the module docstring).

    ``model`` is one of

    * an ``nn.Module`` with ``loss_fn`` (or ``batch_loss=`` among ``operator_options``) and ``data``:
      the operator is ``HessianOperator(model, loss_fn, data, params=params, mode=mode or "eval",
      **operator_options)`` (``reduction=``, ``batch_dim=``, ``engine=`` … go to it);
    * a :class:`~hesslens.HessianOperator` (nothing else of the above may then be given), whose blocks
      are ``hl.blocks(op, blocks)``;
    * a :class:`~hesslens.BlockView` (of any operator), used as it is (``blocks`` must stay "auto").

    ``blocks``: ``"auto"`` (every module owning parameters, weight and bias together, in model order),
    ``"parameters"``, or user groups by name, glob, module or parameter, as :func:`hesslens.blocks`
    takes them. ``steps`` and ``probes``: SLQ of the blocks above ``exact_below`` coordinates (0: every
    block of two or more coordinates by SLQ), probes drawn from ``seed`` for the whole operator (each
    block's are their rows, so a block's result does not depend on the others). ``trace_matvecs``
    (≥ 2): Hutchinson probes of their traces. ``tol``: relative residual tolerance of their λ_max and
    λ_min (converged: ‖H_ii y − θ y‖ ≤ tol · ‖H_ii‖, so θ is within that residual of an eigenvalue —
    much closer for a well-separated λ_max; the default 1e-4, the tracker's, keeps a λ_min inside the
    near-zero cluster of a trained network's spectrum from taking a thousand products; not converged
    within ``eigenvalues``' product cap, the value is kept and the ``warnings`` say so). ``rel_tol``:
    the negligible-eigenvalue threshold of ``condition``. ``hesd_options``: ``margin``, ``qs_floor``,
    ``qs_relative`` (:func:`hesslens.hesd_type`), ``n``
    (:func:`hesslens.hesd_criteria`), ``zero_tol`` (both). ``max_bytes``: the memory budget of every
    step. The model is left exactly as it was (parameters, buffers, mode, ``requires_grad``, ``.grad``,
    the global random stream): the operator guarantees it.

    >>> import torch, hesslens as hl
    >>> X, y = torch.randn(32, 3, dtype=torch.float64), torch.randint(0, 2, (32,))
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
    >>> lw = hl.layerwise(model, torch.nn.CrossEntropyLoss(), (X, y))
    >>> lw.table[["block", "type", "n_params", "exact"]].values.tolist()
    [['0', 'Linear', 16, True], ['2', 'Linear', 10, True]]
    """
    t0 = time.perf_counter()
    steps, probes = checks.integer("steps", steps, 1), checks.integer("probes", probes, 1)
    trace_matvecs = checks.integer("trace_matvecs", trace_matvecs, 2, " for Hutchinson to give a standard error")
    exact_below = checks.integer("exact_below", exact_below, 0)
    seed, tol = checks.seed(seed), checks.tolerance("tol", tol)
    if isinstance(rel_tol, bool) or not isinstance(rel_tol, (int, float)) or not 0 <= rel_tol < 1:
        raise InvalidInputError(f"rel_tol must be a number in [0, 1), got {rel_tol!r}")
    type_options, criteria_options = _hesd_options(hesd_options)
    view = _view(model, loss_fn, data, blocks, params, mode, operator_options, steps * probes + trace_matvecs)
    source = view.operator.source
    engine = source.engine if isinstance(source, HessianOperator) else None
    exact_idx = [i for i, s in enumerate(view.sizes) if s <= exact_below or s < 2]
    slq_idx = [i for i in range(len(view)) if i not in exact_idx]
    densities: dict[str, SpectralDensity] = {}
    extremes: dict[str, tuple[float, float, float, float, list[str]]] = {}
    traces: dict[str, tuple[float, float]] = {}
    matvecs = 0
    if exact_idx:
        sub = view.subset(exact_idx)
        spectra = exact_spectrum(sub, max_block=max(sub.sizes), max_bytes=max_bytes)
        matvecs += spectra.matvecs
        for name in sub.names:
            eig = np.asarray(spectra[name], dtype=np.float64)
            densities[name] = SpectralDensity.from_spectrum(eig, block=name)
            extremes[name] = (float(eig[-1]), 0.0, float(eig[0]), 0.0, [])
            traces[name] = (float(eig.sum()), 0.0)
    if slq_idx:
        sub = view.subset(slq_idx)
        sd = spectral_density(sub, steps=steps, probes=probes, seed=seed, max_bytes=max_bytes, progress=progress)
        ev = eigenvalues(sub, k=1, which="both", tol=tol, seed=seed, max_bytes=max_bytes, progress=progress)
        tr = trace(sub, trace_matvecs, method="hutchinson", seed=seed, max_bytes=max_bytes, progress=progress)
        matvecs += sd.matvecs + ev.matvecs + tr.matvecs
        for name, size in zip(sub.names, sub.sizes):
            densities[name] = sd[name]
            e = ev[name]
            notes = [f"{label} not converged (residual {float(e.residuals[j]):.2g} above tol · ‖H_ii‖)"
                     for j, label in ((1, "λ_max"), (0, "λ_min")) if not e.converged[j]]
            if steps >= size:
                notes.insert(0, f"SLQ steps exceed block size ({steps} ≥ {size}): nodes exact")
            extremes[name] = (float(e.values[1]), float(e.residuals[1]), float(e.values[0]), float(e.residuals[0]),
                              notes)
            traces[name] = (float(tr[name].estimate), float(tr[name].stderr))
    types = _module_types(view)
    rows = [_row(name, size, i in exact_idx, types[i], view, densities[name], extremes[name], traces[name], rel_tol,
                 type_options, criteria_options)
            for i, (name, size) in enumerate(zip(view.names, view.sizes))]
    import pandas as pd

    table = pd.DataFrame(rows, columns=list(COLUMNS))
    settings = {"steps": steps, "probes": probes, "seed": seed, "trace_matvecs": trace_matvecs,
                "trace_method": "hutchinson", "exact_below": exact_below, "tol": tol, "rel_tol": rel_tol,
                "hesd_options": dict(hesd_options or {})}
    return Layerwise(table, {name: densities[name] for name in view.names}, view, matvecs,
                     time.perf_counter() - t0, engine, settings)


def _view(model: Any, loss_fn: Any, data: Any, blocks: Any, params: Any, mode: Any,
          operator_options: dict[str, Any], expected_matvecs: int) -> BlockView:
    """The block view of what was given: a model (a new operator), an operator, or a view."""
    given = [name for name, value in (("loss_fn", loss_fn), ("data", data), ("params", params), ("mode", mode))
             if value is not None] + sorted(operator_options)
    if isinstance(model, BlockView):
        if given or not (isinstance(blocks, str) and blocks == "auto"):
            raise InvalidInputError(f"layerwise(view): a BlockView already fixes the operator and its blocks; "
                                    f"drop {', '.join(given + ([] if blocks == 'auto' else ['blocks']))}")
        return model
    if isinstance(model, HessianOperator):
        if given:
            raise InvalidInputError(f"layerwise(operator): the HessianOperator already fixes the loss, data, "
                                    f"parameters and mode; drop {', '.join(given)} (or pass the model instead)")
        return block_view(model, blocks)
    if isinstance(model, nn.Module):
        if data is None or (loss_fn is None and "batch_loss" not in operator_options):
            raise InvalidInputError("layerwise(model, loss_fn, data): a model needs loss_fn (or batch_loss=) and data; "
                                    "or pass a HessianOperator or a BlockView instead of the model")
        options = {"expected_matvecs": expected_matvecs, **operator_options}
        op = HessianOperator(model, loss_fn, data, params=params, mode="eval" if mode is None else mode, **options)
        return block_view(op, blocks)
    raise InvalidInputError(f"layerwise needs an nn.Module (with loss_fn and data), a HessianOperator or a BlockView, "
                            f"got {type(model).__name__}; for a dense matrix use "
                            "BlockView.from_slices(matrix, {name: slice})")


def _hesd_options(options: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    if options is None:
        return {}, {}
    if not isinstance(options, Mapping):
        raise InvalidInputError(f"hesd_options must be a dict of keyword arguments, got {type(options).__name__}")
    allowed = sorted(set(_TYPE_OPTIONS) | set(_CRITERIA_OPTIONS))
    unknown = sorted(str(k) for k in options if k not in allowed)
    if unknown:
        raise InvalidInputError(f"hesd_options has unknown keys {unknown}; choose from {allowed}")
    type_options = {k: v for k, v in options.items() if k in _TYPE_OPTIONS}
    criteria_options = {k: v for k, v in options.items() if k in _CRITERIA_OPTIONS}
    probe = SpectralDensity([[1.0]], [[1.0]])
    try:  # checked now, before any product, by the functions themselves
        hesd_type(probe, **type_options)
        hesd_criteria(probe, **criteria_options)
    except InvalidInputError as exc:
        raise InvalidInputError(f"hesd_options: {exc}") from exc
    return type_options, criteria_options


def _module_types(view: BlockView) -> list[tuple[str, str]]:
    """(class names, qualified class names) of the modules owning each block's parameters, joined by "+"
    ("" for a view without parameter names, e.g. over a dense matrix)."""
    model = getattr(view.operator.source, "model", None)
    if view.params is None or not isinstance(model, nn.Module):
        return [("", "")] * len(view)
    owner: dict[int, nn.Module] = {}
    for _, module in model.named_modules():
        for _, p in module.named_parameters(recurse=False):
            owner.setdefault(id(p), module)
    named = dict(model.named_parameters())
    out = []
    for members in view.params:
        classes: list[type] = []
        for p in members:
            cls = type(owner.get(id(named[p]), model))
            if cls not in classes:
                classes.append(cls)
        out.append(("+".join(_type_name(c) for c in classes),
                    "+".join(f"{c.__module__}.{c.__qualname__}" for c in classes)))
    return out


def _type_name(cls: type) -> str:
    """The class name; for torch's internal subclasses (MultiheadAttention's out_proj is a
    ``NonDynamicallyQuantizableLinear``) the first public ``torch.nn`` class it derives from ("Linear")."""
    if cls.__module__.startswith("torch.") and getattr(nn, cls.__name__, None) is not cls:
        return next((c.__name__ for c in cls.__mro__ if getattr(nn, c.__name__, None) is c), cls.__name__)
    return cls.__name__


def _row(name: str, size: int, exact: bool, types: tuple[str, str], view: BlockView, density: SpectralDensity,
         extremes: tuple, trace_value: tuple[float, float], rel_tol: float, type_options: dict,
         criteria_options: dict) -> dict[str, Any]:
    """One block's row of the table, and its numerical warnings."""
    lam_max, res_max, lam_min, res_min, notes = extremes
    warnings = list(notes)
    metrics = spectral_metrics(density, rel_tol=rel_tol)
    kind = hesd_type(density, **type_options)
    crit = hesd_criteria(density, **criteria_options)
    if kind.kind == "QS":
        warnings.append(kind.reason)
    elif not kind.decisive:
        warnings.append(f"type weakly determined (|C| = {abs(kind.balance):.3f} < margin {kind.margin:g})")
    if kind.kind == "MN":
        warnings.append("criteria not applicable: MN spectrum (Gabdullin 2025)")
    if not crit.defined:
        warnings.append("criteria undefined: no positive node")
    warnings += [f"{key} {'undefined' if not m.defined else 'partly undefined'} ({m.reason})"
                 for key, m in metrics.items() if m.reason]
    row: dict[str, Any] = {"block": name, "type": types[0], "n_params": int(size), "exact": bool(exact),
                           "lambda_max": lam_max, "lambda_max_residual": res_max, "lambda_min": lam_min,
                           "lambda_min_residual": res_min, "trace": trace_value[0], "trace_stderr": trace_value[1]}
    for key, m in metrics.items():
        row[key], row[f"{key}_stderr"] = m.value, m.stderr
    row.update({"kh": crit.kh, "kh_stderr": crit.kh_stderr, "re": crit.re, "balance": kind.balance,
                "hesd_type": kind.kind, "hesd_decisive": bool(kind.decisive), "warnings": "; ".join(warnings),
                "module_type": types[1],
                "parameters": ", ".join(view.params[view.index(name)]) if view.params is not None else ""})
    return row
