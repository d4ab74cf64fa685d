"""Eigenvalues, traces and SLQ moments of HessianOperators against the exact dense spectrum.

What is exact and what is statistical:

* For a probe z, m Lanczos steps give a Gauss quadrature exact for polynomials of degree < 2m, so
  every per-probe SLQ moment sample Σ_k w_k θ_k^p equals zᵀH^p z/‖z‖² = zᵀH^p z/n exactly for
  p ≤ 2m − 1 (any m ≥ 2 covers p = 1, 2). Only the choice of z is random.
* For a *diagonal* H and Rademacher z (z_i² = 1), zᵀH^p z/n = tr(H^p)/n for every z: Hutchinson's
  trace and the SLQ moments are then exact with zero standard error.
* Otherwise trace and moments are checked within 4 standard errors of tr(H), tr(H^p)/n.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import hesslens as hl
from hesslens.linalg.random import generator, rademacher

from _operator_cases import DT, get_case, get_operator

CASES = ["mlp-tanh-ce-mean", "mlp-relu-mse-sum", "cnn", "bn-train"]


@pytest.mark.parametrize("case_name", CASES)
def test_extreme_eigenvalues(case_name: str) -> None:
    case = get_case(case_name)
    ref = torch.linalg.eigvalsh(case.hessian).numpy()
    scale = np.abs(ref).max()
    res = hl.eigenvalues(get_operator(case_name, "double_backward"), k=2, which="both", tol=1e-10)
    expected = np.array([ref[0], ref[1], ref[-1], ref[-2]])  # 2 smallest ascending, 2 largest descending
    np.testing.assert_allclose(res.values, expected, rtol=0, atol=1e-6 * scale)
    # The returned vectors are eigenvectors of the reference matrix, not only of the operator.
    h = case.hessian.numpy()
    resid = np.linalg.norm(h @ res.vectors - res.vectors * res.values, axis=0)
    assert resid.max() <= 1e-6 * scale
    assert res.all_converged


@pytest.mark.parametrize("case_name", ["mlp-tanh-ce-mean", "cnn"])
def test_exact_spectrum(case_name: str) -> None:
    case = get_case(case_name)
    got = hl.exact_spectrum(get_operator(case_name, "double_backward"))
    ref = torch.linalg.eigvalsh(case.hessian).numpy()
    assert np.all(np.diff(got) >= 0)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-10 * np.abs(ref).max())


@pytest.mark.parametrize("method", ["hutch++", "hutchinson"])
@pytest.mark.parametrize("case_name", ["mlp-tanh-ce-mean", "cnn"])
def test_trace_within_four_standard_errors(case_name: str, method: str) -> None:
    case = get_case(case_name)
    assert case.n > 60 // 3  # else Hutch++'s sketch (60/3 columns) would span everything and be exact
    exact = float(torch.trace(case.hessian))
    op = get_operator(case_name, "double_backward")
    for seed in range(3):
        r = hl.trace(op, 60, method=method, seed=seed)
        assert r.matvecs == 60 and r.method == method
        assert r.stderr > 0
        assert abs(r.estimate - exact) <= 4 * r.stderr, (seed, r.estimate, exact, r.stderr)


def test_hutchpp_exact_when_sketch_spans_space() -> None:
    """n = 4 ≤ 60/3: the sketch Q spans ℝⁿ (H = (2/N)X̃ᵀX̃ has full rank), tr(QᵀHQ) = tr(H) exactly."""
    case = get_case("lstsq-batch_loss")
    exact = float(torch.trace(case.hessian))
    r = hl.trace(get_operator("lstsq-batch_loss", "double_backward"), 60)
    assert abs(r.estimate - exact) <= 1e-10 * exact
    assert r.stderr <= 1e-10 * exact


# -- a model with a diagonal Hessian -------------------------------------------------------------


def _diagonal_operator():
    """Least squares without bias on orthogonal columns: X = Q·diag(s), H = (2/N)·diag(s²)."""
    g = torch.Generator().manual_seed(30)
    q, _ = torch.linalg.qr(torch.randn(20, 7, generator=g, dtype=DT))
    s = torch.tensor([0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0], dtype=DT)
    x = q * s
    y = torch.randn(20, 1, generator=g, dtype=DT)
    model = nn.Linear(7, 1, bias=False).to(DT)
    op = hl.HessianOperator(model, nn.MSELoss(), [(x[:12], y[:12]), (x[12:], y[12:])], engine="double_backward")
    return op, 2.0 / 20 * s**2


def test_diagonal_hessian_trace_and_moments_are_exact() -> None:
    op, diag = _diagonal_operator()
    torch.testing.assert_close(op.dense(), torch.diag(diag), rtol=0, atol=1e-12)
    r = hl.trace(op, 10, method="hutchinson", seed=3)
    assert r.estimate == pytest.approx(float(diag.sum()), rel=1e-12) and r.stderr <= 1e-12
    for steps, exact_orders in ((op.n, range(0, 9)), (2, range(0, 4))):  # degree < 2·steps is exact
        sd = hl.spectral_density(op, steps=steps, probes=5, seed=4)
        for p in exact_orders:
            np.testing.assert_allclose(sd.moment_samples(p), float((diag**p).mean()), rtol=1e-10)
            assert sd.moment_stderr(p) <= 1e-10 * float((diag**p).mean())
    # With steps ≥ n the Ritz values are the eigenvalues themselves.
    sd = hl.spectral_density(op, steps=op.n, probes=3, seed=5)
    for row_nodes, row_weights in zip(sd.nodes, sd.weights):
        np.testing.assert_allclose(np.sort(row_nodes[row_weights > 0]), np.sort(diag.numpy()), rtol=1e-9)


# -- SLQ on general Hessians ---------------------------------------------------------------------


@pytest.mark.parametrize("steps", [10, 51])
def test_slq_moments(steps: int) -> None:
    case = get_case("mlp-tanh-ce-mean")
    n, probes, seed = case.n, 10, 7
    assert n == 51
    h = case.hessian
    sd = hl.spectral_density(get_operator("mlp-tanh-ce-mean", "double_backward"), steps=steps, probes=probes, seed=seed)
    assert sd.nodes.shape == sd.weights.shape == (probes, steps)
    np.testing.assert_allclose(sd.weights.sum(axis=1), 1.0, rtol=1e-12)

    # Statistical: the probe means estimate tr(H^p)/n.
    for p in (1, 2):
        exact = float(torch.trace(torch.linalg.matrix_power(h, p))) / n
        assert sd.moment_stderr(p) > 0
        assert abs(sd.moment(p) - exact) <= 4 * sd.moment_stderr(p), (p, sd.moment(p), exact, sd.moment_stderr(p))

    # Exact, per probe: rebuild the probes the documented way (seeded Rademacher) and compare
    # each quadrature with zᵀH^p z/n for every order the quadrature integrates exactly.
    z = rademacher(n, probes, generator(seed))
    lanczos_steps = min(steps, n)
    for p in range(1, min(2 * lanczos_steps, 8)):
        expected = ((z * (torch.linalg.matrix_power(h, p) @ z)).sum(0) / n).numpy()
        scale = float(torch.linalg.eigvalsh(h).abs().max()) ** p
        np.testing.assert_allclose(sd.moment_samples(p), expected, rtol=0, atol=1e-9 * scale)

    # Ritz values interlace: every node lies in [λ_min, λ_max].
    lam = torch.linalg.eigvalsh(h).numpy()
    lo, hi = sd.support
    tol = 1e-9 * np.abs(lam).max()
    assert lam[0] - tol <= lo and hi <= lam[-1] + tol
