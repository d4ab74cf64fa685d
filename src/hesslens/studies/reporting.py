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

import base64
import dataclasses
import html
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from ..errors import HesslensError, InvalidInputError
from ..outputs import check_folder, staged_folder
from .artifacts import ArtifactLoader
from .declaration import ReportContent, Study, _positional_arity
from .export import results_frame, series_frame
from .registry import get
from .runner import _last_line, _paths
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


def default_figures(df: pd.DataFrame, study: Study, fig_dir: Path) -> list[tuple[str, Path]]:
    """Each numeric record column (up to 6) against the first varying numeric configuration field."""
    from matplotlib.figure import Figure

    config_cols = [f.name for f in dataclasses.fields(study.config) if f.name in df.columns]
    numeric = lambda c: pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])  # noqa: E731
    xs = [c for c in config_cols if numeric(c) and df[c].nunique() > 1 and c != "seed"]  # seeds are replicates
    metrics = [c for c in df.columns if c not in config_cols and c not in ("run_key", "seed", "status", "attempts",
                                                                           "seconds", "finished", "diverged")
               and numeric(c)]
    if not xs or not metrics or df.empty:
        return []
    x = xs[0]
    metrics = metrics[:6]
    cols = min(3, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows))
    xv = df[x].astype(float)
    log_x = bool((xv > 0).all() and xv.max() / xv.min() >= 50)
    for i, m in enumerate(metrics):
        ax = fig.add_subplot(rows, cols, i + 1)
        y = df[m].astype(float)
        ax.scatter(xv, y, s=18, alpha=0.7)
        means = pd.DataFrame({"x": xv, "y": y}).groupby("x")["y"].mean()
        ax.plot(means.index, means.values, lw=1)
        if log_x:
            ax.set_xscale("log")
        ax.set_xlabel(x)
        ax.set_ylabel(m)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{study.name}: metrics against {x} (points: runs; line: mean)")
    fig.tight_layout()
    return [(f"metrics against {x}", _save_figure(fig, fig_dir / "metrics.png"))]


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "" if v is None else "nan"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


_MAX_ROWS = 200


def _markdown_table(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    esc = lambda s: s.replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(esc(str(c)) for c in cols) + " |", "|" + "---|" * len(cols)]
    for row in df.head(_MAX_ROWS).itertuples(index=False, name=None):
        lines.append("| " + " | ".join(esc(_fmt(v)) for v in row) + " |")
    if len(df) > _MAX_ROWS:
        lines.append(f"\n({len(df) - _MAX_ROWS} more rows in results.csv)")
    return "\n".join(lines)


def _html_table(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "\n".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>"
                     for row in df.head(_MAX_ROWS).itertuples(index=False, name=None))
    more = f"<p>({len(df) - _MAX_ROWS} more rows in results.csv)</p>" if len(df) > _MAX_ROWS else ""
    return f"<table>\n<tr>{head}</tr>\n{body}\n</table>{more}"


def _img_tag(path: Path, title: str) -> str:
    mime = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}.get(
        path.suffix.lower(), "application/octet-stream")
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<figure><img src="data:{mime};base64,{data}" alt="{html.escape(title)}"><figcaption>' \
           f"{html.escape(title)}</figcaption></figure>"


_CSS = ("body{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem;color:#1d1d1f}"
        "table{border-collapse:collapse;font-size:.85rem}th,td{padding:.2rem .6rem;border-bottom:1px solid #eee;"
        "text-align:left}td{font-family:ui-monospace,monospace}img{max-width:100%}"
        "figcaption{color:#555}pre{background:#f6f8fa;padding:.5rem;overflow-x:auto}")


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
        page = _Page(study, db_path, counts, content, failed, df.drop(columns=list(fixed)),
                     ", ".join(f"{k} = {_fmt(v)}" for k, v in fixed.items()), df.empty)
        (stage / "report.md").write_text(page.markdown(figures, stage))
        (stage / "report.html").write_text(page.html(figures))
        # Where the figures will be once the staging folder is moved into place.
        moved = [(t, out_dir / p.resolve().relative_to(stage.resolve()) if p.resolve().is_relative_to(stage.resolve())
                  else p) for t, p in figures]
    return ReportFiles(out_dir / "report.md", out_dir / "report.html", moved)


@dataclass
class _Page:
    """The report's text, as Markdown and as HTML, from the same parts."""

    study: Study
    db: Path
    counts: Mapping[str, int]
    content: ReportContent
    failed: list[tuple[str, int, str]]
    table: pd.DataFrame
    fixed_text: str
    empty: bool
    generated: str = dataclasses.field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M:%S"))

    @property
    def count_text(self) -> str:
        return ", ".join(f"{n} {s}" for s, n in self.counts.items() if n) or "no runs"

    @property
    def sections(self) -> list[str]:
        return list(dict.fromkeys([*self.content.tables, *self.content.notes]))

    def markdown(self, figures: list[tuple[str, Path]], root: Path) -> str:
        def rel(p: Path) -> str:
            return p.resolve().relative_to(root.resolve()).as_posix() if p.resolve().is_relative_to(root.resolve()) \
                else str(p)

        content = self.content
        md = [f"# Study `{self.study.name}`", "", self.study.description.strip(), "",
              f"Runs: {self.count_text}. Database: `{self.db}`. Generated {self.generated}.", ""]
        for title in self.sections:
            md += [f"## {title}", ""]
            if title in content.tables:
                md += [_markdown_table(content.tables[title]), ""]
            if title in content.notes:
                md += [content.notes[title].strip(), ""]
        if figures:
            md += ["## Figures", ""] + [f"![{t}]({rel(p)})\n\n*{t}*\n" for t, p in figures]
        md += ["## Results", ""] + ([f"Same in every run: {self.fixed_text}.", ""] if self.fixed_text else [])
        md += [_markdown_table(self.table) if not self.empty else "No finished runs yet.", ""]
        if self.failed:
            md += ["## Failed runs", "", "| run | attempts | error |", "|---|---|---|"]
            md += [f"| {k} | {a} | {e.replace('|', '/')} |" for k, a, e in self.failed] + [""]
        return "\n".join(md)

    def html(self, figures: list[tuple[str, Path]]) -> str:
        name, description, content = self.study.name, self.study.description.strip(), self.content
        page = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Study {html.escape(name)}"
                f"</title><style>{_CSS}</style></head><body>",
                f"<h1>Study <code>{html.escape(name)}</code></h1>",
                f"<p>{html.escape(description)}</p>" if description else "",
                f"<p>Runs: {html.escape(self.count_text)}. Database: <code>{html.escape(str(self.db))}</code>. "
                f"Generated {self.generated}.</p>"]
        for title in self.sections:
            page.append(f"<h2>{html.escape(title)}</h2>")
            if title in content.tables:
                page.append(_html_table(content.tables[title]))
            if title in content.notes:
                page.append(f"<p>{html.escape(content.notes[title].strip())}</p>")
        if figures:
            page += ["<h2>Figures</h2>"] + [_img_tag(p, t) for t, p in figures]
        page += ["<h2>Results</h2>"] + ([f"<p>Same in every run: {html.escape(self.fixed_text)}.</p>"]
                                        if self.fixed_text else [])
        page += [_html_table(self.table) if not self.empty else "<p>No finished runs yet.</p>"]
        if self.failed:
            page += ["<h2>Failed runs</h2><table><tr><th>run</th><th>attempts</th><th>error</th></tr>"]
            page += [f"<tr><td>{html.escape(k)}</td><td>{a}</td><td>{html.escape(e)}</td></tr>"
                     for k, a, e in self.failed]
            page += ["</table>"]
        page.append("</body></html>")
        return "\n".join(page)
