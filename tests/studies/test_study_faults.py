"""Faults around a study's files: each bad input gets an error naming it, and no fault loses anything.

Symbolic links where the report or results.csv go, a report hook failing (or Ctrl-C) half-way, an
empty or garbage database, a run held by another live process, a PID recycled since its claimer died.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from hesslens.studies import Store, render_report, run_study
from hesslens.studies.cli import study
from hesslens.studies.processes import identity

from _toy_study import REPORTED, STUDY, log_lines

TOY_SPEC = "_toy_study:STUDY"


def invoke(*args):
    return CliRunner().invoke(study, [str(a) for a in args], catch_exceptions=False)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _no_staging(folder: Path) -> None:
    assert not [p.name for p in folder.iterdir() if "hesslens-" in p.name]


@pytest.fixture
def victim(tmp_path):
    path = tmp_path / "outside" / "victim.txt"
    path.parent.mkdir()
    path.write_text("precious")
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A study folder with three finished runs and a rendered report."""
    out = tmp_path_factory.mktemp("finished") / "out"
    assert invoke(TOY_SPEC, "--out", out).exit_code == 0
    assert invoke(TOY_SPEC, "--report", "--out", out).exit_code == 0
    return out


@pytest.fixture
def copy_of(finished, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(finished, out)
    return out


# -- outputs ---------------------------------------------------------------------------------------
def test_a_symlinked_report_md_is_refused_and_its_target_untouched(copy_of, victim):
    (copy_of / "report.md").unlink()
    (copy_of / "report.md").symlink_to(victim)
    before = _files(copy_of)
    result = invoke(TOY_SPEC, "--report", "--out", copy_of)
    assert result.exit_code == 2 and "report.md' is a symbolic link" in result.output
    assert "remove the link or choose another folder" in result.output
    assert victim.read_text() == "precious" and _files(copy_of) == before
    _no_staging(copy_of)


def test_a_symlinked_results_csv_is_refused_before_any_run(tmp_path, victim):
    out, log = tmp_path / "out", tmp_path / "log"
    out.mkdir()
    (out / "results.csv").symlink_to(victim)
    with pytest.raises(Exception, match="results.csv' is a symbolic link"):
        run_study(STUDY, {"x": [1.0, 2.0], "log": str(log)}, out, progress=False)
    assert victim.read_text() == "precious" and log_lines(log) == []
    assert not (out / "study.sqlite").exists()


@pytest.mark.parametrize("entry", ["study.sqlite", "runs"])
def test_a_symlinked_database_or_runs_folder_is_refused_before_any_run(tmp_path, victim, entry):
    """Both are written during the study: a link would carry those writes outside the study folder."""
    out, log = tmp_path / "out", tmp_path / "log"
    out.mkdir()
    target = victim if entry == "study.sqlite" else victim.parent
    (out / entry).symlink_to(target)
    with pytest.raises(Exception, match=f"{entry}' is a symbolic link"):
        run_study(STUDY, {"x": [1.0, 2.0], "log": str(log)}, out, progress=False)
    assert victim.read_text() == "precious" and log_lines(log) == [] and sorted(p.name for p in victim.parent.iterdir()) == ["victim.txt"]


@pytest.mark.parametrize("fault", [RuntimeError("the hook failed"), KeyboardInterrupt()])
def test_a_report_failing_half_way_leaves_the_previous_report_whole(copy_of, fault):
    before = _files(copy_of)
    assert {"report.md", "report.html", "figures/metrics.png"} <= set(before)

    def failing_hook(df, out):
        from matplotlib.figure import Figure

        (out / "figures").mkdir(exist_ok=True)
        Figure().savefig(out / "figures" / "metrics.png")  # a new figure over the old one, then the fault
        (out / "report.md").write_text("half")
        raise fault

    from dataclasses import replace

    with pytest.raises(type(fault)):
        render_report(replace(STUDY, report=failing_hook), copy_of)
    assert _files(copy_of) == before
    _no_staging(copy_of)


def test_the_report_hook_writes_into_the_folder_that_is_moved_into_place(tmp_path):
    out = tmp_path / "out"
    run_study(REPORTED, "smoke", out, progress=False)
    files = render_report(REPORTED, out)
    assert files.figures == [("y against x", out / "figures" / "figure_01.png")]
    assert files.figures[0][1].read_bytes().startswith(b"\x89PNG")
    _no_staging(out)


# -- the database ----------------------------------------------------------------------------------
@pytest.mark.parametrize("content, needle", [(b"", "is empty (0 bytes)"),
                                             (b"garbage " * 100, "is not a SQLite database")])
@pytest.mark.parametrize("action", [(), ("--status",), ("--report",)])
def test_an_empty_or_garbage_database_is_a_clear_error_and_changes_nothing(copy_of, content, needle, action):
    db = copy_of / "study.sqlite"
    for extra in ("study.sqlite-wal", "study.sqlite-shm"):
        (copy_of / extra).unlink(missing_ok=True)
    db.write_bytes(content)
    before = _files(copy_of)
    result = invoke(TOY_SPEC, "--out", copy_of, *action)
    assert result.exit_code == 2, result.output
    assert f"Error: study database '{db}' {needle}" in result.output
    assert "Nothing was run and no file was changed (results.csv included)" in result.output
    assert _files(copy_of) == before  # results.csv not rewritten, the database not "repaired"
    assert len(pd.read_csv(copy_of / "results.csv")) == 3


def _hand_to(out: Path, pid: int, pid_start: str | None) -> str:
    """Mark the first run of the folder's database as being run by ``pid`` on this host."""
    conn = sqlite3.connect(out / "study.sqlite")
    try:
        key = conn.execute("SELECT run_key FROM runs ORDER BY rowid LIMIT 1").fetchone()[0]
        conn.execute("UPDATE runs SET status = 'running', host = ?, pid = ?, pid_start = ? WHERE run_key = ?",
                     (socket.gethostname(), pid, pid_start, key))
        conn.commit()
    finally:
        conn.close()
    return key


@pytest.fixture
def stranger():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_run_held_by_another_live_runner_makes_the_exit_status_non_zero(copy_of, stranger):
    key = _hand_to(copy_of, stranger.pid, identity(stranger.pid))
    result = invoke(TOY_SPEC, "--out", copy_of)
    assert result.exit_code == 1, result.output
    assert "3 runs (1 running, 2 done)" in result.output and "1 being run by another process" in result.output
    assert "1 run not finished (1 being run by another live process on this host; see --status): rerun the " \
           "same command when it has finished" in result.output
    with Store(copy_of / "study.sqlite") as store:
        assert store.status_of("toy", key) == "running"


@pytest.mark.skipif(identity(os.getpid()) == "", reason="process start times are not readable here")
def test_a_recycled_pid_does_not_hold_a_run_forever(copy_of, stranger):
    # The claimer died; its PID now belongs to an unrelated live process (started at another time).
    key = _hand_to(copy_of, stranger.pid, identity(os.getpid()))
    result = invoke(TOY_SPEC, "--out", copy_of)
    assert result.exit_code == 0, result.output
    assert "3 runs (3 done); ran 1, skipped 2" in result.output
    with Store(copy_of / "study.sqlite") as store:
        row = store.runs("toy", [key])[0]
    assert row["status"] == "done" and row["attempts"] == 2 and row["pid"] != stranger.pid
