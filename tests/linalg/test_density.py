"""spectral_density() and SpectralDensity against planted spectra: Gauss-quadrature exactness on the very
probes used, node bounds, breakdown padding, moment calibration, smoothing, serialisation and plotting."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")  # headless: plot() must work without a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import hesslens as hl  # noqa: E402
from hesslens.linalg.density import SCHEMA, SpectralDensity, spectral_density  # noqa: E402
from hesslens.linalg.lanczos import lanczos  # noqa: E402
from hesslens.linalg.random import generator, rademacher  # noqa: E402

from ._planted import counting_operator, plant, planted, sample_spectrum  # noqa: E402
from ._settings import prop  # noqa: E402


def probes_of(n: int, probes: int, seed: int) -> np.ndarray:
    """The normalised Rademacher probes spectral_density draws: one (n, probes) draw, whatever the grouping."""
    return rademacher(n, probes, generator(seed)).numpy() / np.sqrt(n)


def quadratic_moments(a: np.ndarray, v: np.ndarray, orders) -> np.ndarray:
    """vᵣᵀ Aᵖ vᵣ for every probe r (rows) and order p (columns), by repeated products."""
    out, w = [], v.copy()
    for p in range(max(orders) + 1):
        if p in orders:
            out.append(np.einsum("nr,nr->r", v, w))
        w = a @ w
    return np.stack(out, axis=1)


@prop(30)
@given(planted(n_max=120, max_mult=4), st.integers(1, 25), st.integers(1, 4), st.integers(0, 1000),
       st.sampled_from([None, 1, 3]))
def test_quadrature_on_the_probes_used(p, steps, probes, seed, batch):
    """Gauss quadrature with m = min(steps, n) nodes reproduces vᵀAᵖv exactly for p ≤ 2m − 1, on every probe.

    Also the structural promises: shape (probes, steps), weights ≥ 0 summing to 1, nodes (Ritz values)
    inside [λ_min, λ_max], padding after a breakdown has weight 0 and copies the row's first node, matvecs
    counted. Covers rank-deficient, degenerate and n < steps cases, where recurrences stop early.
    """
    op, count = counting_operator(p.a)
    sd = spectral_density(op, steps=steps, probes=probes, seed=seed, probe_batch=batch)
    norm = p.norm
    assert sd.nodes.shape == sd.weights.shape == (probes, steps) and sd.dimension == p.n
    assert np.isfinite(sd.nodes).all() and np.isfinite(sd.weights).all() and (sd.weights >= 0).all()
    np.testing.assert_allclose(sd.weights.sum(axis=1), 1.0, atol=1e-12)
    assert (sd.nodes >= p.lam[0] - 1e-10 * norm).all() and (sd.nodes <= p.lam[-1] + 1e-10 * norm).all()
    assert sd.matvecs == count[0] <= probes * min(steps, p.n)

    v = probes_of(p.n, probes, seed)
    # the recurrence lengths, from the same probes through the same products (bit for bit: a breakdown
    # decision near the threshold must not flip): padding is exactly what lies beyond them
    matmat = hl.as_operator(op).matmat
    b = probes if batch is None else batch
    lengths = np.concatenate([lanczos(matmat, torch.from_numpy(v[:, s:s + b] * np.sqrt(p.n)), steps).lengths
                              for s in range(0, probes, b)])
    assert sd.matvecs == lengths.sum()
    for r, length in enumerate(lengths):
        # (a live node's weight u₀² may underflow to 0 when T is nearly reducible; padding is exactly 0)
        assert (sd.weights[r, length:] == 0).all()
        assert (sd.nodes[r, length:] == sd.nodes[r, 0]).all()

    # exactness: degree 2m − 1 with m valid nodes; to all orders when the recurrence found an invariant subspace
    m = min(steps, p.n)
    orders = list(range(0, min(2 * m - 1, 14) + 1))
    ref = quadratic_moments(p.a / norm, v, orders)
    got = np.stack([SpectralDensity(sd.nodes / norm, sd.weights).moment_samples(k) for k in orders], axis=1)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)
    np.testing.assert_allclose(sd.moment(1), ref[:, 1].mean() * norm, rtol=0, atol=1e-9 * norm)


def test_quadrature_degree_is_sharp():
    """Exact through degree 2m − 1 and (generically) not at 2m: the check above is sensitive to the degree."""
    p = plant(np.random.default_rng(1).uniform(-1, 1, 100), seed=1)
    m = 6
    sd = spectral_density(p.a, steps=m, probes=4, seed=3)
    ref = quadratic_moments(p.a, probes_of(100, 4, 3), list(range(2 * m + 1)))
    got = np.stack([sd.moment_samples(k) for k in range(2 * m + 1)], axis=1)
    np.testing.assert_allclose(got[:, : 2 * m], ref[:, : 2 * m], atol=1e-12)
    assert np.abs(got[:, 2 * m] - ref[:, 2 * m]).min() > 1e-8


@pytest.mark.parametrize("kind", ["general", "negative", "degenerate", "rank_deficient", "wide"])
def test_low_moments_calibrated(kind):
    """moment(p) for p = 1, 2 lies within 4 moment_stderr of tr(Aᵖ)/n for ≥ 90% of 40 seeds, and the
    stderr is not inflated (within 1 stderr well below 100% of the time)."""
    p = plant(sample_spectrum(kind, 100, np.random.default_rng(2), mult=3, rank=40), seed=2, kind=kind)
    sds = [spectral_density(p.a, steps=4, probes=10, seed=s) for s in range(40)]
    for order in (1, 2):
        exact = (p.lam**order).sum() / p.n
        err = np.array([sd.moment(order) - exact for sd in sds])
        se = np.array([sd.moment_stderr(order) for sd in sds])
        assert np.mean(np.abs(err) <= 4 * se) >= 0.9
        assert 0.35 <= np.mean(np.abs(err) <= se) <= 0.97


def test_extreme_nodes_approach_spectrum_edges():
    """steps = 80 on n = 200: every probe's extreme Ritz values match λ_min and λ_max to 1e-8·‖A‖."""
    p = plant(np.random.default_rng(0).uniform(-1, 1, 200), seed=0)
    sd = spectral_density(p.a, steps=80, probes=5)
    assert np.abs(sd.nodes.min(axis=1) - p.lam[0]).max() <= 1e-8
    assert np.abs(sd.nodes.max(axis=1) - p.lam[-1]).max() <= 1e-8
    lo, hi = sd.support
    assert p.lam[0] - 1e-12 <= lo <= p.lam[0] + 1e-8 and p.lam[-1] - 1e-8 <= hi <= p.lam[-1] + 1e-12
    assert sd.matvecs == 5 * 80 and sd.meta["steps"] == 80 and sd.meta["probes"] == 5


@pytest.mark.parametrize("lam", [
    np.full(30, 2.5),                                 # a multiple of I: invariant after one step
    np.repeat([-1.0, 0.0, 3.0], [10, 30, 10]),        # three distinct eigenvalues
    np.r_[np.zeros(45), np.linspace(1, 2, 5)],        # rank 5
    np.linspace(-1, 1, 12),                           # n < steps
], ids=["scalar", "three-values", "rank-5", "n<steps"])
def test_breakdown_padding(lam):
    """Early stops give (probes, steps) arrays, zero-weight padding, no NaN, and the exact discrete measure."""
    p = plant(lam, seed=4)
    distinct = np.unique(lam)
    sd = spectral_density(p.a, steps=20, probes=6, seed=1)
    assert sd.nodes.shape == sd.weights.shape == (6, 20)
    assert np.isfinite(sd.nodes).all() and np.isfinite(sd.weights).all()
    np.testing.assert_allclose(sd.weights.sum(axis=1), 1.0, atol=1e-12)
    live = sd.weights > 0
    assert (live.sum(axis=1) == len(distinct)).all()
    # the live nodes are exactly the distinct eigenvalues (the probe has a component along each eigenspace)
    for r in range(6):
        np.testing.assert_allclose(np.sort(sd.nodes[r, live[r]]), distinct, atol=1e-10)
    assert sd.matvecs == 6 * len(distinct)
    # the averaged weights estimate the eigenvalue fractions, and moment(p) = tr(Aᵖ)/n in expectation
    assert np.isfinite(sd.density()).all() and np.isfinite(sd.moment_stderr(2))


def test_probe_batch_only_changes_grouping():
    """probe_batch groups the same probes: every grouping gives the unbatched nodes and weights.

    Equal up to round-off, not bit for bit: a product or a batched dot product over fewer columns may
    sum in another order. Different probes would differ at order 1 (see the quadrature check below).
    """
    p = plant(np.random.default_rng(5).uniform(-1, 1, 60), seed=5)
    full = spectral_density(p.a, steps=10, probes=5, seed=9)
    ref = quadratic_moments(p.a, probes_of(60, 5, 9), [1, 2, 3])
    np.testing.assert_allclose(np.stack([full.moment_samples(k) for k in (1, 2, 3)], 1), ref, atol=1e-12)
    for batch in (1, 2, 3, 5, 7):
        grouped = spectral_density(p.a, steps=10, probes=5, seed=9, probe_batch=batch)
        np.testing.assert_allclose(grouped.nodes, full.nodes, rtol=0, atol=1e-13)
        np.testing.assert_allclose(grouped.weights, full.weights, rtol=0, atol=1e-13)
        assert grouped.matvecs == full.matvecs and grouped.meta == full.meta


def test_input_forms_agree():
    import scipy.sparse.linalg as spla

    p = plant(np.random.default_rng(6).uniform(-1, 1, 50), seed=6)
    ref = spectral_density(p.a, steps=12, probes=3, seed=2)
    for f in (torch.from_numpy(p.a), spla.aslinearoperator(p.a), hl.as_operator(p.a)):
        sd = spectral_density(f, steps=12, probes=3, seed=2)
        np.testing.assert_allclose(sd.nodes, ref.nodes, atol=1e-12)
        np.testing.assert_allclose(sd.weights, ref.weights, atol=1e-12)


# -- smoothing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [0.1, 2.0, 37.0])
def test_sigma_is_a_standard_deviation(sigma):
    """One node at 0 with weight 1: ρ_σ is the N(0, σ²) pdf — peak 1/(σ√(2π)), e^{-1/2} of it at ±σ."""
    sd = SpectralDensity(np.array([[0.0]]), np.array([[1.0]]))
    rho = sd.density(np.array([0.0, sigma, -sigma, 2 * sigma]), sigma=sigma)
    peak = 1.0 / (sigma * np.sqrt(2 * np.pi))
    np.testing.assert_allclose(rho, peak * np.exp(-0.5 * np.array([0.0, 1.0, 1.0, 4.0])), rtol=1e-14)


def test_density_is_the_probe_average():
    nodes = np.array([[0.0, 1.0], [2.0, 3.0]])
    weights = np.array([[0.5, 0.5], [0.25, 0.75]])
    sd = SpectralDensity(nodes, weights)
    t, s = np.linspace(-1, 4, 7), 0.3
    g = lambda x: np.exp(-0.5 * (x / s) ** 2) / (s * np.sqrt(2 * np.pi))  # noqa: E731
    want = 0.5 * (0.5 * g(t) + 0.5 * g(t - 1) + 0.25 * g(t - 2) + 0.75 * g(t - 3))
    np.testing.assert_allclose(sd.density(t, sigma=s), want, rtol=1e-13)
    assert sd.support == (0.0, 3.0) and sd.default_sigma() == pytest.approx(0.03)
    np.testing.assert_allclose(sd.moment_samples(1), [0.5, 2.75])


@pytest.mark.parametrize("sigma", [None, 0.05, 0.4])
def test_density_integrates_to_one(sigma):
    """On its default grid (support ± 5σ) the smoothed density integrates to 1 (trapezoid rule)."""
    p = plant(np.random.default_rng(7).uniform(-1, 1, 150), seed=7)
    sd = spectral_density(p.a, steps=30, probes=4)
    s = sd.default_sigma() if sigma is None else sigma
    grid = sd.default_grid(sigma=s)
    lo, hi = sd.support
    assert grid[0] == pytest.approx(lo - 5 * s) and grid[-1] == pytest.approx(hi + 5 * s) and len(grid) == 1000
    rho = sd.density(sigma=sigma)
    np.testing.assert_allclose(rho, sd.density(grid, sigma=s), rtol=1e-14)
    assert abs(np.trapezoid(rho, grid) - 1.0) < 1e-4


def test_degenerate_support_sigma():
    """All nodes equal: the default σ is 1% of the magnitude (or 0.01), never zero."""
    assert SpectralDensity(np.array([[3.0, 3.0]]), np.array([[1.0, 0.0]])).default_sigma() == pytest.approx(0.03)
    assert SpectralDensity(np.array([[0.0]]), np.array([[1.0]])).default_sigma() == pytest.approx(0.01)


@pytest.mark.parametrize("sigma", [0.0, -1.0, float("nan")])
def test_bad_sigma(sigma):
    with pytest.raises(hl.InvalidInputError, match="sigma"):
        SpectralDensity(np.array([[0.0]]), np.array([[1.0]])).density(sigma=sigma)


@pytest.mark.parametrize("nodes,weights", [
    (np.zeros((2, 3)), np.zeros((2, 2))),
    (np.zeros((1, 2)), np.array([[1.5, -0.5]])),
    (np.array([[np.nan, 0.0]]), np.array([[0.5, 0.5]])),
    (np.zeros((1, 0)), np.zeros((1, 0))),
])
def test_invalid_construction(nodes, weights):
    with pytest.raises(hl.InvalidInputError):
        SpectralDensity(nodes, weights)


@pytest.mark.parametrize("kwargs,name", [({"steps": 0}, "steps"), ({"probes": 0}, "probes"), ({"steps": -2}, "steps")])
def test_invalid_arguments(kwargs, name):
    with pytest.raises(hl.InvalidInputError, match=name):
        spectral_density(np.eye(5), **kwargs)


# -- serialisation and plots -------------------------------------------------------------------------


def test_json_round_trip_exact(tmp_path):
    p = plant(np.random.default_rng(8).uniform(-3, 1, 40) * np.pi, seed=8)
    sd = spectral_density(p.a, steps=50, probes=3, seed=4)  # n < steps: padded rows as well
    for back in (SpectralDensity.from_json(sd.to_json()), SpectralDensity.from_dict(json.loads(sd.to_json()))):
        assert np.array_equal(back.nodes, sd.nodes) and np.array_equal(back.weights, sd.weights)
        assert (back.dimension, back.matvecs, back.seconds, back.meta) == (sd.dimension, sd.matvecs, sd.seconds, sd.meta)
    path = tmp_path / "density.json"
    text = sd.to_json(path)
    assert path.read_text() == text and json.loads(text)["schema"] == SCHEMA
    for src in (path, str(path)):
        back = SpectralDensity.from_json(src)
        assert np.array_equal(back.nodes, sd.nodes) and np.array_equal(back.weights, sd.weights)


@pytest.mark.parametrize("schema", ["hesslens.SpectralDensity/2", "something.else/1", None])
def test_from_dict_rejects_wrong_schema(schema):
    d = SpectralDensity(np.array([[0.0, 1.0]]), np.array([[0.5, 0.5]])).to_dict()
    if schema is None:
        del d["schema"]
    else:
        d["schema"] = schema
    with pytest.raises(hl.InvalidInputError, match="schema"):
        SpectralDensity.from_dict(d)
    with pytest.raises(hl.InvalidInputError, match="schema"):
        SpectralDensity.from_json(json.dumps(d))


def test_plot_returns_figure_with_linear_and_log_panels():
    p = plant(np.random.default_rng(9).uniform(-1, 1, 60), seed=9)
    sd = spectral_density(p.a, steps=20, probes=3)
    fig = sd.plot(num=300)
    try:
        assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 2
        lin, log = fig.axes
        assert lin.get_yscale() == "linear" and log.get_yscale() == "log"
        x, y = lin.lines[0].get_data()
        np.testing.assert_allclose(y, sd.density(x), rtol=1e-12)
        assert "3 probes" in fig._suptitle.get_text()
    finally:
        plt.close(fig)
    fig2, axes = plt.subplots(1, 2)
    try:
        assert sd.plot(axes=axes, sigma=0.1, title="mine") is fig2 and fig2._suptitle.get_text() == "mine"
    finally:
        plt.close(fig2)
