"""A study's report, rendered from its database: ``OUT/report.md`` and ``OUT/report.html``.

The page holds the results table, the tables and notes a study's ``report`` hook adds
(:class:`~hesslens.studies.ReportContent`) and its figures — or, without a hook, a default figure of
each recorded metric against the first varying numeric configuration field — under ``OUT/figures``.

Everything the report consists of, the hook's own files included, is written into a staging folder
inside ``OUT`` (the ``out`` the hook receives) and moved into place when complete
(:func:`hesslens.outputs.staged_folder`): an error or Ctrl-C while rendering leaves the previous
report whole, and a symbolic link among the report's files is refused, never written through.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..errors import HesslensError, InvalidInputError
from ..outputs import check_folder, staged_folder
from ..render import Figure, Page, Section, Table, fmt
from .artifacts import ArtifactLoader
from .declaration import ReportContent, Study, _positional_arity
from .export import results_frame, series_frame
from .registry import get
from .runner import _last_line, _paths
from .stats import mean_interval
from .store import Store

#: The entries of ``OUT`` a report replaces (a report hook may add more).
REPORT_ENTRIES = ("report.md", "report.html", "figures")
@dataclass
class ReportFiles:
    markdown: Path
    html: Path
    figures: list[tuple[str, Path]]


def _save_figure(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _collect_figures(result: Any, out: Path, fig_dir: Path) -> list[tuple[str, Path]]:
    if result is None:
        found = sorted(p for p in fig_dir.glob("*") if p.suffix.lower() in (".png", ".svg", ".jpg", ".jpeg"))
        return [(p.stem.replace("_", " "), p) for p in found]
    items = list(result.items()) if isinstance(result, Mapping) else [(None, r) for r in result]
    figures = []
    for i, (title, item) in enumerate(items):
        if hasattr(item, "savefig"):
            path = _save_figure(item, fig_dir / f"figure_{i + 1:02d}.png")
        else:
            path = Path(item)
            if not path.is_absolute() and not path.exists():
                path = out / path
            if not path.exists():
                raise HesslensError(f"the report hook returned {str(item)!r}, which does not exist")
        figures.append((str(title) if title is not None else path.stem.replace("_", " "), path))
    return figures


def metrics_figure(df: pd.DataFrame, study: Study) -> tuple[Any, str] | None:
    """Each numeric record column (up to 6) against the first varying numeric configuration field, and its caption.

    With one seed, every run is a point and the line joins the means per value of the axis. With two or
    more seeds, every run is still drawn as a faint point, and the mean over seeds at each value carries
    error bars: its two-sided 95 % Student-t confidence interval (:func:`.stats.mean_interval`), said in
    the caption. The y-axis spans the data with margins and no offset.
    """
    from matplotlib.figure import Figure

    config_cols = [f.name for f in dataclasses.fields(study.config) if f.name in df.columns]
    numeric = lambda c: pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])  # noqa: E731
    xs = [c for c in config_cols if numeric(c) and df[c].nunique() > 1 and c != "seed"]  # seeds are replicates
    metrics = [c for c in df.columns if c not in config_cols and c not in ("run_key", "seed", "status", "attempts",
                                                                           "seconds", "finished", "diverged")
               and numeric(c)]
    if not xs or not metrics or df.empty:
        return None
    x = xs[0]
    metrics = metrics[:6]
    n_seeds = int(df["seed"].nunique()) if "seed" in df.columns else 1
    cols = min(3, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows))
    xv = df[x].astype(float)
    log_x = bool((xv > 0).all() and xv.max() / xv.min() >= 50)
    for i, m in enumerate(metrics):
        ax = fig.add_subplot(rows, cols, i + 1)
        y = df[m].astype(float)
        ax.scatter(xv, y, s=14 if n_seeds > 1 else 18, alpha=0.35 if n_seeds > 1 else 0.7)
        finite = pd.DataFrame({"x": xv, "y": y})
        groups = finite[np.isfinite(finite["y"])].groupby("x")["y"]
        means = groups.mean()
        if n_seeds > 1:
            intervals = [mean_interval(v.to_numpy()) if len(v) else None for _, v in groups]
            low = [it.estimate - it.low if it is not None and math.isfinite(it.low) else 0.0 for it in intervals]
            high = [it.high - it.estimate if it is not None and math.isfinite(it.high) else 0.0 for it in intervals]
            ax.errorbar(means.index, means.values, yerr=[low, high], fmt="-o", ms=4, lw=1, capsize=3)
        else:
            ax.plot(means.index, means.values, lw=1)
        if log_x:
            ax.set_xscale("log")
        ax.margins(x=0.05, y=0.08)
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.set_xlabel(x)
        ax.set_ylabel(m)
        ax.grid(alpha=0.3)
    if n_seeds > 1:
        caption = (f"metrics against {x}: mean over {n_seeds} seeds with its 95 % t confidence interval; "
                   "faint points are single runs")
    else:
        caption = f"metrics against {x}"
    fig.suptitle(f"{study.name}: " + (caption if n_seeds > 1 else f"{caption} (points: runs; line: mean)"))
    fig.tight_layout()
    return fig, caption


def default_figures(df: pd.DataFrame, study: Study, fig_dir: Path) -> list[tuple[str, Path]]:
    """:func:`metrics_figure`, saved as ``figures/metrics.png``."""
    made = metrics_figure(df, study)
    if made is None:
        return []
    fig, caption = made
    return [(caption, _save_figure(fig, fig_dir / "metrics.png"))]


#: Rows of a table in the report; the rest are in the CSV files.
_MAX_ROWS = 200


def render_report(study: str | Study, out: str | Path | None = None, *, db: str | Path | None = None) -> ReportFiles:
    """Write ``OUT/report.md`` and ``OUT/report.html`` (figures under ``OUT/figures``) from the database."""
    study = get(study)
    out_dir, db_path = _paths(study, out, db)
    if not db_path.exists():
        raise InvalidInputError(f"no study database at {db_path}: run `hesslens study {study.name}` first")
    check_folder(out_dir, whole=False, entries=REPORT_ENTRIES, what="study folder")
    with Store(db_path) as store:
        rows = store.runs(study.name)
        df = results_frame(rows)
        counts = store.counts(study.name)
        presets = {p: sum(store.counts(study.name, p).values()) for p in store.presets(study.name)}
        series = series_frame(store, study.name) if study.report is not None else None
    with staged_folder(out_dir, whole=False, last=("report.md", "report.html"), what="study folder") as stage:
        fig_dir = stage / "figures"
        fig_dir.mkdir()
        figures: list[tuple[str, Path]] = []
        content = ReportContent()
        if not df.empty:
            if study.report is not None:
                arity = _positional_arity(study.report, study.name, "report", allowed=(2, 3, 4))
                loader = ArtifactLoader(db_path, study.name)
                try:
                    result = study.report(*(df, stage, series, loader)[:arity])
                finally:
                    loader.close()
                if isinstance(result, ReportContent):
                    content, result = result, result.figures
                figures = _collect_figures(result, stage, fig_dir)
            else:
                figures = default_figures(df, study, fig_dir)
        failed = [(r["run_key"], r["attempts"], _last_line(r["error"])) for r in rows if r["status"] == "failed"]
        # Configuration fields equal in every run are stated once instead of filling a column each.
        fixed = {c: df[c].iloc[0] for c in (f.name for f in dataclasses.fields(study.config))
                 if len(df) > 1 and c in df.columns and df[c].astype(str).nunique() == 1}
        page = _page(study, db_path, counts, content, failed, df.drop(columns=list(fixed)),
                     ", ".join(f"{k} = {fmt(v, 4)}" for k, v in fixed.items()), figures, presets)
        (stage / "report.md").write_text(page.markdown(stage))
        (stage / "report.html").write_text(page.html())
        # Where the figures will be once the staging folder is moved into place.
        moved = [(t, out_dir / p.resolve().relative_to(stage.resolve()) if p.resolve().is_relative_to(stage.resolve())
                  else p) for t, p in figures]
    return ReportFiles(out_dir / "report.md", out_dir / "report.html", moved)


def preset_note(presets: Mapping[str, int]) -> str:
    """What the runs are: the presets that asked for them, and a warning when they are only smoke runs."""
    if not presets:
        return "Presets: none recorded (runs of a grid given directly)."
    text = "Presets: " + ", ".join(f"{p} ({n} runs)" for p, n in presets.items()) + "."
    if set(presets) == {"smoke"}:
        text = ("SMOKE RUNS ONLY: the smoke preset exercises the code on tiny runs; nothing on this page is a "
                "result. " + text)
    return text


def _page(study: Study, db: Path, counts: Mapping[str, int], content: ReportContent,
          failed: list[tuple[str, int, str]], results: pd.DataFrame, fixed_text: str,
          figures: list[tuple[str, Path]], presets: Mapping[str, int] | None = None) -> Page:
    """The report's parts, rendered as Markdown and as HTML by :class:`hesslens.render.Page`."""
    count_text = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no runs"
    sections = []
    for title in dict.fromkeys([*content.tables, *content.notes]):
        parts: list[Any] = []
        if title in content.tables:
            parts.append(Table(content.tables[title], {"max_rows": _MAX_ROWS, "blank": "—"}))
        if title in content.notes:
            parts.append(content.notes[title])
        sections.append(Section(title, parts))
    if figures:
        sections.append(Section("Figures", [Figure(p, caption=t) for t, p in figures]))
    results_parts: list[Any] = [f"Same in every run: {fixed_text}." if fixed_text else ""]
    results_parts.append(Table(results, {"max_rows": _MAX_ROWS, "blank": "—", "more": "{n} more rows in results.csv"})
                         if not results.empty else "No finished runs yet.")
    sections.append(Section("Results", results_parts))
    if failed:
        sections.append(Section("Failed runs", [Table(failed, {"columns": ("run", "attempts", "error")})]))
    generated = time.strftime("%Y-%m-%d %H:%M:%S")
    return Page(f"Study `{study.name}`", sections, intro=[
        preset_note(presets or {}), study.description.strip(),
        f"Runs: {count_text}. Database: `{db}`. Generated {generated}."])
