"""Figures of layer-wise (local) Hessians: one spectrum panel per block, and a metric over blocks × checkpoints.

* :func:`plot_layerwise` draws every block's spectral density of a :class:`~hesslens.Layerwise` result
  the way :mod:`hesslens.report.hesd_figure` draws a HESD: the smoothed density on a log y axis over an
  x axis symmetric about 0, [−b_i, b_i] with b_i = 1.05 × the block's largest |node| (each block its own
  scale: local Hessians of one model differ by orders of magnitude), Gaussian σ = 0.005 × 2b_i, λ_min
  and λ_max of the table as dashed lines. Each panel's title is the block's name (wrapped at dots,
  shortened with "…" in the middle when it would take more than two lines), its module type, size and
  HESD type.
* :func:`layerwise_heatmap` draws one metric (any numeric column of the table) as a heat map, rows the
  blocks in model order and columns the checkpoints, with a colour bar; linear, logarithmic or
  symmetric-logarithmic colour scale (λ metrics span decades and change sign).

Built on a bare ``matplotlib.figure.Figure`` (never ``pyplot``), like every report figure.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..analysis.layerwise import Layerwise
from ..errors import InvalidInputError
from .hesd_figure import FLOOR, hesd_window

__all__ = ["SCALES", "block_label", "layerwise_heatmap", "plot_layerwise"]

#: Colour scales of :func:`layerwise_heatmap`.
SCALES = ("auto", "linear", "log", "symlog")
#: "auto" chooses a logarithmic scale when the finite |values| span more than this factor.
_DECADES = 100.0


def block_label(name: str, width: int = 28, lines: int = 2) -> str:
    """``name`` in at most ``lines`` lines of at most ``width`` characters: wrapped after ".", "+" or "_",
    and, when still too long, its head kept on the first lines and its tail on the last, joined by "…"
    (on one line: the first third and the last two thirds of the width, "…" between them)."""
    if len(name) <= width:
        return name
    if lines <= 1:
        head = (width - 1) // 3
        return name[:head] + "…" + name[-(width - 1 - head):]
    pieces = [p for p in re.split(r"(?<=[.+_])", name) if p]
    pieces = [p[i:i + width] for p in pieces for i in range(0, len(p), width)]
    out = [""]
    for piece in pieces:
        if len(out[-1]) + len(piece) > width:
            out.append("")
        out[-1] += piece
    if len(out) <= lines:
        return "\n".join(out)
    head = out[:lines - 1]
    tail = name[-(width - 1):]
    return "\n".join([*head, "…" + tail])


def _results(results: Any) -> tuple[list[Layerwise], list[str]]:
    """Layerwise results and default labels from a sequence of results or of (index, result) pairs."""
    if isinstance(results, Layerwise):
        results = [results]
    if isinstance(results, (str, bytes)) or not isinstance(results, Sequence) or not results:
        raise InvalidInputError("results must be a non-empty sequence of Layerwise results (hl.layerwise), of "
                                "(index, result) pairs (tracker.layerwise), or the long-form tracker.layerwise_history")
    out, labels = [], []
    for i, item in enumerate(results):
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], Layerwise):
            labels.append(str(item[0]))
            item = item[1]
        elif isinstance(item, Layerwise):
            labels.append(str(i))
        else:
            raise InvalidInputError(f"results[{i}] must be a Layerwise result or an (index, Layerwise) pair, "
                                    f"got {type(item).__name__}")
        out.append(item)
    return out, labels


def plot_layerwise(result: Layerwise, *, blocks: Sequence[str] | None = None, sigma: float | None = None,
                   num: int = 800, ncols: int | None = None, width: int = 28, title: str | None = None):
    """One panel per block of ``result`` (a :class:`~hesslens.Layerwise`), in model order (or the
    ``blocks`` named): the block's density on a log scale over [−b_i, b_i], b_i = 1.05 × its largest
    |node|, smoothed with σ = ``sigma`` (a Gaussian standard deviation in eigenvalue units; default
    0.005 × 2b_i, per block), λ_min and λ_max dashed. Titles: the block name (:func:`block_label` with
    ``width``), then "type · n params · HESD type (exact or SLQ)". ``ncols`` panels per row (default up
    to 3). Returns a bare matplotlib Figure.
    """
    if not isinstance(result, Layerwise):
        raise InvalidInputError(f"result must be a Layerwise result (hl.layerwise), got {type(result).__name__}")
    table = result.table.set_index("block", drop=False)
    names = list(result.names) if blocks is None else [str(b) for b in blocks]
    unknown = [b for b in names if b not in result.densities]
    if unknown or not names:
        raise InvalidInputError(f"blocks {unknown or names} are not blocks of the result; its blocks are "
                                f"{list(result.names)}")
    if sigma is not None and (isinstance(sigma, bool) or not isinstance(sigma, (int, float))
                              or not math.isfinite(sigma) or sigma <= 0):
        raise InvalidInputError(f"sigma must be a finite number > 0, got {sigma!r}")
    if ncols is not None and (isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1):
        raise InvalidInputError(f"ncols must be a positive integer, got {ncols!r}")
    from matplotlib.figure import Figure

    cols = min(len(names), ncols or 3)
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.1 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, name in zip(axes, names):
        density, row = result.densities[name], table.loc[name]
        b, s = hesd_window([density], None if sigma is None else float(sigma))
        grid = np.linspace(-b, b, int(num))
        rho = density.density(grid, s)
        peak = float(rho.max())
        ax.plot(grid, rho, color="C0", lw=1.2, zorder=3)
        ax.set_yscale("log", nonpositive="clip")
        ax.set_xlim(-b, b)
        if peak > 0:
            ax.set_ylim(FLOOR * peak, 2 * peak)
        ax.axvline(0.0, color="0.5", lw=0.8, ls=":", zorder=1)
        for value, colour in ((row["lambda_min"], "C3"), (row["lambda_max"], "C2")):
            if math.isfinite(value):
                ax.axvline(value, color=colour, lw=0.9, ls="--", zorder=2)
        kind = row["hesd_type"] + ("" if row["hesd_decisive"] else " (weak)")
        how = "exact" if row["exact"] else f"SLQ {density.probes}×{density.steps}"
        head = block_label(name, width)
        ax.set_title(f"{head}\n{row['type'] or 'block'} · {int(row['n_params']):,} params · {kind} ({how})",
                     fontsize="small")
        ax.set_xlabel("eigenvalue", fontsize="small")
        ax.tick_params(labelsize="x-small")
    for ax in axes[len(names):]:
        ax.set_axis_off()
    axes[0].set_ylabel("density, log scale", fontsize="small")
    fig.suptitle(title or "Local Hessian spectra per block (λ_min red, λ_max green, dashed)", fontsize="medium")
    return fig


def _matrix(results: Any, metric: str, labels: Sequence[str] | None) -> tuple[np.ndarray, list[str], list[str]]:
    """(values blocks × checkpoints, block names in model order, checkpoint labels)."""
    import pandas as pd

    if isinstance(results, pd.DataFrame):
        frame = results
        if "block" not in frame or "checkpoint" not in frame:
            raise InvalidInputError("a DataFrame must be the long form of tracker.layerwise_history (columns "
                                    "'checkpoint', 'block' and the metrics)")
        checkpoints = list(dict.fromkeys(frame["checkpoint"]))
        tables = [frame[frame["checkpoint"] == c] for c in checkpoints]
        default = [str(c) for c in checkpoints]
    else:
        found, default = _results(results)
        tables = [r.table for r in found]
    numeric = [c for c in tables[0].columns if c not in ("checkpoint", "epoch", "step")
               and pd.api.types.is_numeric_dtype(tables[0][c]) and not pd.api.types.is_bool_dtype(tables[0][c])]
    if not isinstance(metric, str) or metric not in numeric:
        raise InvalidInputError(f"metric must be a numeric column of the layer-wise table, got {metric!r}; "
                                f"choose from {numeric}")
    names = list(dict.fromkeys(b for t in tables for b in t["block"]))
    values = np.full((len(names), len(tables)), np.nan)
    for j, t in enumerate(tables):
        for b, v in zip(t["block"], t[metric]):
            values[names.index(b), j] = float(v)
    if labels is None:
        labels = default
    elif isinstance(labels, (str, bytes)) or not isinstance(labels, Sequence) or len(labels) != len(tables):
        raise InvalidInputError(f"labels must be a sequence of {len(tables)} labels, one per checkpoint, got {labels!r}")
    return values, names, [str(x) for x in labels]


def layerwise_heatmap(results: Any, metric: str, labels: Sequence[Any] | None = None, *, scale: str = "auto",
                      linthresh: float | None = None, ax: Any = None, cmap: str | None = None,
                      width: int = 32, title: str | None = None):
    """``metric`` over blocks × checkpoints: rows the blocks in model order, columns the checkpoints.

    ``results``: a sequence of :class:`~hesslens.Layerwise` results (one per checkpoint), of
    ``(index, result)`` pairs (``tracker.layerwise``), or the long-form ``tracker.layerwise_history``.
    ``metric``: any numeric column of the table ("lambda_max", "trace", "condition", "neg_mass", …).
    ``labels``: one label per checkpoint (default: the pair's index, or the position). ``scale``:
    ``"linear"``, ``"log"`` (every finite value must be > 0), ``"symlog"`` (linear within ±``linthresh``,
    default 1e-3 × max|value|, logarithmic beyond; for λ metrics, which change sign and span decades) or
    ``"auto"`` (default): log when every finite value is > 0 and they span more than a factor 100,
    symlog when they span that much but are not all positive, linear otherwise. Values of both signs use
    a diverging colour map centred on 0. Missing or undefined cells (NaN) are grey. Block names are
    shortened to ``width`` characters with "…" in the middle. Returns the Figure.
    """
    values, names, cols = _matrix(results, metric, labels)
    if scale not in SCALES:
        raise InvalidInputError(f"scale must be one of {SCALES}, got {scale!r}")
    if linthresh is not None and (isinstance(linthresh, bool) or not isinstance(linthresh, (int, float))
                                  or not math.isfinite(linthresh) or linthresh <= 0):
        raise InvalidInputError(f"linthresh must be a finite number > 0, got {linthresh!r}")
    finite = values[np.isfinite(values)]
    nonzero = np.abs(finite[finite != 0])
    spread = float(nonzero.max() / nonzero.min()) if nonzero.size else 1.0
    if scale == "auto":
        scale = ("log" if finite.size and (finite > 0).all() and spread > _DECADES else
                 "symlog" if spread > _DECADES else "linear")
    if scale == "log" and finite.size and not (finite > 0).all():
        raise InvalidInputError(f"scale='log' needs every value of {metric!r} to be > 0; use scale='symlog'")
    from matplotlib import colormaps
    from matplotlib.axes import Axes
    from matplotlib.colors import LogNorm, Normalize, SymLogNorm
    from matplotlib.figure import Figure

    if ax is not None and not isinstance(ax, Axes):
        raise InvalidInputError(f"ax must be a matplotlib Axes, got {type(ax).__name__}")
    top = float(np.abs(finite).max()) if finite.size else 1.0
    two_signed = bool(finite.size and finite.min() < 0 < finite.max())
    if two_signed:  # a diverging map centred on 0
        lo, hi = -top, top
    else:
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        hi = hi if hi > lo else lo + (abs(lo) or 1.0)
    if scale == "log":
        norm = LogNorm(vmin=lo, vmax=hi) if finite.size else None
    elif scale == "symlog":
        norm = SymLogNorm(linthresh=linthresh or 1e-3 * (top or 1.0), vmin=lo, vmax=hi)
    else:
        norm = Normalize(vmin=lo, vmax=hi)
    colours = colormaps[cmap or ("RdBu_r" if two_signed else "viridis")].with_extremes(bad="0.85")
    if ax is None:
        fig = Figure(figsize=(max(5.0, 2.6 + 0.5 * len(cols)), max(2.8, 1.2 + 0.32 * len(names))),
                     layout="constrained")
        ax = fig.subplots()
    fig = ax.figure
    image = ax.imshow(np.ma.masked_invalid(values), aspect="auto", interpolation="nearest", cmap=colours, norm=norm)
    ax.set_yticks(range(len(names)), [block_label(n, width, lines=1) for n in names], fontsize="small")
    ax.set_xticks(range(len(cols)), cols, fontsize="small", rotation=90 if len(cols) > 12 else 0)
    ax.set_xlabel("checkpoint")
    ax.set_ylabel("block (model order)")
    fig.colorbar(image, ax=ax, label=f"{metric} ({scale} scale)")
    ax.set_title(title or f"{metric} per block and checkpoint", fontsize="medium")
    return fig
