"""A float32 Lanczos basis: its accuracy against planted spectra and the float64 basis, its choice and its memory;
the same for the probes and sketch of a trace."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import hesslens as hl
from hesslens.linalg.density import probe_batch_size
from hesslens.linalg.lanczos import basis_dtype, lanczos, lanczos_bytes

from ._planted import plant, planted
from ._settings import prop

EPS32 = float(torch.finfo(torch.float32).eps)


@prop(20)
@given(planted(kinds=("general", "negative", "clustered"), n_max=100), st.integers(1, 3), st.integers(0, 1000))
def test_float32_basis_recovers_planted_spectrum_to_float32_precision(p, probes, seed):
    """steps = n on a planted matrix: eig(T_n) = λ to a few ε₃₂·‖A‖, the Ritz values of a float32 basis
    (a float64 basis reaches 1e-10·‖A‖, tests/linalg/test_lanczos.py)."""
    a = torch.from_numpy(p.a)
    v0 = torch.from_numpy(np.random.default_rng(seed).standard_normal((p.n, probes)))
    seen = []
    tri = lanczos(lambda v: (seen.append(v.dtype), a @ v)[1], v0, p.n, dtype="float32")
    assert set(seen) == {torch.float64}  # a dense float64 operator is fed float64 blocks
    for r in range(probes):
        m = int(tri.lengths[r])
        ritz = np.linalg.eigvalsh(tri.matrix(r))
        # every Ritz value lies on the spectrum; with a full run every eigenvalue is found
        gaps = np.abs(ritz[:, None] - p.lam[None, :]).min(1)
        assert gaps.max() <= 200 * EPS32 * p.norm
        if m == p.n:
            np.testing.assert_allclose(ritz, p.lam, rtol=0, atol=200 * EPS32 * p.norm)


def test_float32_basis_stops_at_an_exhausted_krylov_space():
    """Three distinct eigenvalues: the recurrence breaks down after three steps in float32 as in float64."""
    p = plant(np.repeat([1.0, 2.0, 5.0], 20), seed=3)
    v0 = torch.ones(p.n, 2, dtype=torch.float64)
    v0[0, 1] = -3.0
    for dtype in ("float32", "float64"):
        tri = lanczos(lambda v: torch.from_numpy(p.a).to(v.dtype) @ v, v0, 20, dtype=dtype, native=True)
        assert list(tri.lengths) == [3, 3] and tri.matvecs == 6
        np.testing.assert_allclose(np.linalg.eigvalsh(tri.matrix(0)), [1, 2, 5], atol=50 * EPS32 * 5)


def test_native_operator_gets_blocks_of_the_basis_dtype():
    p = plant(np.linspace(-1, 3, 30), seed=1)
    a = torch.from_numpy(p.a).float()
    seen = []
    lanczos(lambda v: (seen.append(v.dtype), a @ v)[1], torch.ones(30, 1, dtype=torch.float64), 10,
            dtype=torch.float32, native=True)
    assert set(seen) == {torch.float32}


def _float32_model(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x, y = torch.randn(300, 12, generator=gen), torch.randint(0, 4, (300,), generator=gen)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(12, 24), torch.nn.Tanh(), torch.nn.Linear(24, 4))
    return model, (x, y)


def test_auto_basis_follows_the_operator_dtype():
    model, data = _float32_model()
    op32 = hl.HessianOperator(model, torch.nn.CrossEntropyLoss(), data)
    op64 = hl.HessianOperator(model.double(), torch.nn.CrossEntropyLoss(), (data[0].double(), data[1]))
    assert basis_dtype(None, op32) == torch.float32
    assert basis_dtype(None, op64) == torch.float64
    assert basis_dtype(None, torch.eye(3)) == torch.float64  # dense input: multiplied in float64
    assert basis_dtype(None, np.eye(3, dtype=np.float32)) == torch.float64
    assert hl.spectral_density(op32, steps=5, probes=1).meta["basis"] == "float32"
    assert hl.spectral_density(op64, steps=5, probes=1).meta["basis"] == "float64"
    assert hl.spectral_density(op32, steps=5, probes=1, basis_dtype="float64").meta["basis"] == "float64"


def test_float32_basis_matches_float64_basis_on_a_float32_model():
    """Same probes, same float32 products: nodes, weights and moments agree to float32 round-off."""
    model, data = _float32_model()
    op = hl.HessianOperator(model, torch.nn.CrossEntropyLoss(), data)
    ref = hl.spectral_density(op, steps=40, probes=3, seed=2, basis_dtype="float64")
    low = hl.spectral_density(op, steps=40, probes=3, seed=2, basis_dtype="float32")
    scale = float(np.abs(ref.nodes).max())
    # the extreme Ritz values converge, so they agree; interior ones are not individually stable
    np.testing.assert_allclose(low.nodes.max(1), ref.nodes.max(1), rtol=0, atol=1e-4 * scale)
    np.testing.assert_allclose(low.nodes.min(1), ref.nodes.min(1), rtol=0, atol=1e-4 * scale)
    for k in (1, 2, 3, 4):
        assert low.moment(k) == pytest.approx(ref.moment(k), rel=1e-4)
    assert low.matvecs == ref.matvecs


def test_float32_basis_halves_the_memory_estimate():
    n, steps = 10_000, 50
    assert lanczos_bytes(n, steps, 2, torch.float32) * 2 == lanczos_bytes(n, steps, 2)
    one64 = lanczos_bytes(n, steps, 1)
    # a budget that holds two float64 probes holds four float32 ones (signs: 1 byte per entry)
    budget = 2 * one64 + n * 8
    assert probe_batch_size(n, steps, 8, max_bytes=budget) == 2
    assert probe_batch_size(n, steps, 8, max_bytes=budget, dtype=torch.float32) == 4


@pytest.mark.parametrize("bad", ["float16", "double", torch.float16, 32, object()])
def test_bad_basis_dtype_is_refused(bad):
    with pytest.raises(hl.InvalidInputError, match="basis_dtype"):
        hl.spectral_density(torch.eye(4, dtype=torch.float64), steps=3, probes=1, basis_dtype=bad)


def test_block_slq_refuses_a_float32_basis():
    model, data = _float32_model()
    view = hl.blocks(hl.HessianOperator(model, torch.nn.CrossEntropyLoss(), data))
    with pytest.raises(hl.InvalidInputError, match="float64"):
        hl.spectral_density(view, steps=3, probes=1, basis_dtype="float32")


def test_a_float32_model_traces_in_float32_to_float32_round_off():
    """The trace of a float32 operator multiplies float32 probes and sketch by default: the same probes as
    float64 ones, the same estimate to float32 round-off; a sketch spanning the whole space gives the
    exact trace of the dense Hessian."""
    model, data = _float32_model()
    op = hl.HessianOperator(model, torch.nn.CrossEntropyLoss(), data)
    seen = []
    product = op.torch_matmat
    op.torch_matmat = lambda v: (seen.append(v.dtype), product(v))[1]
    low = hl.trace(op, num_matvecs=30, seed=3)
    assert set(seen) == {torch.float32}
    seen.clear()
    ref = hl.trace(op, num_matvecs=30, seed=3, basis_dtype="float64")
    assert set(seen) == {torch.float64}
    assert low.estimate == pytest.approx(ref.estimate, rel=1e-5) and low.stderr == pytest.approx(ref.stderr, rel=1e-3)
    np.testing.assert_allclose(low.samples, ref.samples, rtol=1e-4, atol=1e-6 * float(np.abs(ref.samples).max()))
    exact = float(torch.diagonal(op.dense()).sum())
    whole = hl.trace(op, num_matvecs=3 * op.n, seed=0)  # s = n: Q spans everything
    assert whole.estimate == pytest.approx(exact, rel=1e-5)
    for method in ("hutch++", "hutchinson"):
        assert hl.trace(op, num_matvecs=12, method=method, seed=1).samples.dtype == np.float64
    with pytest.raises(hl.InvalidInputError, match="per-block traces keep their probes in float64"):
        hl.trace(hl.blocks(op, "auto"), num_matvecs=12, basis_dtype="float32")
