"""Report figures, drawn off-screen.

Figures are built on a bare ``matplotlib.figure.Figure`` (rendered by Agg when saved), never through
``pyplot``: no window opens, no display is needed, and the caller's pyplot backend and figure list
are left alone.
"""

from __future__ import annotations

from pathlib import Path

from ..linalg import SpectralDensity


def density_figure(density: SpectralDensity, *, lambda_min: float | None = None, lambda_max: float | None = None,
                   title: str | None = None, sigma: float | None = None):
    """The smoothed SLQ density in linear and log scale, with the Lanczos λ_min/λ_max marked.

    σ (``sigma``) is the standard deviation of the Gaussian smoothing, in eigenvalue units; by default
    1% of the SLQ support (see :meth:`SpectralDensity.default_sigma`).
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.8), layout="constrained")
    axes = fig.subplots(1, 2)
    density.plot(sigma=sigma, axes=axes, title=title)
    marks = [(v, lab, c) for v, lab, c in ((lambda_min, "λ_min", "C3"), (lambda_max, "λ_max", "C2")) if v is not None]
    for ax in axes:
        for value, label, colour in marks:
            ax.axvline(value, color=colour, lw=1.0, ls="--", label=f"{label} = {value:.4g}")
    if marks:
        axes[0].legend(loc="upper right", fontsize="small", frameon=False)
    return fig


def save_density_png(density: SpectralDensity, path: str | Path, *, dpi: int = 120, **kwargs) -> Path:
    """Write :func:`density_figure` as a PNG; returns the path."""
    path = Path(path)
    fig = density_figure(density, **kwargs)
    fig.savefig(path, dpi=dpi, format="png")
    return path
