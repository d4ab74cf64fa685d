"""``hesslens study``: run, resume, inspect and report a declared study.

    hesslens study                                   # list the built-in studies
    hesslens study NAME --preset smoke|full [--seeds N|S1,S2,...] [--out DIR] [--executor inline|pool|ray]
                        [--workers N] [--ray-address ADDR] [--parquet] [--grid FILE.toml] [--db FILE]
    hesslens study NAME --status [--out DIR]
    hesslens study NAME --report [--out DIR]

NAME is a built-in study (``hesslens study`` lists them) or ``path/to/file.py:attribute`` or
``module:attribute`` of a Study declared in your own code (e.g. ``examples/demo_study.py:STUDY``).
Running the same command again resumes: finished runs are skipped, interrupted and failed ones run again. Every
configuration runs once per seed: the preset's declared number, or ``--seeds 5`` (seeds 0-4) or
``--seeds 3,4,5`` (exactly those); adding seeds later runs only the new ones.
Exit status: 0 only when every run of the preset has finished (done or diverged); 1 when some failed
or are still unfinished (being run by another live process), with a summary saying which; 2 for a usage
or validation error, an unusable output folder or a damaged database (nothing was run).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import click

from ..errors import HesslensError
from .executors import EXECUTORS


class StudyFailure(click.ClickException):
    """A hesslens error shown as ``Error: <message>`` with exit status 2 (no traceback)."""

    exit_code = 2

    def __init__(self, error: BaseException):
        super().__init__(str(error).strip() or type(error).__name__)


@click.command("study", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("name", required=False)
@click.option("--preset", default="smoke", show_default=True, help="Preset (grid) to run: smoke, full, or one of --grid.")
@click.option("--seeds", "seeds", metavar="N|S1,S2,...",
              help="Seeds to run each configuration with: N means 0..N-1, a comma-separated list means those.  "
                   "[default: the number the study declares for the preset]")
@click.option("--grid", "grid_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="TOML (or YAML) file of presets: one table per preset, axes as lists.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder: database, results.csv, report.  [default: ./studies/NAME]")
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), help="Database file.  [default: OUT/study.sqlite]")
@click.option("--executor", type=click.Choice(EXECUTORS), default="inline", show_default=True,
              help="inline: this process; pool: local processes; ray: a local Ray instance or --ray-address.")
@click.option("--workers", type=click.IntRange(min=1), help="Runs in flight (pool default: CPU count; ray: 2 locally).")
@click.option("--ray-address", help="Join this Ray cluster (e.g. auto, ray://head:10001) instead of starting one.")
@click.option("--parquet", is_flag=True, help="Also write results.parquet and series.parquet (needs pyarrow).")
@click.option("--status", "show_status", is_flag=True, help="Show what the database holds; run nothing.")
@click.option("--report", "make_report", is_flag=True, help="Render report.md/report.html from the database; run nothing.")
@click.option("--progress/--no-progress", default=None, help="Progress bar over runs  [default: on a terminal]")
def study(name: str | None, preset: str, seeds: str | None, grid_file: Path | None, out: Path | None, db: Path | None, executor: str,
          workers: int | None, ray_address: str | None, parquet: bool, show_status: bool, make_report: bool,
          progress: bool | None) -> None:
    """Run a study's grid of configurations into a resumable SQLite database (or show its status/report).

    \b
    hesslens study                            list the built-in studies
    hesslens study sharpness --preset smoke   run (or resume) a built-in study's smoke grid
    hesslens study sharpness --seeds 3,4      the same configurations with seeds 3 and 4
    hesslens study sharpness --status         counts by status, failed runs and their errors
    hesslens study sharpness --report         studies/sharpness/report.md and report.html
    hesslens study examples/demo_study.py:STUDY --preset smoke
                                              a study declared in a file (or MODULE:ATTRIBUTE)
    """
    from . import registry
    from .runner import _paths, run_study, status

    if name is None:
        if show_status or make_report:
            raise click.UsageError("--status and --report need a study NAME")
        for n in registry.names():
            s = registry.get(n)
            first = s.description.strip().split(". ")[0]
            click.echo(f"{n:<16} {first}")
        click.echo("(or a Study of your own: hesslens study path/to/file.py:ATTRIBUTE or MODULE:ATTRIBUTE, "
                   "e.g. examples/demo_study.py:STUDY in the repository)")
        return
    try:
        the_study = registry.get(name)
        if show_status or make_report:
            ignored = [opt for opt, given in (("--executor", executor != "inline"), ("--workers", workers),
                                              ("--ray-address", ray_address), ("--parquet", parquet),
                                              ("--grid", grid_file), ("--seeds", seeds)) if given]
            if ignored:
                raise click.UsageError(f"{', '.join(ignored)} apply to running a study, not to --status/--report")
            if show_status:
                click.echo(str(status(the_study, out, db=db)))
            if make_report:
                from .reporting import render_report  # only here: it imports SciPy's statistics

                files = render_report(the_study, out, db=db)
                click.echo(f"report: {files.html}\n        {files.markdown}")
            return
        summary = run_study(the_study, preset, out, executor=executor, workers=workers, ray_address=ray_address,
                            progress=progress, parquet=parquet, db=db, grid_file=grid_file, seeds=seeds)
    except HesslensError as exc:
        raise StudyFailure(exc) from exc
    except sqlite3.Error as exc:  # the database went bad mid-run (disk full, damaged by another program)
        db_path = _paths(the_study, out, db)[1]
        raise StudyFailure(RuntimeError(f"study database {str(db_path)!r}: {exc}; finished runs are kept, "
                                        "rerun the same command to resume")) from exc
    click.echo(str(summary))
    if not summary.ok:
        raise click.exceptions.Exit(1)
