"""The shared memory budget: parsing, defaults, refusals that carry the estimate, and batching that fits.

Estimates are restated here from the docstrings (float64 = 8 bytes): dense assembly 16·n², the dense
path of eigenvalues 24·n², a Lanczos group of p probes 8·p·(m + 3)·n plus n·probes bytes of signs,
the Hutch++ sketch 16·n·s.
"""

from __future__ import annotations

import os
import platform

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch

import hesslens as hl
from hesslens import memory
from hesslens.linalg.density import probe_batch_size
from hesslens.linalg.eigen import eigen_bytes
from hesslens.linalg.lanczos import lanczos
from hesslens.operators import base

from ._planted import counting_operator, plant

GiB = 2**30


@pytest.fixture(autouse=True)
def _no_budget_variable(monkeypatch):
    """Tests start from the documented default, whatever the environment running them says."""
    monkeypatch.delenv(memory.ENV_VAR, raising=False)


def column_log(a: np.ndarray):
    """A SciPy LinearOperator over ``a`` that records the number of columns of every product."""
    calls: list[int] = []

    def matmat(x):
        x = np.asarray(x)
        calls.append(1 if x.ndim == 1 else x.shape[1])
        return a @ x

    return spla.LinearOperator(a.shape, matvec=matmat, matmat=matmat, dtype=np.float64), calls


def planted_matrix(n: int, seed: int = 0) -> np.ndarray:
    return plant(np.random.default_rng(seed).uniform(-1, 1, n), seed=seed).a


# -- parsing and defaults ----------------------------------------------------------------------------


@pytest.mark.parametrize("text,expected", [
    ("8G", 8 * GiB), ("8GB", 8 * GiB), ("8GiB", 8 * GiB), ("8 g", 8 * GiB), ("512M", 512 * 2**20),
    ("1.5K", 1536), ("2T", 2 * 2**40), ("1e9", 10**9), (" 123 ", 123), ("4096", 4096),
    (4096, 4096), (np.int64(77), 77), (1e6, 10**6),
])
def test_parse_bytes(text, expected):
    assert memory.parse_bytes(text) == expected


@pytest.mark.parametrize("bad", ["", "abc", "-1G", "8X", "G", "0", 0, -5, 0.5, float("inf"), float("nan"), True, [8]])
def test_parse_bytes_refuses(bad):
    with pytest.raises(hl.InvalidInputError, match="max_bytes"):
        memory.parse_bytes(bad)


def test_default_is_a_quarter_of_physical_memory():
    assert memory.DEFAULT_FRACTION == 0.25
    physical = memory.physical_memory_bytes()
    assert isinstance(physical, int) and physical > 0
    assert memory.default_budget() == int(0.25 * physical)
    assert memory.budget(None) == memory.default_budget() and memory.budget("3G") == 3 * GiB
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = None
    if ram:
        assert physical <= ram


def test_environment_variable_overrides(monkeypatch):
    monkeypatch.setenv(memory.ENV_VAR, "3G")
    assert memory.default_budget() == 3 * GiB
    assert base.DENSE_BUDGET_BYTES == 3 * GiB  # the old constant follows the shared budget
    monkeypatch.setenv(memory.ENV_VAR, "lots")
    with pytest.raises(hl.InvalidInputError, match=f"{memory.ENV_VAR}='lots'"):
        memory.default_budget()
    with pytest.raises(hl.InvalidInputError, match=memory.ENV_VAR):
        hl.exact_spectrum(np.eye(3))


# -- refusals carry the estimate, the budget, its source and the setting to change ---------------------


def _estimate_text(nbytes: int) -> str:
    return rf"needs about {nbytes / GiB:.2f} GiB \({nbytes} bytes\)"


def test_exact_spectrum_refusal(monkeypatch):
    n = 50
    need = 16 * n * n
    op, count = counting_operator(planted_matrix(n))
    with pytest.raises(hl.MemoryBudgetError, match=_estimate_text(need) + rf".*max_bytes={need - 1}") as info:
        hl.exact_spectrum(op, max_bytes=need - 1)
    assert count[0] == 0 and memory.ENV_VAR in str(info.value) and f"{n}×{n}" in str(info.value)
    monkeypatch.setenv(memory.ENV_VAR, "10K")
    with pytest.raises(hl.MemoryBudgetError, match=_estimate_text(need) + rf".*\({memory.ENV_VAR}=10K\)"):
        hl.exact_spectrum(op)
    assert count[0] == 0
    assert hl.exact_spectrum(op, max_bytes=need).shape == (n,)  # an explicit max_bytes wins over the variable


def test_assemble_dense_and_check_dense_budget():
    n = 30
    with pytest.raises(hl.MemoryBudgetError, match=_estimate_text(16 * n * n)):
        base.assemble_dense(np.eye(n), max_bytes="1K")
    with pytest.raises(hl.MemoryBudgetError, match=_estimate_text(16 * n * n)):
        base.check_dense_budget(n, 16 * n * n - 1)
    base.check_dense_budget(n, 16 * n * n)
    a = planted_matrix(n)
    np.testing.assert_array_equal(base.assemble_dense(a, max_bytes=16 * n * n).numpy(), (a + a.T) / 2)


def test_eigenvalues_dense_path_refusal():
    """The issue: k = n/2 on n = 42,003 went to the dense path and allocated 14 GB. Here n = 60, k = 30."""
    n = 60
    op, count = counting_operator(planted_matrix(n))
    need = 24 * n * n
    with pytest.raises(hl.MemoryBudgetError, match="dense.*" + _estimate_text(need)) as info:
        hl.eigenvalues(op, k=30, max_bytes=need - 1)
    assert count[0] == 0 and "lower k" in str(info.value)
    assert len(hl.eigenvalues(op, k=30, max_bytes=need).values) == 30


def test_eigenvalues_lanczos_refusal():
    n, k = 400, 3
    op, count = counting_operator(planted_matrix(n))
    b, m, wanted = 3, max(20 + k, 2 * k + 6), k  # the documented defaults: block min(k, 8), ncv
    need = eigen_bytes(n, m, b, wanted)
    assert need >= 8 * n * m  # at least the basis
    with pytest.raises(hl.MemoryBudgetError, match=rf"{n}×{m} float64 Lanczos basis.*" + _estimate_text(need)):
        hl.eigenvalues(op, k=k, max_bytes=need - 1)
    assert count[0] == 0
    r = hl.eigenvalues(op, k=k, max_bytes=need, tol=1e-10)
    np.testing.assert_allclose(r.values, np.sort(np.linalg.eigvalsh(op @ np.eye(n)))[::-1][:k], atol=1e-9)


def test_lanczos_refusal():
    n, steps, p = 100, 10, 3
    a = torch.from_numpy(planted_matrix(n))
    need = 8 * p * (steps + 3) * n
    calls = []
    with pytest.raises(hl.MemoryBudgetError, match=_estimate_text(need)):
        lanczos(lambda v: calls.append(1) or a @ v, torch.ones(n, p, dtype=torch.float64), steps, max_bytes=need - 1)
    assert not calls
    assert lanczos(lambda v: a @ v, torch.ones(n, p, dtype=torch.float64), steps, max_bytes=need).matvecs > 0


def test_trace_sketch_refusal():
    n, m = 200, 60
    op, count = counting_operator(planted_matrix(n))
    need = 16 * n * (m // 3)
    with pytest.raises(hl.MemoryBudgetError, match=_estimate_text(need) + ".*hutchinson"):
        hl.trace(op, m, max_bytes=need - 1)
    assert count[0] == 0


# -- batching to fit ---------------------------------------------------------------------------------


@pytest.mark.parametrize("per_group", [1, 2, 3])
def test_spectral_density_batches_probes_to_fit(per_group):
    """A budget that holds exactly `per_group` probes' Lanczos storage: groups of that many columns, and the
    unbatched nodes and weights (the same probes; equal up to the round-off of batched products)."""
    n, steps, probes = 80, 12, 7
    a = planted_matrix(n, 4)
    ref_op, ref_calls = column_log(a)
    ref = hl.spectral_density(ref_op, steps=steps, probes=probes, seed=5)
    assert max(ref_calls) == probes  # unbatched under the default budget
    budget = n * probes + per_group * 8 * (steps + 3) * n
    assert probe_batch_size(n, steps, probes, max_bytes=budget) == per_group
    if per_group > 1:
        assert probe_batch_size(n, steps, probes, max_bytes=budget - 1) == per_group - 1
    op, calls = column_log(a)
    sd = hl.spectral_density(op, steps=steps, probes=probes, seed=5, max_bytes=budget)
    assert max(calls) == per_group and sum(calls) == sd.matvecs == ref.matvecs
    np.testing.assert_allclose(sd.nodes, ref.nodes, rtol=0, atol=1e-13)
    np.testing.assert_allclose(sd.weights, ref.weights, rtol=0, atol=1e-13)
    assert sd.meta == ref.meta


def test_spectral_density_refuses_when_one_probe_does_not_fit():
    n, steps, probes = 80, 12, 4
    op, count = counting_operator(planted_matrix(n))
    need = n * probes + 8 * (steps + 3) * n
    with pytest.raises(hl.MemoryBudgetError, match=_estimate_text(need) + ".*lower steps"):
        hl.spectral_density(op, steps=steps, probes=probes, max_bytes=need - 1)
    assert count[0] == 0


def test_issue_example_is_batched_not_refused():
    """steps = 80, probes = 10 on 5 million parameters needed 32 GB at once: with a 4G budget the probes
    run one at a time (3.1 GiB each), with 32G all ten together; with 3G not even one fits."""
    n, steps, probes = 5_000_000, 80, 10
    per_probe, signs = 8 * (steps + 3) * n, n * probes
    assert probe_batch_size(n, steps, probes, max_bytes="4G") == (4 * GiB - signs) // per_probe == 1
    assert probe_batch_size(n, steps, probes, max_bytes="32G") == 10
    assert probe_batch_size(n, steps, probes, probe_batch=4, max_bytes="32G") == 4
    with pytest.raises(hl.MemoryBudgetError, match=rf"{(signs + per_probe) / GiB:.2f} GiB"):
        probe_batch_size(n, steps, probes, max_bytes="3G")


@pytest.mark.parametrize("method", ["hutchinson", "hutch++"])
def test_trace_batches_probe_columns_to_fit(method):
    """Probe products in groups that fit (4 float64 n-vectors per column), same probes, same estimate."""
    n, m = 100, 30
    a = planted_matrix(n, 6)
    ref_op, ref_calls = column_log(a)
    ref = hl.trace(ref_op, m, method, seed=2)
    s = m // 3 if method == "hutch++" else 0
    group = 4
    budget = 8 * n * s + n * (m - 2 * s) + group * 4 * 8 * n
    budget = max(budget, 16 * n * s)  # the sketch must fit too
    op, calls = column_log(a)
    r = hl.trace(op, m, method, seed=2, max_bytes=budget)
    assert sum(calls) == m == r.matvecs
    assert max(calls[1:] if s else calls) == group  # after the sketch product (s columns)
    np.testing.assert_allclose(r.samples, ref.samples, rtol=1e-12, atol=1e-12)
    assert abs(r.estimate - ref.estimate) <= 1e-12 and abs(r.stderr - ref.stderr) <= 1e-12


def test_trace_refuses_when_one_probe_column_does_not_fit():
    """Hutchinson: the probes' signs (n·m bytes) and one column's four float64 n-vectors."""
    n, m = 200, 40
    op, count = counting_operator(planted_matrix(n))
    need = n * m + 4 * 8 * n
    with pytest.raises(hl.MemoryBudgetError, match=_estimate_text(need) + ".*lower num_matvecs"):
        hl.trace(op, m, "hutchinson", max_bytes=need - 1)
    assert count[0] == 0
    assert hl.trace(op, m, "hutchinson", max_bytes=need).matvecs == m


def _resident_bytes() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc" or not os.path.exists("/proc/self/status"),
                    reason="malloc_trim is glibc's; the resident set is read from Linux's /proc")
def test_release_freed_memory_returns_freed_heap_pages():
    # 6,000 tensors of 32 KiB (below glibc's mmap threshold, so on the heap) freed below a live one:
    # the heap cannot shrink from its top, so the freed pages stay resident until trimmed
    chunks = [torch.ones(8192) for _ in range(6000)]
    pin = torch.ones(8192)
    del chunks
    before = _resident_bytes()
    assert memory.release_freed_memory() is True
    assert before - _resident_bytes() > 100 * 2**20  # of the 188 MiB freed
    del pin


def test_release_freed_memory_is_a_no_op_without_glibc(monkeypatch):
    class NoTrim:
        def __init__(self, name):
            pass  # a C library without malloc_trim (musl, macOS)

    monkeypatch.setattr(memory.ctypes, "CDLL", NoTrim)
    assert memory.release_freed_memory() is False
