"""trace(): Hutchinson and Hutch++ against planted traces — calibration of the standard error, exactness
of the sketch on low-rank matrices, the variance reduction on decaying spectra, cost and arguments."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

import hesslens as hl
from hesslens.linalg.random import generator, rademacher
from hesslens.linalg.trace import trace

from ._planted import KINDS, counting_operator, plant, planted, sample_spectrum
from ._settings import prop

METHODS = ("hutchinson", "hutch++")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", KINDS)
def test_standard_error_is_calibrated(kind, method):
    """Over 50 seeds the estimate lies within 4 standard errors of tr(A) at least 90% of the time, and the
    standard error is not inflated either: within 1 standard error only a (normal-like) fraction of the time.

    A stderr too small fails the first check, one too large (e.g. √m missing) fails the second.
    """
    rng = np.random.default_rng(KINDS.index(kind))
    p = plant(sample_spectrum(kind, 100, rng, mult=3, rank=60), seed=KINDS.index(kind), kind=kind)
    exact = p.lam.sum()
    slack = 1e-10 * np.abs(p.lam).sum()  # round-off, for estimates that happen to be exact
    runs = [trace(p.a, 30, method, seed=s) for s in range(50)]
    err = np.array([r.estimate - exact for r in runs])
    se = np.array([r.stderr for r in runs])
    assert np.all(np.isfinite(se)) and np.all(se >= 0)
    assert np.mean(np.abs(err) <= 4 * se + slack) >= 0.9
    if np.all(se > slack):  # a genuinely random estimate
        inside_one = np.mean(np.abs(err) <= se)
        assert 0.35 <= inside_one <= 0.97, inside_one


@prop(30)
@given(st.integers(10, 200), st.integers(1, 20), st.integers(0, 12), st.integers(0, 2**31 - 1))
def test_hutchpp_exact_on_low_rank(n, rank, extra, seed):
    """rank(A) ≤ m/3: the sketch Q = orth(A S) spans range(A), so tr(QᵀAQ) = tr(A) and the rest is zero.

    "Spans" needs rank(A S) = rank(A): almost sure for Gaussian S, but a small Rademacher S is singular
    with visible probability (two equal columns), so that case is recognised and left out.
    """
    rank = min(rank, n)
    m = max(6, 3 * rank + extra)
    rng = np.random.default_rng(seed)
    lam = np.zeros(n)
    lam[:rank] = rng.uniform(-1.0, 1.0, rank) * 10.0 ** rng.uniform(-3, 3)
    p = plant(lam, seed=seed)
    sketch = p.a @ rademacher(n, min(m // 3, n), generator(seed)).numpy()
    assume(np.linalg.matrix_rank(sketch, tol=1e-8 * np.linalg.norm(sketch, 2)) == rank)
    scale = np.abs(lam).sum()
    r = trace(p.a, m, "hutch++", seed=seed)
    assert abs(r.estimate - lam.sum()) <= 1e-10 * scale
    assert r.stderr <= 1e-10 * scale
    assert r.matvecs == m


@prop(30)
@given(planted(), st.integers(6, 40), st.sampled_from(METHODS), st.integers(0, 1000))
def test_estimator_formula_and_cost(p, m, method, seed):
    """The estimate is the documented formula on the seeded Rademacher probes, from exactly m products.

    Hutchinson: mean of zᵢᵀAzᵢ. Hutch++ (Meyer et al. 2021): Q = orth(A S) from s = m/3 probes,
    tr(QᵀAQ) + mean of gᵢᵀ(I − QQᵀ)A(I − QQᵀ)gᵢ over the remaining m − 2s probes.
    """
    op, count = counting_operator(p.a)
    r = trace(op, m, method, seed=seed)
    assert r.matvecs == m == count[0] and r.method == method
    # the same products as trace() made (bit for bit), so that a singular sketch A S, whose extra
    # orthonormal columns are round-off directions, gives the same Q here
    matmat = hl.as_operator(op).matmat
    gen = generator(seed)
    if method == "hutchinson":
        z = rademacher(p.n, m, gen)
        samples, exact_part = ((z * matmat(z)).sum(0)).numpy(), 0.0
    else:
        s = min(m // 3, p.n)
        q, _ = torch.linalg.qr(matmat(rademacher(p.n, s, gen)))
        exact_part = float(torch.trace(q.T @ matmat(q)))
        g = rademacher(p.n, m - 2 * s, gen)
        pg = g - q @ (q.T @ g)  # (I − QQᵀ) g
        samples = torch.diagonal(pg.T @ matmat(pg)).numpy()
    scale = np.abs(p.lam).sum() or 1.0
    np.testing.assert_allclose(r.samples, samples, rtol=1e-9, atol=1e-11 * scale)
    assert abs(r.estimate - (exact_part + samples.mean())) <= 1e-10 * scale
    assert abs(r.stderr - samples.std(ddof=1) / np.sqrt(len(samples))) <= 1e-9 * (r.stderr + scale * 1e-3)


def test_hutchpp_beats_hutchinson_on_decaying_spectrum():
    """λᵢ = 1/i²: Hutch++'s error over 30 seeds is far below Hutchinson's at the same 60 products."""
    lam = 1.0 / np.arange(1, 201) ** 2
    p = plant(lam, seed=3)
    rmse = {}
    for method in METHODS:
        err = np.array([trace(p.a, 60, method, seed=s).estimate - lam.sum() for s in range(30)])
        rmse[method] = np.sqrt(np.mean(err**2))
    # variance O(‖A‖_F²/m) against O(tail²/m²): the gap here is two orders of magnitude
    assert rmse["hutch++"] <= 0.2 * rmse["hutchinson"], rmse


def test_input_forms_agree():
    p = plant(np.random.default_rng(4).uniform(-1, 1, 80), seed=4)
    import scipy.sparse.linalg as spla

    forms = [p.a, torch.from_numpy(p.a), spla.aslinearoperator(p.a), hl.as_operator(p.a)]
    for method in METHODS:
        ref = trace(forms[0], 24, method, seed=2)
        for f in forms[1:]:
            r = trace(f, 24, method, seed=2)
            assert abs(r.estimate - ref.estimate) <= 1e-12 and abs(r.stderr - ref.stderr) <= 1e-12


def test_seed_changes_probes_and_reproduces():
    p = plant(np.random.default_rng(5).uniform(-1, 1, 80), seed=5)
    assert trace(p.a, 30, seed=1).estimate == trace(p.a, 30, seed=1).estimate
    assert trace(p.a, 30, seed=1).estimate != trace(p.a, 30, seed=2).estimate


@pytest.mark.parametrize("kwargs,name", [
    ({"method": "bogus"}, "method"), ({"method": "Hutch++"}, "method"),
    ({"method": "hutch++", "num_matvecs": 5}, "num_matvecs"), ({"method": "hutch++", "num_matvecs": 0}, "num_matvecs"),
    ({"method": "hutchinson", "num_matvecs": 1}, "num_matvecs"), ({"method": "hutchinson", "num_matvecs": -3}, "num_matvecs"),
])
def test_invalid_arguments(kwargs, name):
    with pytest.raises(hl.InvalidInputError, match=name):
        hl.trace(np.eye(10), **kwargs)


def test_non_square_operator():
    with pytest.raises(hl.InvalidInputError, match="square"):
        hl.trace(np.ones((3, 4)))
