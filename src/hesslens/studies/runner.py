"""Running a study with resume, showing its status, and rendering its report — all from the database.

:func:`run_study` validates every configuration of the preset (nothing runs if one is bad), records
them as ``pending`` in ``OUT/study.sqlite``, skips those already ``done`` or ``diverged``, and hands
the rest to an executor. Each run is marked ``running`` just before it is submitted and its outcome
is written, with its record and series, in one transaction as it completes; ``OUT/results.csv`` is
rewritten after every one. Re-running the same command therefore resumes: finished runs are skipped,
runs interrupted by a kill (``running`` in the database, their process gone) and ``failed`` ones are
run again. An exception inside a run is stored as ``failed`` with its traceback and does not stop the
others; a run reporting divergence (``diverged`` in its record, a NaN/inf loss, or
:class:`~hesslens.studies.Diverged` raised) is stored as ``diverged``.

:func:`status` summarises the database; :func:`render_report` writes ``OUT/report.md`` and
``OUT/report.html`` with the results table and the figures drawn by the study's ``report`` hook (or
a default figure of each recorded metric against the first varying numeric configuration field).
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import math
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from ..errors import HesslensError, InvalidInputError
from ..progress import progress_bar
from .declaration import FINISHED, STATUSES, ReportContent, Study, _positional_arity, config_dict, run_key
from .executors import Job, Pending, Task, make_executor
from .export import export, require_parquet, results_frame, series_frame
from .registry import get
from .store import Store

DB_NAME = "study.sqlite"


def default_out(name: str) -> Path:
    """``./studies/NAME`` (relative to the working directory)."""
    return Path("studies") / name.replace(":", "_").replace("/", "_")


def _paths(study: Study, out: str | Path | None, db: str | Path | None) -> tuple[Path, Path]:
    out_dir = Path(out) if out is not None else default_out(study.name)
    return out_dir, Path(db) if db is not None else out_dir / DB_NAME


@dataclass
class StudySummary:
    """What :func:`run_study` did. ``counts`` covers every run of the preset, by status."""

    study: str
    preset: str
    out: Path
    db: Path
    total: int
    counts: dict[str, int]
    executed: int
    skipped: int
    busy: int
    seconds: float
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every run of the preset finished (done or diverged)."""
        return sum(self.counts[s] for s in FINISHED) == self.total

    def __str__(self) -> str:
        counts = ", ".join(f"{n} {s}" for s, n in self.counts.items() if n)
        lines = [f"study {self.study!r}, preset {self.preset!r}: {self.total} runs ({counts}); "
                 f"ran {self.executed}, skipped {self.skipped} already finished"
                 + (f", {self.busy} being run by another process" if self.busy else "")
                 + f", {self.seconds:.1f} s",
                 f"results: {self.out / 'results.csv'}  (database {self.db})"]
        for key, err in self.failures[:10]:
            lines.append(f"  failed {key}: {err}")
        if self.failures:
            lines.append("  rerun the same command to retry the failed runs")
        return "\n".join(lines)


def _last_line(text: str | None) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


def _check_picklable(study: Study, configs: Sequence[Any], executor: str) -> None:
    for what, obj in (("run function", study.run), ("configuration", configs[0])):
        try:
            pickle.dumps(obj)
        except Exception as exc:
            raise InvalidInputError(f"study {study.name!r}: the {executor} executor sends the {what} to other "
                                    f"processes, but it cannot be pickled ({type(exc).__name__}: {exc}); "
                                    "declare it at module level (no lambdas or nested functions)") from exc


def run_study(study: str | Study, preset: str | Mapping[str, Any] | Sequence[Mapping[str, Any]] = "smoke",
              out: str | Path | None = None, *, executor: str = "inline", workers: int | None = None,
              ray_address: str | None = None, progress: bool | None = None, parquet: bool = False,
              db: str | Path | None = None, grid_file: str | Path | None = None) -> StudySummary:
    """Run (or resume) every configuration of ``preset``; see the module docstring.

    Args:
        study: a :class:`Study` or a registered name (or ``module:attribute``).
        preset: a preset name of the study (or of ``grid_file``), or a grid spec given directly.
        out: output folder (default ``./studies/NAME``): database, ``results.csv``, artifacts.
        executor: ``"inline"``, ``"pool"`` or ``"ray"``; ``workers`` bounds the runs in flight.
        ray_address: join this Ray cluster instead of starting a local instance.
        progress: progress bar over runs; ``None`` shows it only on a terminal.
        parquet: also write ``results.parquet`` and ``series.parquet`` (needs pyarrow).
        db: database path (default ``OUT/study.sqlite``); several studies may share one.
    """
    t0 = time.perf_counter()
    study = get(study)
    preset_name = preset if isinstance(preset, str) else "custom"
    # Everything that can be wrong with the request is checked before the database is touched.
    configs = study.configs(preset, grid_file=grid_file)
    arity = study.run_arity()
    runner = make_executor(executor, workers, ray_address)
    if executor != "inline":
        _check_picklable(study, configs, executor)
    if parquet:
        require_parquet()
    out_dir, db_path = _paths(study, out, db)
    out_dir.mkdir(parents=True, exist_ok=True)
    keyed = [(run_key(c), c) for c in configs]
    job = Job(study=study.name, run=study.run, arity=arity, loss_keys=study.loss_keys, out=str(out_dir.resolve()))

    with Store(db_path) as store:
        # Stored in declared field order (the key hashes the sorted form), so tables list fields as declared.
        store.add_runs(study.name, preset_name, [(k, json.dumps(config_dict(c), allow_nan=True)) for k, c in keyed])
        before = {r["run_key"]: r["status"] for r in store.runs(study.name, [k for k, _ in keyed])}
        todo = [Pending(k, c) for k, c in keyed if before[k] not in FINISHED]
        skipped = len(keyed) - len(todo)
        executed = busy = 0
        claimed: set[str] = set()

        with progress_bar(total=len(todo), desc=f"study {study.name}", enabled=progress, unit="run") as bar:
            def claim(p: Pending) -> Task | None:
                nonlocal busy, skipped
                attempt = store.claim(study.name, p.run_key)
                if attempt is None:
                    if store.status_of(study.name, p.run_key) in FINISHED:  # finished meanwhile by another runner
                        skipped += 1
                    else:
                        busy += 1
                    bar.update(1)
                    return None
                claimed.add(p.run_key)
                return Task(p.run_key, p.config, attempt)

            try:
                for outcome in runner.execute(job, todo, claim):
                    store.finish(study.name, outcome.run_key, outcome.status, record=outcome.record,
                                 series=outcome.series, error=outcome.error, seconds=outcome.seconds,
                                 worker=outcome.worker)
                    claimed.discard(outcome.run_key)
                    executed += 1
                    export(store, study.name, out_dir)
                    bar.update(1)
                    bar.set_postfix_str(outcome.status)
            finally:
                if claimed:  # interrupted (Ctrl-C, an error in the driver): hand the runs back as pending
                    try:
                        store.release(study.name, claimed)
                    except Exception:
                        pass  # they stay 'running' with this pid, which the next invocation reclaims
        export(store, study.name, out_dir, parquet=parquet)
        final = store.runs(study.name, [k for k, _ in keyed])  # exactly this grid's runs
        counts = {s: sum(r["status"] == s for r in final) for s in STATUSES}
        failures = [(r["run_key"], _last_line(r["error"])) for r in final if r["status"] == "failed"]
    return StudySummary(study=study.name, preset=preset_name, out=out_dir, db=db_path, total=len(keyed),
                        counts=counts, executed=executed, skipped=skipped, busy=busy,
                        seconds=time.perf_counter() - t0, failures=failures)


# -- status --------------------------------------------------------------------------------------
@dataclass
class StudyStatus:
    """Counts by status (all runs of the study in the database, and per preset) and one row per run."""

    study: str
    db: Path
    counts: dict[str, int]
    presets: dict[str, dict[str, int]]
    runs: pd.DataFrame

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __str__(self) -> str:
        if not self.total:
            return f"study {self.study!r}: no runs recorded in {self.db}"

        def fmt(c: Mapping[str, int]) -> str:
            n = sum(c.values())
            fin = sum(c[s] for s in FINISHED)
            rest = ", ".join(f"{c[s]} {s}" for s in STATUSES if c[s])
            return f"{fin}/{n} finished ({rest})"

        lines = [f"study {self.study!r} in {self.db}: {fmt(self.counts)}"]
        lines += [f"  preset {name}: {fmt(c)}" for name, c in self.presets.items()]
        bad = self.runs[self.runs["status"].isin(["failed", "running"])]
        for _, r in bad.head(20).iterrows():
            what = r["error"] if r["status"] == "failed" else f"running on {r['host']} pid {r['pid']}"
            lines.append(f"  {r['status']:<8} {r['run_key']}  attempts {r['attempts']}  {what}")
        return "\n".join(lines)


def status(study: str | Study, out: str | Path | None = None, *, db: str | Path | None = None) -> StudyStatus:
    """What the database says about ``study`` (nothing is created if there is no database yet)."""
    study = get(study)
    _, db_path = _paths(study, out, db)
    columns = ["run_key", "status", "attempts", "seconds", "host", "pid", "worker", "error"]
    if not db_path.exists():
        return StudyStatus(study.name, db_path, {s: 0 for s in STATUSES}, {}, pd.DataFrame(columns=columns))
    with Store(db_path) as store:
        rows = store.runs(study.name)
        counts = store.counts(study.name)
        presets = {p: store.counts(study.name, p) for p in store.presets(study.name)}
    table = pd.DataFrame([{**{c: r.get(c) for c in columns}, "error": _last_line(r["error"]), **r["config"]}
                          for r in rows], columns=None if rows else columns)
    return StudyStatus(study.name, db_path, counts, presets, table)


# -- report --------------------------------------------------------------------------------------
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
    xs = [c for c in config_cols if numeric(c) and df[c].nunique() > 1]
    metrics = [c for c in df.columns if c not in config_cols and c not in ("run_key", "status", "attempts", "seconds",
                                                                           "finished", "diverged") and numeric(c)]
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
    with Store(db_path) as store:
        rows = store.runs(study.name)
        df = results_frame(rows)
        counts = store.counts(study.name)
        series = series_frame(store, study.name) if study.report is not None else None
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    figures: list[tuple[str, Path]] = []
    content = ReportContent()
    if not df.empty:
        if study.report is not None:
            arity = _positional_arity(study.report, study.name, "report", allowed=(2, 3))
            result = study.report(df, out_dir) if arity == 2 else study.report(df, out_dir, series)
            if isinstance(result, ReportContent):
                content, result = result, result.figures
            figures = _collect_figures(result, out_dir, fig_dir)
        else:
            figures = default_figures(df, study, fig_dir)
    failed = [(r["run_key"], r["attempts"], _last_line(r["error"])) for r in rows if r["status"] == "failed"]
    # Configuration fields equal in every run are stated once instead of filling a column each.
    fixed = {c: df[c].iloc[0] for c in (f.name for f in dataclasses.fields(study.config))
             if len(df) > 1 and c in df.columns and df[c].astype(str).nunique() == 1}
    table = df.drop(columns=list(fixed))
    fixed_text = ", ".join(f"{k} = {_fmt(v)}" for k, v in fixed.items())
    count_text = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no runs"
    rel = lambda p: p.resolve().relative_to(out_dir.resolve()).as_posix() if p.resolve().is_relative_to(  # noqa: E731
        out_dir.resolve()) else str(p)
    generated = time.strftime("%Y-%m-%d %H:%M:%S")

    md = [f"# Study `{study.name}`", "", study.description.strip(), "",
          f"Runs: {count_text}. Database: `{db_path}`. Generated {generated}.", ""]
    sections = list(dict.fromkeys([*content.tables, *content.notes]))
    for title in sections:
        md += [f"## {title}", ""]
        if title in content.tables:
            md += [_markdown_table(content.tables[title]), ""]
        if title in content.notes:
            md += [content.notes[title].strip(), ""]
    if figures:
        md += ["## Figures", ""] + [f"![{t}]({rel(p)})\n\n*{t}*\n" for t, p in figures]
    md += ["## Results", ""] + ([f"Same in every run: {fixed_text}.", ""] if fixed else [])
    md += [_markdown_table(table) if not df.empty else "No finished runs yet.", ""]
    if failed:
        md += ["## Failed runs", "", "| run | attempts | error |", "|---|---|---|"]
        md += [f"| {k} | {a} | {e.replace('|', '/')} |" for k, a, e in failed] + [""]
    md_path = out_dir / "report.md"
    md_path.write_text("\n".join(md))

    page = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Study {html.escape(study.name)}"
            f"</title><style>{_CSS}</style></head><body>",
            f"<h1>Study <code>{html.escape(study.name)}</code></h1>",
            f"<p>{html.escape(study.description.strip())}</p>" if study.description.strip() else "",
            f"<p>Runs: {html.escape(count_text)}. Database: <code>{html.escape(str(db_path))}</code>. "
            f"Generated {generated}.</p>"]
    for title in sections:
        page.append(f"<h2>{html.escape(title)}</h2>")
        if title in content.tables:
            page.append(_html_table(content.tables[title]))
        if title in content.notes:
            page.append(f"<p>{html.escape(content.notes[title].strip())}</p>")
    if figures:
        page += ["<h2>Figures</h2>"] + [_img_tag(p, t) for t, p in figures]
    page += ["<h2>Results</h2>"] + ([f"<p>Same in every run: {html.escape(fixed_text)}.</p>"] if fixed else [])
    page += [_html_table(table) if not df.empty else "<p>No finished runs yet.</p>"]
    if failed:
        page += ["<h2>Failed runs</h2><table><tr><th>run</th><th>attempts</th><th>error</th></tr>"]
        page += [f"<tr><td>{html.escape(k)}</td><td>{a}</td><td>{html.escape(e)}</td></tr>" for k, a, e in failed]
        page += ["</table>"]
    page.append("</body></html>")
    html_path = out_dir / "report.html"
    html_path.write_text("\n".join(page))
    return ReportFiles(md_path, html_path, figures)
