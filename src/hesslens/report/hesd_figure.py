"""The HESD figure in the style of Gabdullin's papers: log density over a symmetric eigenvalue axis.

Gabdullin (2024, 2025) draws each Hessian eigenvalue spectral density on a logarithmic y axis over an
x axis symmetric about 0 (his code plots density + 1e-7 with ``semilogy`` on [−max|λ|, max|λ|], smoothed
with σ = 0.005 × the span), so that the negative part of the spectrum is as visible as the positive one
and the three types (MP mainly positive, MN mainly negative, QS quasi-singular) can be told apart by eye.
:func:`hesd_figure` draws one or several spectra that way, each labelled with its type by hesslens's
criterion (:func:`hesslens.hesd_type`) and its spectral-mass balance C.

Built on a bare ``matplotlib.figure.Figure`` (never ``pyplot``), like every report figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis import Assessment, HesdType, hesd_type
from ..errors import InvalidInputError
from ..linalg import SpectralDensity

__all__ = ["FLOOR", "PAD", "SIGMA_FRACTION", "hesd_figure", "hesd_label", "hesd_window", "plot_hesd",
           "save_hesd_png"]

#: The default σ as a fraction of the plotted span 2b (Gabdullin's code: 0.005).
SIGMA_FRACTION = 0.005
#: The half-width b of the x axis is (1 + PAD) × the largest |node| carrying weight over all items.
PAD = 0.05
#: The log axis starts at FLOOR × the highest peak of the drawn curves, so that empty regions (where a
#: Gaussian tail falls to 1e-300) do not take over the axis.
FLOOR = 1e-7


def _items(items: Any) -> list[tuple[SpectralDensity, HesdType, str]]:
    """(density, type, own label) per item: an Assessment keeps its own type; a density gets hesd_type's."""
    single = isinstance(items, (SpectralDensity, Assessment))
    if not single and (isinstance(items, (str, bytes)) or not isinstance(items, Sequence)):
        raise InvalidInputError(f"items must be a SpectralDensity, an Assessment (hl.assess) or a sequence of them, "
                                f"got {type(items).__name__}")
    seq = [items] if single else list(items)
    if not seq:
        raise InvalidInputError("items is empty: pass at least one SpectralDensity or Assessment")
    out = []
    for i, item in enumerate(seq):
        if isinstance(item, Assessment):
            out.append((item.density, item.hesd_type, item.label))
        elif isinstance(item, SpectralDensity):
            out.append((item, hesd_type(item), ""))
        else:
            raise InvalidInputError(f"items[{i}] must be a SpectralDensity or an Assessment, got {type(item).__name__}")
    return out


def _labels(labels: Any, own: list[str]) -> list[str]:
    if labels is None:
        if len(own) == 1:
            return [own[0] or "HESD"]
        return [text or f"spectrum {i + 1}" for i, text in enumerate(own)]
    if isinstance(labels, str):
        labels = [labels]
    if isinstance(labels, bytes) or not isinstance(labels, Sequence) or not all(isinstance(t, str) for t in labels):
        raise InvalidInputError(f"labels must be a sequence of strings, one per item, got {labels!r}")
    if len(labels) != len(own):
        raise InvalidInputError(f"labels has {len(labels)} entries for {len(own)} items")
    return list(labels)


def hesd_window(densities: Sequence[SpectralDensity], sigma: float | None = None) -> tuple[float, float]:
    """(b, σ): the half-width of the symmetric x axis [−b, b] and the smoothing σ used for every curve.

    b = (1 + :data:`PAD`) × max|λ| over the nodes carrying weight of all ``densities`` (1 when every
    such node is 0), widened to max|λ| + 5σ when a given σ is so wide that its tails would be cut;
    σ = :data:`SIGMA_FRACTION` × 2b unless given.
    """
    live = [np.abs(sd.nodes[sd.weights > 0]) for sd in densities]
    top = max(float(a.max()) if a.size else 0.0 for a in live)
    top = top if top > 0 else 1.0
    b = (1 + PAD) * top
    if sigma is None:
        return b, SIGMA_FRACTION * 2 * b
    return max(b, top + 5 * sigma), sigma


def hesd_label(label: str, kind: HesdType) -> str:
    """The legend entry of one curve: its label, type (decisive or weak) and balance C."""
    strength = "decisive" if kind.decisive else "weak"
    balance = f"C = {kind.balance:+.3f}" if math.isfinite(kind.balance) else "C undefined (every node is 0)"
    return f"{label}: {kind.kind} ({strength}), {balance}"


def hesd_figure(items: Any, *, labels: Sequence[str] | str | None = None, sigma: float | None = None,
                num: int = 2000, ax: Any = None, title: str | None = None):
    """Spectral densities on a log y axis over a symmetric eigenvalue axis [−b, b], as Gabdullin draws them.

    ``items``: one or a sequence of :class:`~hesslens.SpectralDensity` (typed by
    :func:`hesslens.hesd_type` with its defaults) or :class:`~hesslens.Assessment` (its own type, e.g.
    with a reference or other thresholds). Each curve is the smoothed SLQ density

        ρ_σ(t) = (1/n_v) Σ_r Σ_k w_k^(r) g_σ(t − θ_k^(r)),   g_σ(x) = exp(−x²/2σ²) / (σ√(2π)),

    i.e. :meth:`SpectralDensity.density` on an even grid of ``num`` points over [−b, b]; it is a
    probability density over eigenvalues and **integrates to 1** (each probe's weights sum to 1).
    **σ is a plain Gaussian standard deviation in eigenvalue units**, by default 0.005 × the plotted
    span 2b (Gabdullin's choice), and the *same σ for every curve*, so the curves are comparable.
    b = 1.05 × the largest |node| carrying weight over all items (see :func:`hesd_window`), so every
    node is inside the axis and the negative part is drawn on the same footing as the positive one.

    The y axis is logarithmic from :data:`FLOOR` (1e-7) × the highest peak upwards, so empty regions do
    not dominate; a dotted vertical line marks 0. Each legend entry carries the label (``labels``, else
    the Assessment's label, else "spectrum i"), the type MP/MN/QS, whether it is decisive or weak (|C|
    below the margin), and the spectral-mass balance C = (P − N)/(P + N). ``ax``: a matplotlib Axes to
    draw into (else a new bare ``Figure``). Returns the Figure.
    """
    entries = _items(items)
    names = _labels(labels, [own for _, _, own in entries])
    if sigma is not None and (isinstance(sigma, bool) or not isinstance(sigma, (int, float))
                              or not math.isfinite(sigma) or sigma <= 0):
        raise InvalidInputError(f"sigma must be a finite number > 0 (a standard deviation in eigenvalue units), "
                                f"got {sigma!r}")
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 2:
        raise InvalidInputError(f"num must be an integer ≥ 2 (grid points), got {num!r}")
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    if ax is not None and not isinstance(ax, Axes):
        raise InvalidInputError(f"ax must be a matplotlib Axes, got {type(ax).__name__}")
    b, s = hesd_window([sd for sd, _, _ in entries], None if sigma is None else float(sigma))
    grid = np.linspace(-b, b, int(num))
    curves = [sd.density(grid, s) for sd, _, _ in entries]
    peak = max(float(rho.max()) for rho in curves)

    if ax is None:
        fig = Figure(figsize=(7.5, 4.4), layout="constrained")
        ax = fig.subplots()
    fig = ax.figure
    styles = ("-", "--", "-.", ":")
    for i, ((_, kind, _), name, rho) in enumerate(zip(entries, names, curves)):
        ax.plot(grid, rho, color=f"C{i % 10}", ls=styles[(i // 10) % len(styles)], lw=1.3, zorder=3,
                label=hesd_label(name, kind))
    ax.set_yscale("log", nonpositive="clip")
    ax.set_xlim(-b, b)
    ax.set_ylim(FLOOR * peak, 2 * peak)
    ax.axvline(0.0, color="0.4", lw=0.8, ls=":", zorder=1)
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density (integrates to 1), log scale")
    ax.legend(loc="best", fontsize="small", frameon=False)
    ax.set_title(title or f"HESD, symmetric about 0 (Gaussian σ = {s:.3g}, the same for every curve)",
                 fontsize="medium")
    return fig


#: The public name (``hesslens.plot_hesd``).
plot_hesd = hesd_figure


def save_hesd_png(items: Any, path: str | Path, *, dpi: int = 120, **kwargs: Any) -> Path:
    """Write :func:`hesd_figure` as a PNG; returns the path."""
    path = Path(path)
    hesd_figure(items, **kwargs).savefig(path, dpi=dpi, format="png")
    return path
