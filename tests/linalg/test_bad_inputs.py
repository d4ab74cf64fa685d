"""Bad inputs to the algorithms end in an InvalidInputError that names the argument, never in a number.

Covers the operator (symmetry to the documented √ε tolerance, finiteness, real dtype), counts,
tolerances, seeds, starting vectors, overlapping ends of which="both", and non-finite products; and
that ``converged`` is never True for a residual above what was asked.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch
from hypothesis import given
from hypothesis import strategies as st

import hesslens as hl
from hesslens.linalg.lanczos import lanczos

from ._planted import counting_operator, plant, planted
from ._settings import prop

#: Every algorithm, called with cheap settings.
ALGORITHMS = {
    "eigenvalues": lambda op, **kw: hl.eigenvalues(op, **kw),
    "trace": lambda op, **kw: hl.trace(op, num_matvecs=12, **kw),
    "spectral_density": lambda op, **kw: hl.spectral_density(op, steps=8, probes=3, **kw),
    "exact_spectrum": lambda op, **kw: hl.exact_spectrum(op, **kw),
}
ALL = pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))


def planted_matrix(n: int = 40, seed: int = 0) -> np.ndarray:
    return plant(np.random.default_rng(seed).uniform(-1, 1, n), seed=seed).a


# -- the operator ------------------------------------------------------------------------------------


@ALL
@pytest.mark.parametrize("form", ["torch32", "torch64", "numpy"])
def test_non_symmetric_matrix_refused(algorithm, form):
    """The issue's example: a Gaussian matrix. Its skew part is as large as the matrix itself."""
    g = torch.randn(200, 200, generator=torch.Generator().manual_seed(0))
    a = {"torch32": g, "torch64": g.double(), "numpy": g.double().numpy()}[form]
    with pytest.raises(hl.InvalidInputError, match="not symmetric"):
        ALGORITHMS[algorithm](a)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_symmetry_tolerance_is_sqrt_eps(dtype):
    """Documented: max|A − Aᵀ| ≤ √ε(dtype)·max|A|. Twice that is refused, half of it accepted."""
    a = torch.from_numpy(planted_matrix(30, 1)).to(dtype)
    rtol = torch.finfo(dtype).eps ** 0.5
    scale = float(a.abs().max())
    for factor, refused in ((2.0, True), (0.5, False)):
        b = a.clone()
        b[3, 17] += factor * rtol * scale
        if refused:
            with pytest.raises(hl.InvalidInputError, match=r"not symmetric.*A\[3,17\]|not symmetric.*A\[17,3\]"):
                hl.exact_spectrum(b)
        else:
            got = hl.exact_spectrum(b)
            b64 = b.double()
            want = np.linalg.eigvalsh(((b64 + b64.T) / 2).numpy())
            np.testing.assert_allclose(got, want, atol=1e-12)


def test_roundoff_asymmetry_accepted():
    """Q diag(λ) Qᵀ without symmetrisation (round-off asymmetry only) gives the planted values."""
    p = plant(np.linspace(-2, 3, 60), seed=2)
    a = (p.q * p.lam) @ p.q.T
    assert not np.array_equal(a, a.T)
    r = hl.eigenvalues(a, k=2, which="both", tol=1e-10)
    np.testing.assert_allclose(r.values, [-2, p.lam[1], 3, p.lam[-2]], atol=1e-9)


@ALL
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_entries_refused(algorithm, bad):
    a = planted_matrix()
    a[3, 7] = bad
    with pytest.raises(hl.InvalidInputError, match=r"non-finite.*\(3, 7\)"):
        ALGORITHMS[algorithm](a)


@ALL
def test_all_nan_matrix_refused(algorithm):
    with pytest.raises(hl.InvalidInputError, match=r"1600 non-finite entries"):
        ALGORITHMS[algorithm](torch.full((40, 40), float("nan"), dtype=torch.float64))


@ALL
@pytest.mark.parametrize("form", ["torch", "numpy", "scipy"])
def test_complex_refused_without_dropping_imaginary_part(algorithm, form):
    a = planted_matrix().astype(np.complex128) + 1j * np.eye(40)
    op = {"torch": torch.from_numpy(a), "numpy": a, "scipy": spla.aslinearoperator(a)}[form]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "casting complex values to real discards the imaginary part"
        with pytest.raises(hl.InvalidInputError, match="complex"):
            ALGORITHMS[algorithm](op)


def test_non_numeric_array_refused():
    a = np.empty((3, 3), dtype=object)
    a[:] = "x"
    with pytest.raises(hl.InvalidInputError, match="real numbers"):
        hl.exact_spectrum(a)


@ALL
def test_checked_through_as_operator(algorithm):
    """hl.as_operator only adapts: the algorithms still check the matrix behind it."""
    g = np.random.default_rng(0).standard_normal((30, 30))
    with pytest.raises(hl.InvalidInputError, match="not symmetric"):
        ALGORITHMS[algorithm](hl.as_operator(g))


class _NaNAfter:
    """An operator whose products turn NaN from the ``start``-th call on (curvature that breaks down)."""

    def __init__(self, a: np.ndarray, start: int):
        self.a, self.start, self.calls = a, start, 0
        self.shape = a.shape

    def __matmul__(self, v):
        self.calls += 1
        out = torch.from_numpy(self.a) @ v
        return out * float("nan") if self.calls >= self.start else out


def _nan_linear_operator(a: np.ndarray) -> spla.LinearOperator:
    f = lambda x: (a @ x) * np.nan  # noqa: E731
    return spla.LinearOperator(a.shape, matvec=f, matmat=f, dtype=np.float64)


@pytest.mark.parametrize("algorithm", ["eigenvalues", "trace", "spectral_density"])
@pytest.mark.parametrize("make", [lambda a: _nan_linear_operator(a), lambda a: _NaNAfter(a, 1), lambda a: _NaNAfter(a, 3)],
                         ids=["scipy", "matmul-first", "matmul-third"])
def test_non_finite_products_named(algorithm, make):
    """NaN from the operator itself, for a finite input, is blamed on the operator."""
    op = make(planted_matrix(120))
    with pytest.raises(hl.InvalidInputError, match=r"returned NaN or Inf for a finite input"):
        ALGORITHMS[algorithm](op)


def test_wrong_product_shape_named():
    a = planted_matrix()

    class Short:
        shape = a.shape

        def __matmul__(self, v):
            return torch.from_numpy(a)[:-1] @ v

    with pytest.raises(hl.InvalidInputError, match=r"shape \(39, 3\).*\(40, 3\)"):
        hl.spectral_density(Short(), steps=4, probes=3)


# -- arguments ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("tol", [1e9, float("inf"), 1.0, 0.0, -1e-6, float("nan"), "1e-6", True, None])
def test_tol_outside_unit_interval(tol):
    """The issue's tol=1e9 (and the CLI's --tol inf) used to return a wrong λ_max marked converged."""
    with pytest.raises(hl.InvalidInputError, match=r"\btol\b"):
        hl.eigenvalues(planted_matrix(), tol=tol)


@pytest.mark.parametrize("algorithm,kwargs,name", [
    ("eigenvalues", {"k": 2.0}, "k"), ("eigenvalues", {"k": True}, "k"), ("eigenvalues", {"k": "2"}, "k"),
    ("eigenvalues", {"max_matvecs": 0}, "max_matvecs"), ("eigenvalues", {"max_matvecs": 100.5}, "max_matvecs"),
    ("eigenvalues", {"block_size": -1}, "block_size"), ("eigenvalues", {"block_size": 0}, "block_size"),
    ("eigenvalues", {"block_size": 2.0}, "block_size"), ("eigenvalues", {"ncv": 1.5}, "ncv"),
    ("spectral_density", {"steps": 10.0}, "steps"), ("spectral_density", {"probes": True}, "probes"),
    ("spectral_density", {"probe_batch": 0}, "probe_batch"), ("spectral_density", {"probe_batch": 1.0}, "probe_batch"),
    ("trace", {"num_matvecs": 10.5}, "num_matvecs"), ("trace", {"num_matvecs": np.float64(12)}, "num_matvecs"),
    ("trace", {"method": None}, "method"),
])
def test_counts_must_be_integers(algorithm, kwargs, name):
    fn = {"eigenvalues": hl.eigenvalues, "spectral_density": hl.spectral_density, "trace": hl.trace}[algorithm]
    value = kwargs[name]
    with pytest.raises(hl.InvalidInputError, match=rf"\b{name}\b.*{re.escape(repr(value))}"):
        fn(planted_matrix(), **kwargs)


def test_numpy_integers_accepted():
    a = planted_matrix()
    ref = hl.eigenvalues(a, k=2, seed=3)
    got = hl.eigenvalues(a, k=np.int64(2), seed=np.int32(3), block_size=np.int16(2), max_matvecs=np.int64(10_000))
    assert np.array_equal(got.values, ref.values)
    sd = hl.spectral_density(a, steps=np.int64(6), probes=np.int8(2), seed=np.uint8(1))
    assert sd.nodes.shape == (2, 6) and hl.SpectralDensity.from_json(sd.to_json()).meta["seed"] == 1
    assert hl.trace(a, num_matvecs=np.int64(12), seed=np.int64(0)).matvecs == 12


@ALL
@pytest.mark.parametrize("seed", [1.5, "0", None, True, 2**64])
def test_seed_must_be_an_integer(algorithm, seed):
    if algorithm == "exact_spectrum":
        pytest.skip("exact_spectrum draws nothing")
    with pytest.raises(hl.InvalidInputError, match=r"\bseed\b"):
        ALGORITHMS[algorithm](planted_matrix(), seed=seed)


@pytest.mark.parametrize("n,k", [(40, 21), (40, 39), (9, 5)])
def test_both_with_overlapping_ends_refused(n, k):
    """which="both" with 2k > n: the k smallest and k largest would share eigenpairs; refused, naming k."""
    with pytest.raises(hl.InvalidInputError, match=rf"k={k}.*overlap"):
        hl.eigenvalues(planted_matrix(n), k=k, which="both")


@pytest.mark.parametrize("n", [10, 40])
def test_both_with_2k_equal_n_returns_every_eigenvalue_once(n):
    p = plant(np.random.default_rng(n).uniform(-1, 1, n), seed=n)
    r = hl.eigenvalues(p.a, k=n // 2, which="both", tol=1e-10)
    np.testing.assert_allclose(np.sort(r.values), p.lam, atol=1e-12)
    vectors = r.vectors
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(n), atol=1e-10)  # distinct eigenpairs


# -- starting vectors --------------------------------------------------------------------------------


@pytest.mark.parametrize("v0,match", [
    (np.ones(39), r"v0 must have shape \(40,\) or \(40, b\).*\(39,\)"),
    (np.ones((40, 1, 1)), r"v0 must have shape.*\(40, 1, 1\)"),
    (np.ones((2, 40)), r"v0 must have shape.*\(2, 40\)"),
    (np.ones((40, 3)), r"v0 has 3 columns but the block size is 1"),
    (np.full(40, np.nan), r"v0 has 40 non-finite"),
    (np.r_[np.inf, np.ones(39)], r"v0 has 1 non-finite"),
    (np.zeros(40), r"v0 column 0 is zero"),
    (np.ones(40) + 0j, r"v0 is complex"),
    ("ones", r"v0 must be an array"),
])
def test_bad_v0(v0, match):
    with pytest.raises(hl.InvalidInputError, match=match):
        hl.eigenvalues(planted_matrix(), k=1, v0=v0)


def _hessian_operator() -> hl.HessianOperator:
    """A 37-parameter tanh MLP on 30 samples."""
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(30, 4, generator=gen, dtype=torch.float64), torch.randint(0, 2, (30,), generator=gen)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2)).double()
    return hl.HessianOperator(model, torch.nn.CrossEntropyLoss(), (x, y))


def test_no_extra_products_for_hessian_operators():
    """The checks cost no operator product: a HessianOperator is symmetric by construction."""
    op = _hessian_operator()
    for run in (lambda: hl.eigenvalues(op, k=1, which="both"), lambda: hl.trace(op, 12),
                lambda: hl.spectral_density(op, steps=6, probes=2)):
        before = op.matvecs
        result = run()
        assert op.matvecs - before == result.matvecs


def test_nan_v0_on_hessian_operator_blamed_on_v0():
    """The issue: an all-NaN v0 was reported as "NaN/Inf curvature"; it is checked before any product."""
    op = _hessian_operator()
    before = op.matvecs
    with pytest.raises(hl.InvalidInputError, match="v0 has 37 non-finite") as info:
        hl.eigenvalues(op, k=1, v0=np.full(op.n, np.nan))
    assert "curvature" not in str(info.value) and op.matvecs == before


@pytest.mark.parametrize("v0,match", [
    (torch.full((20, 2), float("nan"), dtype=torch.float64), "v0 has 40 non-finite"),
    (torch.zeros(20, 2, dtype=torch.float64), "v0 column 0 is zero"),
    (torch.ones(20, 2, dtype=torch.complex128), "v0 is complex"),
    (torch.ones(0, 2), "v0 must have shape"),
])
def test_lanczos_bad_v0(v0, match):
    a = torch.from_numpy(planted_matrix(20))
    with pytest.raises(hl.InvalidInputError, match=match):
        lanczos(lambda v: a @ v, v0, 5)


@pytest.mark.parametrize("steps", [0, 2.0, True, None])
def test_lanczos_bad_steps(steps):
    a = torch.from_numpy(planted_matrix(20))
    with pytest.raises(hl.InvalidInputError, match=r"\bsteps\b"):
        lanczos(lambda v: a @ v, torch.ones(20, 1, dtype=torch.float64), steps)


def test_lanczos_nan_product():
    with pytest.raises(hl.InvalidInputError, match="NaN or Inf for a finite input"):
        lanczos(lambda v: v * float("nan"), torch.ones(20, 1, dtype=torch.float64), 5)


# -- converged means what it says --------------------------------------------------------------------


@prop(40)
@given(planted(n_min=10, n_max=150, max_mult=2), st.integers(1, 3), st.sampled_from(["largest", "smallest", "both"]),
       st.sampled_from([1e-8, 1e-5, 1e-3, 0.1, 0.5, 0.99]), st.sampled_from([None, 5, 30, 120]), st.integers(0, 100))
def test_converged_never_above_tol(p, k, which, tol, max_matvecs, seed):
    """Every pair flagged converged has a true residual ‖A y − θ y‖ ≤ tol·‖A‖ (up to the 1e-10·‖A‖ of
    dropped breakdown directions and round-off); every pair not flagged has reported residual above
    tol·max|θ|. Early stops (small max_matvecs) and loose tolerances mix both kinds."""
    op, _ = counting_operator(p.a)
    r = hl.eigenvalues(op, k=k, which=which, tol=tol, max_matvecs=max_matvecs, seed=seed)
    assert r.tol == tol
    true = np.linalg.norm(p.a @ r.vectors - r.vectors * r.values, axis=0)
    assert np.all(true[r.converged] <= tol * p.norm * (1 + 1e-8) + 1e-9 * p.norm), (true, r.residuals, r.converged)
    assert np.all(r.residuals[r.converged] <= tol * p.norm * (1 + 1e-12))
    assert np.all(r.residuals[~r.converged] > tol * np.abs(r.values).max())
    if max_matvecs is None and tol >= 1e-5 and p.kind != "clustered":
        assert r.all_converged


def test_dense_path_residuals_are_true():
    """Small n (dense path): residuals are computed, not assumed 0, so a tolerance below round-off is
    honestly not met."""
    p = plant(np.random.default_rng(3).uniform(-1, 1, 12), seed=3)
    r = hl.eigenvalues(p.a, k=2, which="both", tol=1e-300)
    true = np.linalg.norm(p.a @ r.vectors - r.vectors * r.values, axis=0)
    assert (true > 0).all()  # eigh's vectors are exact only up to round-off
    np.testing.assert_allclose(r.residuals, true, rtol=1e-6, atol=0)
    assert not r.converged.any()
    loose = hl.eigenvalues(p.a, k=2, which="both", tol=1e-10)
    assert loose.all_converged
