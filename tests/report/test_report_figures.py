"""density.png: two panels (linear, log), λ marks, off-screen (pyplot untouched)."""

from __future__ import annotations

import numpy as np

from hesslens.report.figures import density_figure, save_density_png

from ._summaries import make_summary


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
