"""The algorithms on block views (local Hessians H_ii) against dense float64 references: exact per-block
spectra, per-block SLQ, eigenvalues and traces, shared products and their counts, the independence of a
block's result from the other blocks, and planted block-diagonal-plus-coupling spectra."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import hesslens as hl
from hesslens.errors import InvalidInputError, MemoryBudgetError
from hesslens.linalg.blocks import DEFAULT_MAX_BLOCK, BlockResults, products
from hesslens.linalg.random import gaussian, generator, rademacher
from hesslens.operators.blocks import BlockView

from ._planted import haar_orthogonal
from ._settings import prop

DT = torch.float64


def sym(n: int, seed: int) -> np.ndarray:
    g = np.random.default_rng(seed).standard_normal((n, n))
    return (g + g.T) / 2


def indices(view: BlockView, block) -> np.ndarray:
    return np.concatenate([np.arange(s.start, s.stop) for s in view.slices(block)])


def diagonal_block(a: np.ndarray, view: BlockView, block) -> np.ndarray:
    idx = indices(view, block)
    return a[np.ix_(idx, idx)]


class Counting:
    """A SciPy LinearOperator over ``a`` counting its calls and columns."""

    def __init__(self, a: np.ndarray):
        self.a, self.calls, self.columns = a, 0, 0

        def matmat(x):
            x = np.asarray(x).reshape(a.shape[0], -1)
            self.calls += 1
            self.columns += x.shape[1]
            return a @ x

        self.op = spla.LinearOperator(a.shape, matvec=matmat, matmat=matmat, dtype=np.float64)


#: A 40-dimensional matrix cut into blocks of 3, 4 (two ranges), 11 and 22 coordinates.
A40 = sym(40, 0)
SLICES = {"a": slice(0, 3), "b": [slice(3, 5), slice(14, 16)], "c": slice(5, 14), "d": [slice(16, 38), slice(38, 40)]}


def view40(op=None) -> BlockView:
    return BlockView.from_slices(A40 if op is None else op, SLICES)


@pytest.fixture(scope="module")
def mlp_operator():
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).to(DT)
    data = (torch.randn(12, 4, generator=g, dtype=DT), torch.randint(0, 3, (12,), generator=g))
    op = hl.HessianOperator(model, nn.CrossEntropyLoss(), data, engine="double_backward")
    return op, op.dense().numpy()


@pytest.fixture(scope="module")
def cnn_operator():
    g = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.Tanh(), nn.Flatten(),
                          nn.Linear(2 * 4 * 4, 3)).to(DT)
    data = (torch.randn(8, 1, 4, 4, generator=g, dtype=DT), torch.randint(0, 3, (8,), generator=g))
    op = hl.HessianOperator(model, nn.CrossEntropyLoss(), data, engine="double_backward")
    return op, op.dense().numpy()


# -- the results container -------------------------------------------------------------------------


def test_block_results_is_a_mapping_of_names():
    r = BlockResults(("0", "2"), ("first", "second"), (3, 4), matvecs=7, seconds=0.5)
    assert r["2"] == "second" and list(r) == ["0", "2"] and len(r) == 2
    assert list(r.items()) == [("0", "first"), ("2", "second")] and list(r.values()) == ["first", "second"]
    assert "0" in r and 0 not in r and r.get("x") is None
    with pytest.raises(KeyError):
        r["x"]
    with pytest.raises(KeyError):
        r[0]  # keys are names only: a Sequential's blocks are named "0", "2", …
    assert "2 blocks of str" in repr(r)
    with pytest.raises(AttributeError):
        r.matvecs = 3  # frozen


# -- exact spectra ------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["dense", "mlp", "cnn"])
def test_exact_block_spectra_are_those_of_the_dense_slices(case, mlp_operator, cnn_operator):
    if case == "dense":
        counting = Counting(A40)
        view, a = view40(counting.op), A40
    else:
        op, a = mlp_operator if case == "mlp" else cnn_operator
        view = hl.blocks(op)
    spectra = hl.exact_spectrum(view)
    assert isinstance(spectra, BlockResults) and spectra.names == view.names and spectra.sizes == view.sizes
    assert spectra.matvecs == sum(view.sizes)
    scale = max(1.0, float(np.abs(a).max()))
    for name, values in spectra.items():
        np.testing.assert_allclose(values, np.linalg.eigvalsh(diagonal_block(a, view, name)), rtol=0, atol=1e-12 * scale)
    if case == "dense":
        assert counting.calls == 1 and counting.columns == 40  # every block's identity columns in one product
        alone = hl.exact_spectrum(view.block("d"))  # one block as an operator of its own
        np.testing.assert_allclose(alone, spectra["d"], rtol=0, atol=1e-12 * scale)
    if case == "cnn":  # the BatchNorm affine parameters are one block of 4
        assert view.names == ("0", "1", "4") and spectra["1"].shape == (4,)


def test_exact_spectrum_splits_products_to_fit_the_budget():
    counting = Counting(A40)
    view = view40(counting.op)
    whole = hl.exact_spectrum(view40())
    # ~20 KiB: the padded product then holds a few columns only (each 2·40·8 bytes), besides the blocks
    small = hl.exact_spectrum(view, max_bytes=20_000)
    assert counting.calls > 1 and counting.columns == 40
    for name in whole:
        np.testing.assert_allclose(small[name], whole[name], rtol=0, atol=1e-13)
    with pytest.raises(MemoryBudgetError, match="dense blocks"):
        hl.exact_spectrum(view, max_bytes=1000)


def test_exact_spectrum_refuses_blocks_above_max_block():
    assert DEFAULT_MAX_BLOCK == 4096
    counting = Counting(A40)
    with pytest.raises(InvalidInputError, match=r"max_block=8 .* too large: 'c' \(9\), 'd' \(24\).*view.subset"):
        hl.exact_spectrum(view40(counting.op), max_block=8)
    assert counting.calls == 0  # refused before any product
    small = hl.exact_spectrum(view40().subset(["a", "b"]), max_block=10)
    assert small.names == ("a", "b")
    with pytest.raises(InvalidInputError, match="max_block applies to a BlockView"):
        hl.exact_spectrum(A40, max_block=10)
    with pytest.raises(InvalidInputError, match="max_block must be an integer"):
        hl.exact_spectrum(view40(), max_block=2.5)


def test_dense_inputs_are_checked_through_the_view():
    bad = A40.copy()
    bad[0, 1] += 1.0
    with pytest.raises(InvalidInputError, match="not symmetric"):
        hl.exact_spectrum(BlockView.from_slices(bad, SLICES))


# -- spectral densities -------------------------------------------------------------------------------


def test_full_length_slq_nodes_are_each_blocks_exact_eigenvalues(mlp_operator):
    """With steps ≥ n_i a block's Lanczos exhausts its Krylov space (n_i steps, fewer where the probe sees
    fewer distinct eigenvalues, as in the output layer's null space of a cross-entropy Hessian): its nodes
    are eigenvalues of H_ii, every eigenvalue the probe sees is a node, and the quadrature reproduces
    vᵀ H_ii^p v / ‖v‖² for every p; rows are padded with weight 0 to ``steps``."""
    op, a = mlp_operator
    view = hl.blocks(op)  # blocks of 30 and 21
    steps, probes, seed = 35, 2, 3
    sd = hl.spectral_density(view, steps=steps, probes=probes, seed=seed)
    z = rademacher(op.n, probes, generator(seed)).numpy()
    for name, d in sd.items():
        h = diagonal_block(a, view, name)
        lam, q = np.linalg.eigh(h)
        scale = np.abs(lam).max()
        assert d.nodes.shape == (probes, steps) and d.dimension == len(lam) and d.meta["block"] == name
        v = z[indices(view, name)]
        seen = (q.T @ v) ** 2 / len(lam)  # the probe's weight on each eigenvector
        for r in range(probes):
            live = d.weights[r] > 0
            assert 1 < live.sum() <= len(lam) and (d.weights[r, live.sum():] == 0).all()
            nodes = d.nodes[r, live]
            assert np.abs(nodes[:, None] - lam[None, :]).min(axis=1).max() <= 1e-9 * scale
            visible = lam[seen[:, r] > 1e-8]
            assert np.abs(visible[:, None] - nodes[None, :]).min(axis=1).max() <= 1e-9 * scale
            for p in range(2 * len(lam) + 2):
                exact = float(v[:, r] @ np.linalg.matrix_power(h, p) @ v[:, r]) / len(lam)
                assert d.moment_samples(p)[r] == pytest.approx(exact, abs=1e-10 * scale ** p)
    assert sd.matvecs == sum(d.matvecs for d in sd.values()) <= probes * sum(view.sizes)


def test_slq_probes_are_the_rows_of_the_whole_operators_probes():
    """Block i's probe r is rows I_i of column r of rademacher(n, probes, generator(seed)): the quadrature
    on it reproduces vᵀ H_ii^p v / n_i exactly for p ≤ 2m − 1."""
    steps, probes, seed = 4, 3, 11
    sd = hl.spectral_density(view40(), steps=steps, probes=probes, seed=seed)
    z = rademacher(40, probes, generator(seed)).numpy()
    for name, d in sd.items():
        h = diagonal_block(A40, view40(), name)
        v = z[indices(view40(), name)]
        m = min(steps, len(h))
        for p in range(2 * m):
            exact = np.einsum("ir,ir->r", v, np.linalg.matrix_power(h, p) @ v) / len(h)
            scale = max(1.0, np.abs(np.linalg.eigvalsh(h)).max() ** p)
            np.testing.assert_allclose(d.moment_samples(p), exact, rtol=0, atol=1e-10 * scale)


def test_a_blocks_density_does_not_depend_on_the_other_blocks():
    full = hl.spectral_density(view40(), steps=6, probes=3, seed=5)
    for name in SLICES:
        alone = hl.spectral_density(view40().subset([name]), steps=6, probes=3, seed=5)[name]
        rebuilt = hl.spectral_density(BlockView.from_slices(A40, {"x": SLICES[name]}), steps=6, probes=3, seed=5)["x"]
        for other in (alone, rebuilt):
            np.testing.assert_allclose(other.nodes, full[name].nodes, rtol=0, atol=1e-12)
            np.testing.assert_allclose(other.weights, full[name].weights, rtol=0, atol=1e-12)


def test_a_blocks_density_over_a_hessian_does_not_depend_on_the_other_blocks(mlp_operator):
    op, _ = mlp_operator
    full = hl.spectral_density(hl.blocks(op), steps=12, probes=2, seed=1)
    for name in full:
        alone = hl.spectral_density(hl.blocks(op).subset([name]), steps=12, probes=2, seed=1)[name]
        np.testing.assert_allclose(alone.nodes, full[name].nodes, rtol=0, atol=1e-12)
        np.testing.assert_allclose(alone.weights, full[name].weights, rtol=0, atol=1e-12)


def test_split_products_equal_one_product():
    """The budget may split a round of padded products into calls (a block's columns across two): same numbers."""
    counting = Counting(A40)
    view = view40(counting.op)
    vs = [torch.randn(s, 3, generator=torch.Generator().manual_seed(i), dtype=DT) for i, s in enumerate(view.sizes)]
    vs[1] = None
    whole = products(view, vs, 100)
    split = products(view, vs, 2)
    assert counting.calls == 1 + 5 and counting.columns == 2 * 9  # 9 columns in calls of 2
    for w, p in zip(whole, split):
        assert (w is None and p is None) or float((w - p).abs().max()) <= 1e-14


def test_one_covering_block_reproduces_the_single_operator_results():
    view = BlockView.from_slices(A40, {"all": slice(0, 40)})
    sd, ref = hl.spectral_density(view, steps=9, probes=4, seed=2)["all"], hl.spectral_density(A40, steps=9, probes=4, seed=2)
    # Same probes and steps; the padded block products may take other BLAS kernels than the plain ones
    # (bit-equal on one machine, 1e-14 apart on an AMD EPYC): equal to round-off.
    np.testing.assert_allclose(sd.nodes, ref.nodes, rtol=0, atol=1e-12)
    np.testing.assert_allclose(sd.weights, ref.weights, rtol=0, atol=1e-12)
    ev, ref_ev = hl.eigenvalues(view, k=2, which="both", seed=4)["all"], hl.eigenvalues(A40, k=2, which="both", seed=4)
    np.testing.assert_allclose(ev.values, ref_ev.values, rtol=0, atol=1e-12)
    assert ev.matvecs == ref_ev.matvecs
    for method in ("hutch++", "hutchinson"):
        tr, ref_tr = hl.trace(view, num_matvecs=15, method=method, seed=1)["all"], hl.trace(A40, 15, method, seed=1)
        assert tr.estimate == pytest.approx(ref_tr.estimate, abs=1e-12) and tr.matvecs == ref_tr.matvecs == 15
        np.testing.assert_allclose(tr.samples, ref_tr.samples, rtol=0, atol=1e-12)


def test_slq_advances_every_block_in_one_product_per_step():
    """Each step is one product of K·probes padded columns; blocks smaller than steps drop out after n_i
    steps (here a: 3, b: 4), so the columns are Σ_i probes·min(steps, n_i)."""
    counting = Counting(A40)
    view = view40(counting.op)
    sd = hl.spectral_density(view, steps=8, probes=3, seed=0)
    assert counting.calls == 8
    assert counting.columns == sd.matvecs == view.matvecs == 3 * (3 + 4 + 8 + 8)
    assert [sd[n].matvecs for n in sd] == [9, 12, 24, 24]
    assert (sd["a"].weights[:, 3:] == 0).all() and sd["a"].nodes.shape == (3, 8)


def test_slq_probe_groups_change_nothing():
    whole = hl.spectral_density(view40(), steps=7, probes=5, seed=9)
    for grouped in (hl.spectral_density(view40(), steps=7, probes=5, seed=9, probe_batch=2),
                    hl.spectral_density(view40(), steps=7, probes=5, seed=9, max_bytes=12_000)):
        for name in whole:
            np.testing.assert_allclose(grouped[name].nodes, whole[name].nodes, rtol=0, atol=1e-12)
            np.testing.assert_allclose(grouped[name].weights, whole[name].weights, rtol=0, atol=1e-12)
    with pytest.raises(MemoryBudgetError, match="per-block SLQ of 4 blocks"):
        hl.spectral_density(view40(), steps=7, probes=5, max_bytes=500)


def test_progress_bars_run(capsys):
    hl.spectral_density(view40(), steps=3, probes=2, progress=True)
    hl.eigenvalues(view40(), k=1, progress=True)
    hl.trace(view40(), num_matvecs=9, progress=True)


# -- eigenvalues --------------------------------------------------------------------------------------


def _large_blocks() -> tuple[np.ndarray, BlockView]:
    """Blocks big enough for the restarted Lanczos path (n_i > ncv + b) and one for the dense path."""
    a = sym(150, 7)
    return a, BlockView.from_slices(a, {"big": slice(0, 70), "mid": [slice(70, 90), slice(110, 150)],
                                        "small": slice(90, 110)})


@pytest.mark.parametrize("which", ["largest", "smallest", "both"])
def test_block_eigenvalues_against_eigvalsh(which, mlp_operator):
    for a, view in (_large_blocks(), (mlp_operator[1], hl.blocks(mlp_operator[0]))):
        result = hl.eigenvalues(view, k=2, which=which, tol=1e-10)
        assert result.names == view.names
        for name, r in result.items():
            h = diagonal_block(a, view, name)
            lam = np.linalg.eigvalsh(h)
            expected = {"largest": lam[::-1][:2], "smallest": lam[:2], "both": np.r_[lam[:2], lam[::-1][:2]]}[which]
            scale = np.abs(lam).max()
            np.testing.assert_allclose(r.values, expected, rtol=0, atol=1e-8 * scale)
            assert r.all_converged and r.vectors.shape == (len(h), len(expected))
            true = np.linalg.norm(h @ r.vectors - r.vectors * r.values, axis=0)
            assert (true <= 1e-8 * scale).all()
        assert result.matvecs == sum(r.matvecs for r in result.values()) == view.matvecs


def test_block_eigenvalues_share_their_products():
    """All solvers advance together: the number of operator calls is the longest solver's iterations,
    not their sum; the dense-path block adds its identity columns to the first product only."""
    a, _ = _large_blocks()
    counting = Counting(a)
    view = _large_blocks()[1].with_operator(hl.as_operator(counting.op))
    result = hl.eigenvalues(view, k=2, which="largest", tol=1e-10, seed=1)
    b = 2
    iterations = {name: r.matvecs // b for name, r in result.items() if name != "small"}
    assert result["small"].matvecs == 20 and result["small"].restarts == 0  # n=20 ≤ ncv + b: dense
    assert counting.calls == max(iterations.values()) < sum(iterations.values())
    assert counting.columns == result.matvecs


def test_block_eigenvalues_do_not_depend_on_the_other_blocks():
    a, view = _large_blocks()
    full = hl.eigenvalues(view, k=2, which="both", seed=3)
    for name in view.names:
        alone = hl.eigenvalues(view.subset([name]), k=2, which="both", seed=3)[name]
        np.testing.assert_allclose(alone.values, full[name].values, rtol=0, atol=1e-12 * np.abs(a).max())
        assert alone.matvecs == full[name].matvecs


def test_block_eigenvalues_start_from_the_rows_of_the_whole_start_block():
    """A block starts from its rows of the (n, b) Gaussian block eigenvalues(op, seed=) draws: the same run
    as eigenvalues(H_ii, v0=those rows). Warm starts per block (v0 maps names to arrays): the exact top
    eigenvector converges at once."""
    a, view = _large_blocks()
    h = diagonal_block(a, view, "big")
    lam, q = np.linalg.eigh(h)
    cold = hl.eigenvalues(view.subset(["big"]), k=1, seed=0)["big"]
    rows = gaussian(150, 1, generator(0)).numpy()[indices(view, "big")]
    same = hl.eigenvalues(h, k=1, v0=rows, seed=0)
    np.testing.assert_allclose(cold.values, same.values, rtol=0, atol=1e-12 * np.abs(lam).max())
    assert cold.matvecs == same.matvecs
    warm = hl.eigenvalues(view.subset(["big"]), k=1, seed=0, v0={"big": q[:, -1]})["big"]
    assert warm.values[0] == pytest.approx(lam[-1], abs=1e-10) and warm.matvecs < cold.matvecs
    with pytest.raises(InvalidInputError, match="no block named 'nope'"):
        hl.eigenvalues(view, k=1, v0={"nope": q[:, -1]})
    with pytest.raises(InvalidInputError, match="v0 for a block view must be a mapping"):
        hl.eigenvalues(view, k=1, v0=q[:, -1])
    with pytest.raises(InvalidInputError, match=r"v0\['big'\] must have shape \(70,\)"):
        hl.eigenvalues(view, k=1, v0={"big": np.ones(5)})


def test_block_eigenvalues_refuse_k_too_large_for_a_block():
    with pytest.raises(InvalidInputError, match=r"block 'a' \(n=3\): k=3 must be smaller than the dimension n=3"):
        hl.eigenvalues(view40(), k=3)
    with pytest.raises(InvalidInputError, match=r"block 'b' \(n=4\): which='both' with k=3"):
        hl.eigenvalues(view40().subset(["b", "c"]), k=3, which="both")


# -- traces -------------------------------------------------------------------------------------------


def test_hutchinson_block_traces_from_one_pass_of_full_probes(mlp_operator):
    """estimate_i = mean_r z_rᵢᵀ (H z_r)ᵢ with z the (n, m) probes trace() draws, computed by hand; one pass
    of m full-length products serves every block; the blocks' estimates sum to the whole Hutchinson one."""
    op, a = mlp_operator
    view = hl.blocks(op)
    m, seed = 40, 6
    before = op.matvecs
    result = hl.trace(view, num_matvecs=m, method="hutchinson", seed=seed)
    assert op.matvecs - before == m == result.matvecs
    z = rademacher(op.n, m, generator(seed)).numpy()
    hz = a @ z
    for name, r in result.items():
        idx = indices(view, name)
        forms = np.einsum("ir,ir->r", z[idx], hz[idx])
        np.testing.assert_allclose(r.samples, forms, rtol=0, atol=1e-12 * np.abs(a).max())
        assert r.estimate == pytest.approx(forms.mean(), abs=1e-12)
        assert r.stderr == pytest.approx(forms.std(ddof=1) / np.sqrt(m), rel=1e-9)
        assert r.method == "hutchinson" and r.matvecs == m
    whole = hl.trace(op, num_matvecs=m, method="hutchinson", seed=seed)
    assert sum(r.estimate for r in result.values()) == pytest.approx(whole.estimate, abs=1e-10)


def test_hutchinson_block_traces_are_unbiased():
    """Over many probes each estimate lies within a few standard errors of tr(H_ii), although the
    cross-block terms of the full products enter every sample."""
    m = 4000
    result = hl.trace(view40(), num_matvecs=m, method="hutchinson", seed=0)
    for name, r in result.items():
        exact = np.trace(diagonal_block(A40, view40(), name))
        assert abs(r.estimate - exact) <= 4 * r.stderr
        assert r.stderr > 0


def test_hutch_plus_plus_block_traces(mlp_operator):
    """Per-block Hutch++ on H_ii through block products: blocks no larger than m/3 are sketched exactly;
    the others lie within a few standard errors; each block counts 2·s_i + (m − 2·(m/3)) products."""
    m = 30
    counting = Counting(A40)
    result = hl.trace(view40(counting.op), num_matvecs=m, seed=2)
    for name, r in result.items():
        h = diagonal_block(A40, view40(), name)
        s = min(m // 3, len(h))
        assert r.matvecs == 2 * s + m - 2 * (m // 3) and r.method == "hutch++"
        if len(h) <= m // 3:
            assert r.estimate == pytest.approx(np.trace(h), abs=1e-10) and r.stderr < 1e-10
        else:
            assert abs(r.estimate - np.trace(h)) <= 5 * r.stderr + 1e-10
    assert counting.columns == result.matvecs == sum(r.matvecs for r in result.values())
    op, a = mlp_operator
    view = hl.blocks(op)
    per_block = hl.trace(view, num_matvecs=90, seed=0)
    for name, r in per_block.items():
        assert abs(r.estimate - np.trace(diagonal_block(a, view, name))) <= 5 * r.stderr + 1e-10


def test_trace_block_independence_and_budget():
    full = hl.trace(view40(), num_matvecs=24, seed=8)
    for name in SLICES:
        alone = hl.trace(view40().subset([name]), num_matvecs=24, seed=8)[name]
        assert alone.estimate == pytest.approx(full[name].estimate, abs=1e-12)
    squeezed = hl.trace(view40(), num_matvecs=24, seed=8, max_bytes=12_000)
    for name in SLICES:
        assert squeezed[name].estimate == pytest.approx(full[name].estimate, abs=1e-12)
    with pytest.raises(MemoryBudgetError):
        hl.trace(view40(), num_matvecs=24, max_bytes=300)


# -- planted block spectra ------------------------------------------------------------------------------


@st.composite
def coupled_blocks(draw):
    """A = blockdiag(Q_i diag(λ_i) Q_iᵀ) + C, C a symmetric coupling with zero diagonal blocks, the blocks'
    coordinates interleaved in two ranges each; returns (A, slices, planted spectra)."""
    sizes = draw(st.lists(st.integers(2, 14), min_size=1, max_size=4))
    seed = draw(st.integers(0, 2**31 - 1))
    coupling = draw(st.sampled_from([0.0, 1.0, 100.0]))
    rng = np.random.default_rng(seed)
    n = sum(sizes)
    perm = rng.permutation(n) if draw(st.booleans()) else np.arange(n)  # interleaved or contiguous blocks
    a = np.zeros((n, n))
    c = rng.standard_normal((n, n)) * coupling
    c = (c + c.T) / 2
    spectra, slices, start = {}, {}, 0
    for i, size in enumerate(sizes):
        lam = np.sort(rng.uniform(-1.0, 1.0, size)) * 10.0 ** rng.uniform(-2, 2)
        q = haar_orthogonal(size, seed + i)
        idx = np.sort(perm[start:start + size])
        a[np.ix_(idx, idx)] = (q * lam) @ q.T
        c[np.ix_(idx, idx)] = 0.0
        spectra[f"b{i}"] = lam
        runs = np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)  # maximal runs of consecutive indices
        slices[f"b{i}"] = [slice(int(r[0]), int(r[-1]) + 1) for r in runs]
        start += size
    a = a + c
    return (a + a.T) / 2, slices, spectra


@prop(30)
@given(coupled_blocks())
def test_planted_block_spectra_ignore_the_coupling(case):
    """Exact spectra, full-length SLQ nodes and extreme eigenvalues of each block are the planted λ_i of its
    diagonal block, whatever the off-diagonal coupling."""
    a, slices, spectra = case
    view = BlockView.from_slices(a, slices)
    exact = hl.exact_spectrum(view)
    sd = hl.spectral_density(view, steps=14, probes=1, seed=0)
    top = hl.eigenvalues(view, k=1, which="both", tol=1e-10)
    for name, lam in spectra.items():
        scale = np.abs(lam).max()
        np.testing.assert_allclose(exact[name], lam, rtol=0, atol=1e-12 * max(scale, np.abs(a).max()))
        live = sd[name].weights[0] > 1e-14
        nodes = sd[name].nodes[0, live]
        # every Ritz value of the exhausted Krylov space is an eigenvalue of the block, and the extremes are found
        assert np.abs(nodes[:, None] - lam[None, :]).min(axis=1).max() <= 1e-8 * scale
        np.testing.assert_allclose(top[name].values, [lam[0], lam[-1]], rtol=0, atol=1e-8 * scale)
