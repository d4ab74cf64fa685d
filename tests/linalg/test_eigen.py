"""eigenvalues() against planted spectra: values, vectors, true residuals, ordering, cost, inputs, errors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

import hesslens as hl
from hesslens.linalg.eigen import eigenvalues

from ._planted import KINDS, counting_operator, plant, planted
from ._settings import prop

TOL = 1e-10
#: Eigenvalues are checked to this multiple of ‖A‖ (a residual r bounds the distance to the spectrum by r).
VALUE_RTOL = 1e-8


def expected_values(lam: np.ndarray, k: int, which: str) -> np.ndarray:
    """The documented result order: largest descending, smallest ascending, both = smallest then largest."""
    lo, hi = lam[:k], lam[::-1][:k]
    return {"largest": hi, "smallest": lo, "both": np.concatenate([lo, hi])}[which]


def true_residuals(a: np.ndarray, values: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    return np.linalg.norm(a @ vectors - vectors * values, axis=0)


def default_basis(k: int, which: str) -> tuple[int, int]:
    """(block size b, basis size m) that eigenvalues() picks by default, restated from its docstring/code."""
    wanted = 2 * k if which == "both" else k
    b = min(k, 8)
    return b, max(20 + wanted, 2 * wanted + 2 * b, wanted + 2 * b)


def in_restart_window(n: int, k: int, which: str) -> bool:
    """m < n ≤ m + b − 1: the basis would fill before a restart could fit another block (the dense path's edge)."""
    b, m = default_basis(k, which)
    return m < n <= m + b - 1


def unresolvable(p) -> bool:
    """A cluster whose members are closer than tol·‖A‖ can be resolved only at enormous cost."""
    return p.kind == "clustered" and p.params["width"] > TOL


def check_flags(r, norm: float) -> None:
    """converged ⇔ residual ≤ tol·‖A‖_est, with max|values| ≤ ‖A‖_est ≤ ‖A‖ (the largest |Ritz value| seen)."""
    assert np.all(r.residuals[r.converged] <= TOL * norm * (1 + 1e-12))
    assert np.all(r.residuals[~r.converged] > TOL * np.abs(r.values).max())


def check_result(p, r, k: int, which: str, count: int | None = None) -> None:
    norm = p.norm
    want = expected_values(p.lam, k, which)
    assert r.values.shape == want.shape and r.vectors.shape == (p.n, len(want))
    assert r.which == which and r.tol == TOL and r.residuals.shape == r.converged.shape == want.shape
    # ordering as documented (exactly, not just up to tolerance)
    if which == "largest":
        assert np.all(np.diff(r.values) <= 0)
    elif which == "smallest":
        assert np.all(np.diff(r.values) >= 0)
    else:
        assert np.all(np.diff(r.values[:k]) >= 0) and np.all(np.diff(r.values[k:]) <= 0)
    # the reported residuals are the true ones: exactly up to round-off, except that directions below the
    # breakdown threshold (1e-10·‖A‖ in the code) may be dropped from a residual
    true = true_residuals(p.a, r.values, r.vectors)
    np.testing.assert_allclose(r.residuals, true, rtol=1e-6, atol=TOL * norm)
    np.testing.assert_allclose(r.vectors.T @ r.vectors, np.eye(len(want)), atol=1e-10)
    if count is not None:
        assert r.matvecs == count
    if unresolvable(p):  # honest about it: each value within the cluster's width of the planted one
        np.testing.assert_allclose(r.values, want, rtol=0, atol=(2 * p.params["width"] + VALUE_RTOL) * norm)
        check_flags(r, norm)
        return
    assert r.all_converged, f"not converged: residuals {r.residuals}"
    assert np.all(true <= 2 * TOL * norm)
    np.testing.assert_allclose(r.values, want, rtol=0, atol=VALUE_RTOL * norm)


@st.composite
def eigen_problems(draw, kinds=KINDS, ks=(1, 4)):
    k = draw(st.integers(*ks))
    which = draw(st.sampled_from(["largest", "smallest", "both"]))
    p = draw(planted(kinds=kinds, max_mult=k))
    return p, k, which


def run(p, k, which, **kw):
    op, count = counting_operator(p.a)
    r = eigenvalues(op, k=k, which=which, tol=TOL, **kw)
    return r, count[0]


def run_to_convergence(p, k, which):
    """A generous product budget: the property is about accuracy, not speed (the default budget,
    50·ncv, can end a k = 4 "both" run on a random spectrum just short of tol = 1e-10)."""
    return run(p, k, which, max_matvecs=None if unresolvable(p) else 20_000)


@prop(40)
@given(eigen_problems(ks=(1, 1)))
def test_single_vector_every_family(problem):
    """k = 1 (block size 1) on every family, including rank-deficient and numerically degenerate ones."""
    p, k, which = problem
    r, count = run_to_convergence(p, k, which)
    check_result(p, r, k, which, count)


@prop(40)
@given(eigen_problems(kinds=KINDS, ks=(2, 4)))
def test_block_planted_extremes(problem):
    """k = 2…4 with the default block size k on every family, exact null spaces and numerically
    degenerate clusters included (they exhaust a block Krylov space: breakdown handling)."""
    p, k, which = problem
    r, count = run_to_convergence(p, k, which)
    check_result(p, r, k, which, count)


@pytest.mark.parametrize("which", ["largest", "smallest", "both"])
@pytest.mark.parametrize("mult", [2, 3, 5])
def test_degenerate_extremes_every_copy(which, mult):
    """An eigenvalue repeated `mult` times at both ends: k = mult returns every copy (default block = k)."""
    n = 150
    lam = np.random.default_rng(mult).uniform(-0.5, 0.5, n)
    lam[:mult], lam[mult:2 * mult] = 2.0, -3.0
    p = plant(lam, seed=mult, kind="degenerate", mult=mult)
    r, count = run(p, mult, which)
    check_result(p, r, mult, which, count)
    # every copy: the Ritz vectors span the whole repeated eigenspace (not `mult` copies of one direction)
    ends = {"largest": [(r.vectors, p.q[:, -mult:])], "smallest": [(r.vectors, p.q[:, :mult])],
            "both": [(r.vectors[:, :mult], p.q[:, :mult]), (r.vectors[:, mult:], p.q[:, -mult:])]}[which]
    for got, space in ends:
        np.testing.assert_allclose(np.linalg.svd(space.T @ got, compute_uv=False), 1.0, atol=1e-8)


@pytest.mark.parametrize("ncv,max_matvecs", [(None, 12), (10, 40), (12, 100)])
def test_unconverged_residuals_are_true(ncv, max_matvecs):
    """Stopped early (and after thick restarts), the reported residuals are still ‖A y − θ y‖ exactly."""
    p = plant(np.random.default_rng(7).uniform(-1, 1, 200), seed=7)
    r, count = run(p, 3, "both", ncv=ncv, max_matvecs=max_matvecs)
    assert count == r.matvecs and r.matvecs >= max_matvecs and not r.all_converged
    if ncv is not None:
        assert r.restarts > 0
    true = true_residuals(p.a, r.values, r.vectors)
    np.testing.assert_allclose(r.residuals, true, rtol=1e-8, atol=1e-13)
    check_flags(r, p.norm)
    np.testing.assert_allclose(r.vectors.T @ r.vectors, np.eye(6), atol=1e-12)
    # Ritz values interlace: never outside the spectrum
    assert np.all((r.values >= p.lam[0] - 1e-12) & (r.values <= p.lam[-1] + 1e-12))


def test_restarts_reach_planted_values():
    """A small basis (many thick restarts) still converges to the planted extremes."""
    p = plant(np.random.default_rng(8).uniform(-1, 1, 200), seed=8)
    r, count = run(p, 3, "largest", ncv=16)
    assert r.restarts > 0
    check_result(p, r, 3, "largest", count)


def test_dense_path_for_small_n():
    """n ≤ basis size: one product per column, exact values, true residuals at round-off."""
    p = plant(np.random.default_rng(9).uniform(-1, 1, 15), seed=9)
    r, count = run(p, 2, "both")
    assert count == r.matvecs == 15
    check_result(p, r, 2, "both", count)


def test_algebraic_not_magnitude_order():
    """An all-negative spectrum: "largest" is the least negative, not the largest magnitude."""
    lam = -np.linspace(1.0, 10.0, 100)
    p = plant(lam, seed=1)
    r, _ = run(p, 1, "largest")
    assert abs(r.values[0] - (-1.0)) < VALUE_RTOL * 10


def test_warm_start_from_eigenvector():
    """v0 = the exact top eigenvector: converged after one product, far fewer than a cold start."""
    p = plant(np.random.default_rng(10).uniform(-1, 1, 200), seed=10)
    cold, cold_count = run(p, 1, "largest")
    warm, warm_count = run(p, 1, "largest", v0=p.q[:, -1])
    check_result(p, warm, 1, "largest", warm_count)
    check_result(p, cold, 1, "largest", cold_count)
    assert warm.matvecs <= 2 < cold.matvecs
    # an approximate eigenvector (angle ~1e-3) still helps
    noisy = p.q[:, -1] + 1e-3 * np.random.default_rng(11).standard_normal(200) / np.sqrt(200)
    near, near_count = run(p, 1, "largest", v0=noisy)
    check_result(p, near, 1, "largest", near_count)
    assert near.matvecs < cold.matvecs


def test_warm_start_block():
    """v0 = the top eigenvector with k = 2 (block 2): the first block has one dead direction."""
    p = plant(np.linspace(-1, 1, 200), seed=0)
    r, count = run(p, 2, "largest", v0=p.q[:, -1])
    check_result(p, r, 2, "largest", count)


def test_block_rank_one_breakdown():
    """A = u uᵀ (eigenvalues 1, 0×199), k = 4: the block Krylov space is invariant after one product."""
    lam = np.zeros(200)
    lam[-1] = 1.0
    p = plant(lam, seed=0)
    r, count = run(p, 4, "largest")
    check_result(p, r, 4, "largest", count)


def test_restart_window():
    """n = 25, k = 2, both: default ncv 24, block 2; a restart could not fit another block."""
    p = plant(np.linspace(-1, 1, 25), seed=0)
    assert in_restart_window(25, 2, "both")
    r, count = run(p, 2, "both")
    check_result(p, r, 2, "both", count)


def test_input_forms_agree():
    """Tensor, array, SciPy LinearOperator and hl.as_operator give the same answer from the same seed."""
    p = plant(np.random.default_rng(12).uniform(-1, 1, 120), seed=12)
    forms = [torch.from_numpy(p.a), p.a, spla.aslinearoperator(p.a), hl.as_operator(p.a),
             hl.as_operator(torch.from_numpy(p.a))]
    results = [eigenvalues(f, k=3, which="both", tol=TOL, seed=3) for f in forms]
    ref = results[0]
    check_result(p, ref, 3, "both")
    for r in results[1:]:
        np.testing.assert_allclose(r.values, ref.values, rtol=0, atol=1e-13)
        assert r.matvecs == ref.matvecs
        # eigenvectors up to sign
        np.testing.assert_allclose(np.abs(np.sum(r.vectors * ref.vectors, axis=0)), 1.0, atol=1e-9)


def test_seed_reproducible():
    p = plant(np.random.default_rng(13).uniform(-1, 1, 100), seed=13)
    a, b = eigenvalues(p.a, k=2, seed=5), eigenvalues(p.a, k=2, seed=5)
    assert np.array_equal(a.values, b.values) and np.array_equal(a.vectors, b.vectors)


@pytest.mark.parametrize("kwargs,name", [
    ({"k": 30}, "k"), ({"k": 31}, "k"), ({"k": 0}, "k"), ({"k": -1}, "k"), ({"k": 2.5}, "k"),
    ({"which": "bogus"}, "which"), ({"which": "LA"}, "which"),
    ({"tol": 0.0}, "tol"), ({"tol": -1e-6}, "tol"), ({"tol": float("nan")}, "tol"),
])
def test_invalid_arguments(kwargs, name):
    a = plant(np.linspace(-1, 1, 30)).a
    with pytest.raises(hl.InvalidInputError, match=rf"\b{name}\b"):
        hl.eigenvalues(a, **kwargs)


def test_invalid_operator_shape():
    with pytest.raises(hl.InvalidInputError, match="square"):
        hl.eigenvalues(np.zeros((4, 5)))


def decaying(n: int, seed: int, rate: float) -> np.ndarray:
    """λ_i = exp(−rate·i) with a random sign on the tail: a Hessian-like decaying spectrum."""
    lam = np.exp(-rate * np.arange(n))
    lam[5:] *= np.random.default_rng(seed).choice([-1.0, 1.0], n - 5)
    return lam


@pytest.mark.parametrize("seed,rate", [(0, 0.01), (1, 0.05), (2, 0.2)])
def test_matvecs_against_eigsh(seed, rate, record_property):
    """Top eigenvalue to 1e-8: hesslens needs at most 1.5× the products of ARPACK (eigsh, which="LA")."""
    p = plant(decaying(500, seed, rate), seed=seed)
    op, count = counting_operator(p.a)
    ours = eigenvalues(op, k=1, which="largest", tol=1e-8, seed=seed)
    ours_count = count[0]
    op2, count2 = counting_operator(p.a)
    v0 = np.random.default_rng(seed).standard_normal(500)
    theirs = spla.eigsh(op2, k=1, which="LA", tol=1e-8, v0=v0, return_eigenvectors=False)
    assert abs(ours.values[0] - p.lam[-1]) <= 1e-8 and abs(theirs[0] - p.lam[-1]) <= 1e-8
    record_property("matvecs", {"hesslens": ours_count, "eigsh": count2[0]})
    print(f"rate={rate}: hesslens {ours_count} matvecs, eigsh {count2[0]}")
    assert ours_count <= 1.5 * count2[0]
