"""Stochastic trace estimation with standard errors.

Hutchinson (1989): for Rademacher z (E zzᵀ = I), E[zᵀAz] = tr(A); with m probes the estimate is
the sample mean of zᵢᵀAzᵢ and its standard error the sample standard deviation over √m.

Hutch++ (Meyer, Musco, Musco & Woodruff 2021, arXiv 2010.09649): spend m/3 products on a sketch
Q = orth(A S), take tr(QᵀAQ) exactly (m/3 more products), and apply Hutchinson with the remaining
probes to the deflated (I − QQᵀ)A(I − QQᵀ). The variance falls from O(‖A‖_F²/m) to O(‖A‖_*²/m²) for
matrices with decaying spectra. The reported standard error is that of the Hutchinson part,
conditional on the sketch (the exact part carries no sampling error given Q).

Memory: the Hutch++ sketch needs 2·n·s numbers at once (A S and its orthonormal factor Q,
s = m/3); the other products run in column groups that fit the budget of :mod:`hesslens.memory`,
with the probes drawn once (as signs, one byte per entry), so grouping changes no probe.

Precision: the probes, the sketch and the products are in the dtype of the operator's products where
it is a float32 hesslens operator (a float32 model), as a float32 Lanczos basis is
(:func:`hesslens.linalg.lanczos.basis_dtype`): ±1 probes are exact in it, Q is orthonormal to about
ε₃₂ √s, and each quadratic form, summed in float32, carries a relative error of order ε₃₂ log n — what
the float32 products already carry, and far below any standard error of the estimate. The forms are
then averaged in float64. Everything else is float64; ``basis_dtype="float64"`` asks for float64
throughout (each product then converts its columns to the model's dtype and back: on the benchmark's
ResNet-18 that cost 6 % of a product).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .. import memory
from ..errors import InvalidInputError
from ..operators.blocks import BlockView
from ..progress import product_bar
from . import checks
from .lanczos import basis_dtype as resolve_basis_dtype
from .random import generator, rademacher, rademacher_columns, rademacher_signs

if TYPE_CHECKING:
    from .blocks import BlockResults

METHODS = ("hutch++", "hutchinson")


@dataclass(frozen=True)
class TraceResult:
    estimate: float
    stderr: float
    matvecs: int
    method: str
    seconds: float
    samples: np.ndarray  # the quadratic forms zᵢᵀ A zᵢ of the stochastic part


#: float64 n-vectors per probe column in flight: the probe, its deflation temporary, A z and z ∘ A z.
_PER_COLUMN = 4


def _quadratic_forms(matmat, columns, count: int, group: int, on_matvecs) -> torch.Tensor:
    """zᵢᵀ A zᵢ for the ``count`` columns ``columns(start, stop)``, ``group`` columns per product;
    ``on_matvecs(k)`` after each product of k columns."""
    forms = []
    for start in range(0, count, group):
        z = columns(start, min(count, start + group))
        # one pass, no (n, k) temporary: z ∘ Az summed per column was three times slower on 11M rows
        forms.append(torch.einsum("ij,ij->j", z, matmat(z)))
        on_matvecs(z.shape[1])
    return forms[0] if len(forms) == 1 else torch.cat(forms)


def trace(op: Any, num_matvecs: int = 100, method: str = "hutch++", seed: int = 0, *,
          max_bytes: int | str | None = None, progress: bool | None = False,
          basis_dtype: Any = None) -> TraceResult | BlockResults:
    """Estimate tr(A) from ``num_matvecs`` products, with a standard error.

    ``max_bytes`` (else :func:`hesslens.memory.default_budget`) bounds the working memory: probe
    products run in groups that fit, and a Hutch++ sketch that does not fit is refused with the estimate.
    ``progress`` shows a bar over the ``num_matvecs`` products (None: only on a terminal; the
    default False: never, as this estimate is often one quick step of a longer job). ``basis_dtype``:
    of the probes and the sketch; None: the products' dtype for a float32 hesslens operator, else
    float64 (see the module's note on precision).

    For a :class:`~hesslens.operators.blocks.BlockView` it returns a
    :class:`~hesslens.linalg.blocks.BlockResults` of per-block traces tr(H_ii): Hutchinson from one
    pass of full-length probes through the whole operator (z_iᵀ(Hz)_i, ``num_matvecs`` products in
    all), Hutch++ through each block's own products with H_ii (pruned to the block over a
    :class:`~hesslens.HessianOperator` whose engine can, zero-padded otherwise; see
    :func:`~hesslens.linalg.blocks.block_trace`).

    >>> import torch, hesslens as hl
    >>> A = torch.diag(torch.arange(1.0, 11.0, dtype=torch.float64))
    >>> r = hl.trace(A, num_matvecs=30)
    >>> round(r.estimate, 6), r.stderr < 1e-9  # Hutch++ sketches a rank-10 matrix exactly
    (55.0, True)
    """
    method = checks.choice("method", method, METHODS)
    minimum = 6 if method == "hutch++" else 2
    num_matvecs = checks.integer("num_matvecs", num_matvecs, minimum, f" for {method} to give a standard error")
    if isinstance(op, BlockView):
        from .blocks import block_trace

        if basis_dtype is not None and resolve_basis_dtype(basis_dtype) != torch.float64:
            raise InvalidInputError("per-block traces keep their probes in float64: pass basis_dtype=None or 'float64'")
        checks.announce(op, num_matvecs)
        return block_trace(op, num_matvecs, method, seed, max_bytes=max_bytes, progress=progress)
    a = checks.operator(op)
    dtype = resolve_basis_dtype(basis_dtype, a)
    checks.announce(a, num_matvecs)
    gen = generator(seed)
    n = a.n
    s = min(num_matvecs // 3, n) if method == "hutch++" else 0
    count = num_matvecs - 2 * s
    # Everything is checked before the first product: the sketch, then the probe groups next to Q.
    if s:
        memory.check(2 * memory.estimate(n, s), f"the Hutch++ sketch A·S and its orthonormal basis ({n}×{s} float64 "
                     "each)", max_bytes, advice="lower num_matvecs or use method='hutchinson'")
    fixed = memory.estimate(n, s) + memory.estimate(n, count, itemsize=1)
    per_column = _PER_COLUMN * memory.estimate(n)
    group = memory.items_that_fit(per_column, max(count, s), fixed, max_bytes, advice="lower num_matvecs",
                                  what=f"trace with {num_matvecs} products in dimension {n} (the sketch, the "
                                  "probes' signs and one probe column)")
    t0 = time.perf_counter()
    # s sketch products, s for the exact part and count probes: num_matvecs in all, known now.
    with product_bar(total=num_matvecs, desc=f"trace ({method})", enabled=progress) as bar:
        if s:
            q, _ = torch.linalg.qr(a.matmat(rademacher(n, s, gen, dtype)))
            bar.update(s)
        signs = rademacher_signs(n, count, gen)

        def probes(start: int, stop: int) -> torch.Tensor:
            g = rademacher_columns(signs[:, start:stop], dtype)
            if not s:
                return g
            # (I − QQᵀ) g, the deflated probes of Hutch++, as gᵀ − (gᵀQ)Qᵀ: one row per probe, the
            # column-major layout of g and Q (no n-long strided pass)
            gt, qt = g.T, q.T
            return torch.addmm(gt, gt @ qt.T, qt, alpha=-1).T

        exact_part = float(_quadratic_forms(a.matmat, lambda i, j: q[:, i:j], s, group, bar.update).double().sum()) if s else 0.0
        samples = _quadratic_forms(a.matmat, probes, count, group, bar.update).double().numpy()
    stderr = float(samples.std(ddof=1) / np.sqrt(len(samples)))
    return TraceResult(exact_part + float(samples.mean()), stderr, num_matvecs, method, time.perf_counter() - t0, samples)
