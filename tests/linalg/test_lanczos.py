"""lanczos(): the batched recurrence with full reorthogonalisation, against planted spectra."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from hesslens.linalg.lanczos import Tridiagonals, lanczos

from ._planted import plant, planted
from ._settings import prop


def matmat_of(a: np.ndarray):
    t = torch.from_numpy(a)
    return lambda v: t @ v


@prop(25)
@given(planted(kinds=("general", "negative"), n_max=120), st.integers(1, 3), st.integers(0, 1000))
def test_full_run_recovers_spectrum(p, probes, seed):
    """steps = n on a nondegenerate matrix: each T_n is orthogonally similar to A, eig(T_n) = λ."""
    v0 = torch.from_numpy(np.random.default_rng(seed).standard_normal((p.n, probes)))
    calls = []
    tri = lanczos(matmat_of(p.a), v0, p.n, on_step=lambda: calls.append(1))
    assert isinstance(tri, Tridiagonals)
    assert tri.alpha.shape == (probes, p.n) and tri.beta.shape == (probes, p.n - 1)
    assert (tri.lengths == p.n).all() and tri.matvecs == probes * p.n and len(calls) == p.n
    assert (tri.beta > 0).all()
    for r in range(probes):
        t = tri.matrix(r)
        assert t.shape == (p.n, p.n) and np.array_equal(t, t.T)
        np.testing.assert_allclose(np.linalg.eigvalsh(t), p.lam, rtol=0, atol=1e-10 * p.norm)


def test_steps_beyond_n_are_clipped():
    p = plant(np.linspace(-1, 2, 15), seed=1)
    tri = lanczos(matmat_of(p.a), torch.ones(15, 2, dtype=torch.float64), 40)
    assert tri.alpha.shape == (2, 15) and (tri.lengths <= 15).all()


def test_starting_vector_scale_is_irrelevant():
    p = plant(np.random.default_rng(2).uniform(-1, 1, 50), seed=2)
    v0 = torch.from_numpy(np.random.default_rng(3).standard_normal((50, 2)))
    a, b = lanczos(matmat_of(p.a), v0, 20), lanczos(matmat_of(p.a), 1e5 * v0, 20)
    np.testing.assert_allclose(a.alpha, b.alpha, atol=1e-13)
    np.testing.assert_allclose(a.beta, b.beta, atol=1e-13)


def test_mixed_breakdowns_in_one_batch():
    """Recurrences that stop at different steps do not disturb each other.

    Column 0 is an eigenvector (invariant after 1 step), column 1 a combination of three eigenvectors
    (3 steps), column 2 random (runs to n). Each T's eigenvalues are the eigenvalues its vector touches.
    """
    n = 60
    p = plant(np.random.default_rng(4).uniform(-1, 1, n), seed=4)
    idx = [5, 20, 41]
    v0 = np.stack([p.q[:, 10], p.q[:, idx] @ np.array([1.0, -2.0, 0.5]),
                   np.random.default_rng(5).standard_normal(n)], axis=1)
    calls, products, columns = [], [], []

    def counted(v):
        columns.append(v.shape[1])
        return matmat_of(p.a)(v)

    tri = lanczos(counted, torch.from_numpy(v0), n, on_step=lambda: calls.append(1), on_matvecs=products.append)
    assert tri.lengths.tolist() == [1, 3, n]
    assert tri.matvecs == 1 + 3 + n and len(calls) == n
    # on_matvecs reports each product's columns (the active recurrences), summing to matvecs
    assert products == columns and products[:4] == [3, 2, 2, 1] and sum(products) == tri.matvecs
    np.testing.assert_allclose(np.linalg.eigvalsh(tri.matrix(0)), p.lam[[10]], atol=1e-12)
    np.testing.assert_allclose(np.linalg.eigvalsh(tri.matrix(1)), p.lam[idx], atol=1e-12)
    np.testing.assert_allclose(np.linalg.eigvalsh(tri.matrix(2)), p.lam, atol=1e-10)
    # beyond a recurrence's length its coefficients are left empty
    assert (tri.alpha[0, 1:] == 0).all() and (tri.beta[0] == 0).all() and (tri.alpha[1, 3:] == 0).all()


@pytest.mark.parametrize("values", [[2.0], [-1.0, 1.0], [-3.0, 0.0, 0.5, 4.0]])
def test_breakdown_at_number_of_distinct_eigenvalues(values):
    """A Rademacher probe on a matrix with d distinct eigenvalues spans a d-dimensional Krylov space."""
    n = 40
    lam = np.resize(np.array(values), n)
    p = plant(lam, seed=6)
    v0 = torch.from_numpy(np.random.default_rng(7).choice([-1.0, 1.0], (n, 3)))
    tri = lanczos(matmat_of(p.a), v0, 25)
    assert (tri.lengths == len(values)).all() and tri.matvecs == 3 * len(values)
    for r in range(3):
        np.testing.assert_allclose(np.linalg.eigvalsh(tri.matrix(r)), sorted(values), atol=1e-10)


def test_ritz_values_interlace_and_converge_outward():
    """Partial runs: Ritz values lie inside [λ_min, λ_max], the extremes move outward as steps grow."""
    p = plant(np.random.default_rng(8).uniform(-1, 1, 100), seed=8)
    v0 = torch.from_numpy(np.random.default_rng(9).standard_normal((100, 1)))
    tri = lanczos(matmat_of(p.a), v0, 40)
    prev_lo, prev_hi = np.inf, -np.inf
    for m in range(1, 41):
        theta = np.linalg.eigvalsh(tri.matrix(0)[:m, :m])  # leading blocks are the shorter runs
        assert p.lam[0] - 1e-12 <= theta[0] <= prev_lo + 1e-12 and prev_hi - 1e-12 <= theta[-1] <= p.lam[-1] + 1e-12
        prev_lo, prev_hi = theta[0], theta[-1]
