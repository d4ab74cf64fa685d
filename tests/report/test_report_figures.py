"""density.png: two panels (linear, log), λ marks labelled with residuals, the probe band, the
normalisation on the axes, off-screen (pyplot untouched)."""

from __future__ import annotations

import numpy as np
import pytest

import hesslens as hl
from hesslens.report.figures import density_figure, save_density_png

from ._summaries import NODES, WEIGHTS, make_summary


def test_two_panels_linear_and_log_with_lambda_marks():
    sd = make_summary().spectral_density
    fig = density_figure(sd, lambda_min=-0.625, lambda_max=3.25)
    lin, log = fig.axes
    assert lin.get_yscale() == "linear" and log.get_yscale() == "log"
    for ax in (lin, log):
        marks = sorted(line.get_xdata()[0] for line in ax.get_lines() if line.get_linestyle() == "--")
        assert marks == [-0.625, 3.25]
    # the linear panel's curve is the smoothed density of the nodes on its own grid
    curve = lin.get_lines()[0]
    np.testing.assert_allclose(curve.get_ydata(), sd.density(curve.get_xdata()), rtol=1e-12)


def test_png_written_without_touching_pyplot(tmp_path):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    path = save_density_png(make_summary().spectral_density, tmp_path / "d.png", lambda_max=3.25)
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert plt.get_fignums() == before


# -- what the figure says about its own accuracy ------------------------------------------------------
def _by_hand(nodes: np.ndarray, weights: np.ndarray, grid: np.ndarray, sigma: float) -> np.ndarray:
    """One probe's smoothed density Σ_k w_k g_σ(t − θ_k), written out independently of hesslens."""
    g = np.exp(-0.5 * ((grid[:, None] - nodes[None, :]) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
    return g @ weights


def _legend_texts(fig) -> list[str]:
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def test_the_density_integrates_to_one_as_its_axes_say():
    sd = make_summary().spectral_density
    fig = density_figure(sd)
    lin, log = fig.axes
    assert lin.get_ylabel() == "density (integrates to 1)" and "integrates to 1" in log.get_ylabel()
    x, y = lin.get_lines()[0].get_data()
    assert float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2)) == pytest.approx(1.0, abs=1e-6)  # trapezoid rule
    assert lin.get_ylim()[0] == 0  # the linear panel starts at zero


def test_the_band_is_two_standard_errors_over_probes():
    from hesslens.report.figures import density_band

    sd = make_summary().spectral_density
    sigma = sd.default_sigma()
    grid = sd.default_grid(sigma=sigma)
    each = np.stack([_by_hand(sd.nodes[r], sd.weights[r], grid, sigma) for r in range(sd.probes)])
    half = 2 * each.std(axis=0, ddof=1) / np.sqrt(sd.probes)
    low, high = density_band(sd, grid, sigma)
    np.testing.assert_allclose(high, each.mean(axis=0) + half, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(low, np.maximum(each.mean(axis=0) - half, 0.0), rtol=1e-10, atol=1e-12)
    fig = density_figure(sd)
    assert all(len(ax.collections) == 1 for ax in fig.axes)  # the shaded band, in both panels
    assert "±2 standard errors over 2 probes" in _legend_texts(fig)


def test_one_probe_has_no_band_and_says_why():
    from hesslens.report.figures import density_band

    sd = hl.SpectralDensity(NODES[:1], WEIGHTS[:1])
    assert density_band(sd, sd.default_grid(), sd.default_sigma()) is None
    fig = density_figure(sd)
    assert all(not ax.collections for ax in fig.axes)
    assert "no band: one probe, no standard error" in _legend_texts(fig)


def test_lambda_lines_are_labelled_with_values_and_residuals(tmp_path):
    sd = make_summary().spectral_density
    fig = density_figure(sd, lambda_min=-0.625, lambda_max=3.25, lambda_min_residual=2e-8, lambda_max_residual=1e-9,
                         eigenvalues=[-0.625, -0.5, 3.25, 2.75, 2.5])
    texts = _legend_texts(fig)
    assert "λ_min = -0.625 (residual 2e-08)" in texts and "λ_max = 3.25 (residual 1e-09)" in texts
    assert "other computed eigenvalues (3)" in texts
    for ax in fig.axes:  # the other requested values are dotted lines, the extremes dashed
        dotted = sorted(line.get_xdata()[0] for line in ax.get_lines() if line.get_linestyle() == ":")
        assert dotted == [-0.5, 0.0, 2.5, 2.75]  # 0.0: the zero line
    path = save_density_png(sd, tmp_path / "d.png", lambda_min=-0.625, lambda_max=3.25, lambda_max_residual=1e-9)
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
