"""exact_spectrum(): the dense reference, and its memory guard."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch
from hypothesis import given

import hesslens as hl
from hesslens.linalg.exact import exact_spectrum
from hesslens.operators.base import dense_bytes

from ._planted import counting_operator, plant, planted
from ._settings import prop


@prop(30)
@given(planted(max_mult=5))
def test_matches_eigvalsh_and_planted(p):
    op, count = counting_operator(p.a)
    got = exact_spectrum(op)
    assert isinstance(got, np.ndarray) and got.dtype == np.float64 and got.shape == (p.n,)
    assert np.all(np.diff(got) >= 0)
    assert count[0] == p.n  # one product per identity column
    np.testing.assert_allclose(got, np.linalg.eigvalsh(p.a), rtol=0, atol=1e-12 * p.norm)
    np.testing.assert_allclose(got, p.lam, rtol=0, atol=1e-12 * p.norm)


def test_input_forms():
    p = plant(np.random.default_rng(1).uniform(-1, 1, 70), seed=1)
    ref = exact_spectrum(p.a)
    for f in (torch.from_numpy(p.a), spla.aslinearoperator(p.a), hl.as_operator(p.a)):
        np.testing.assert_allclose(exact_spectrum(f), ref, atol=1e-13)
    # float32 input: the float32 matrix's spectrum, computed in float64
    a32 = torch.from_numpy(p.a).float()
    np.testing.assert_allclose(exact_spectrum(a32), np.linalg.eigvalsh(a32.double().numpy()), atol=1e-13)


def test_asymmetric_roundoff_is_symmetrised():
    p = plant(np.random.default_rng(2).uniform(-1, 1, 30), seed=2)
    b = p.a + 1e-11 * np.triu(np.random.default_rng(3).standard_normal((30, 30)), 1)
    np.testing.assert_allclose(exact_spectrum(b), np.linalg.eigvalsh((b + b.T) / 2), atol=1e-13)


def test_refuses_above_max_bytes_before_any_product():
    p = plant(np.linspace(-1, 1, 50))
    op, count = counting_operator(p.a)
    need = dense_bytes(50)
    with pytest.raises(hl.MemoryBudgetError, match="GiB") as info:
        exact_spectrum(op, max_bytes=need - 1)
    assert isinstance(info.value, MemoryError) and count[0] == 0
    np.testing.assert_allclose(exact_spectrum(op, max_bytes=need), p.lam, atol=1e-12)


def test_default_budget_refuses_huge_operator(monkeypatch):
    """n = 20000 needs 5.96 GiB in float64 (matrix + copy) > a 4G budget: refused without a single product."""
    def boom(x):
        raise AssertionError("exact_spectrum multiplied before checking the budget")

    monkeypatch.setenv("HESSLENS_MEMORY_BUDGET", "4G")
    op = spla.LinearOperator((20000, 20000), matvec=boom, matmat=boom, dtype=np.float64)
    with pytest.raises(hl.MemoryBudgetError, match=r"5\.96 GiB.*4\.00 GiB \(HESSLENS_MEMORY_BUDGET=4G\)"):
        exact_spectrum(op)
