"""Report figures, drawn off-screen.

Figures are built on a bare ``matplotlib.figure.Figure`` (rendered by Agg when saved), never through
``pyplot``: no window opens, no display is needed, and the caller's pyplot backend and figure list
are left alone.

The density figure shows how far to trust it:

* the curve is the SLQ estimate ρ_σ, the mean over probes of each probe's smoothed quadrature
  measure; each of those integrates to 1 (a probe's weights sum to 1 and the Gaussian integrates to
  1), so ρ_σ does too, and the y-axes say so;
* the band is ±2 standard errors of that mean, pointwise over the probes (each probe's own density
  is an unbiased estimate of the smoothed spectrum, so their spread is the probe noise); with one
  probe there is no band, and the legend says why;
* λ_min and λ_max (restarted Lanczos) are dashed lines labelled with their values and residuals; the
  other requested eigenvalues, if any, are thin dotted lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..linalg import SpectralDensity
from ..render import fmt

#: How many standard errors the band spans on each side of the mean density.
BAND_STDERRS = 2
#: The y-axis label of the linear panel: ρ_σ is a probability density over eigenvalues.
DENSITY_LABEL = "density (integrates to 1)"


def probe_densities(density: SpectralDensity, grid: np.ndarray, sigma: float) -> np.ndarray:
    """Each probe's smoothed density on ``grid``, shape (probes, len(grid)); their mean is
    ``density.density(grid, sigma)``."""
    return np.stack([SpectralDensity(density.nodes[r:r + 1], density.weights[r:r + 1]).density(grid, sigma)
                     for r in range(density.probes)])


def density_band(density: SpectralDensity, grid: np.ndarray, sigma: float,
                 stderrs: float = BAND_STDERRS) -> tuple[np.ndarray, np.ndarray] | None:
    """Pointwise mean ± ``stderrs`` standard errors over probes (the lower edge clipped at 0);
    None with a single probe, where no standard error exists."""
    if density.probes < 2:
        return None
    each = probe_densities(density, grid, sigma)
    mean = each.mean(axis=0)
    half = stderrs * each.std(axis=0, ddof=1) / np.sqrt(density.probes)
    return np.maximum(mean - half, 0.0), mean + half


def _eigen_label(name: str, value: float, residual: float | None) -> str:
    text = f"{name} = {fmt(value, 4)}"
    return text + (f" (residual {fmt(residual, 2)})" if residual is not None else "")


def density_figure(density: SpectralDensity, *, lambda_min: float | None = None, lambda_max: float | None = None,
                   lambda_min_residual: float | None = None, lambda_max_residual: float | None = None,
                   eigenvalues: Sequence[float] = (), title: str | None = None, sigma: float | None = None,
                   num: int = 1000):
    """The smoothed SLQ density in linear and log scale, with its probe band and the Lanczos λ_min/λ_max.

    σ (``sigma``) is the standard deviation of the Gaussian smoothing, in eigenvalue units; by default
    1% of the SLQ support (see :meth:`SpectralDensity.default_sigma`). ``eigenvalues`` are further
    computed eigenvalues (e.g. the k largest) to mark besides λ_min and λ_max; the residuals label
    the λ lines.
    """
    from matplotlib.figure import Figure

    s = density.default_sigma() if sigma is None else float(sigma)
    grid = density.default_grid(num, s)
    rho = density.density(grid, s)
    band = density_band(density, grid, s)
    floor = max(1e-8, float(rho.max()) * 1e-9)

    fig = Figure(figsize=(10, 4.6), layout="constrained")
    lin, log = fig.subplots(1, 2)
    lin.plot(grid, rho, color="C0", lw=1.4, zorder=3, label="SLQ density (mean over probes)")
    log.semilogy(grid, np.maximum(rho, floor), color="C0", lw=1.4, zorder=3)
    if band is not None:
        band_label = f"±{BAND_STDERRS} standard errors over {density.probes} probes"
        lin.fill_between(grid, *band, color="C0", alpha=0.25, lw=0, zorder=2, label=band_label)
        log.fill_between(grid, np.maximum(band[0], floor), np.maximum(band[1], floor), color="C0", alpha=0.25,
                         lw=0, zorder=2)
    else:
        lin.plot([], [], " ", label="no band: one probe, no standard error")
    lin.set_ylim(bottom=0)
    lin.set_ylabel(DENSITY_LABEL)
    log.set_ylim(bottom=floor)
    log.set_ylabel(DENSITY_LABEL + ", log scale")

    marks = [(v, _eigen_label(name, v, r), c) for v, name, r, c in (
        (lambda_min, "λ_min", lambda_min_residual, "C3"), (lambda_max, "λ_max", lambda_max_residual, "C2"))
        if v is not None]
    extremes = {v for v, _, _ in marks}
    others = sorted({float(v) for v in eigenvalues} - extremes)
    for ax in (lin, log):
        ax.set_xlabel("eigenvalue")
        ax.axvline(0.0, color="0.6", lw=0.8, ls=":", zorder=1)
        for value, label, colour in marks:
            ax.axvline(value, color=colour, lw=1.1, ls="--", zorder=4, label=label if ax is lin else None)
        for i, value in enumerate(others):
            ax.axvline(value, color="0.3", lw=0.9, ls=":", zorder=4,
                       label=f"other computed eigenvalues ({len(others)})" if ax is lin and i == 0 else None)
    # One legend for both panels, below them, so it never hides the curve.
    handles, labels = lin.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize="small", frameon=False)
    fig.suptitle(title or f"SLQ spectral density ({density.probes} probes × {density.steps} steps, "
                 f"Gaussian smoothing σ = {s:.3g})")
    return fig


def save_density_png(density: SpectralDensity, path: str | Path, *, dpi: int = 120, **kwargs) -> Path:
    """Write :func:`density_figure` as a PNG; returns the path."""
    path = Path(path)
    fig = density_figure(density, **kwargs)
    fig.savefig(path, dpi=dpi, format="png")
    return path
