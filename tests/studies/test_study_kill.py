"""A runner killed with SIGKILL mid-study loses no finished run, and the same command resumes it.

The runner is a real subprocess. We wait (on database state, not on time) until some runs are done
and one is running, SIGKILL it, then run the same grid again: the done runs must not execute again
(counted in the toy study's execution log), the interrupted one must, and every run must end done.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from hesslens.studies import run_study
from hesslens.studies.processes import identity

from _toy_study import STUDY, log_lines

HERE = Path(__file__).resolve().parent


def _statuses(db: Path) -> dict[str, str]:
    if not db.exists():
        return {}
    conn = sqlite3.connect(db, timeout=30)
    try:
        return dict(conn.execute("SELECT run_key, status FROM runs WHERE study = 'toy'").fetchall())
    except sqlite3.OperationalError:  # schema not created yet
        return {}
    finally:
        conn.close()


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
def test_sigkill_then_resume(tmp_path):
    out, log = tmp_path / "out", tmp_path / "log"
    grid = {"x": [float(i) for i in range(8)], "sleep": 0.3, "log": str(log)}
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(HERE)!r})
        from _toy_study import STUDY
        from hesslens.studies import run_study
        run_study(STUDY, {grid!r}, {str(out)!r}, progress=False)
        print("FINISHED")
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    db = out / "study.sqlite"
    deadline = time.monotonic() + 240  # only a guard against hanging forever; the test never waits on time
    try:
        while True:
            states = Counter(_statuses(db).values())
            if states["done"] >= 3 and states["running"] == 1:
                break
            assert proc.poll() is None, f"runner ended before it could be killed: {proc.communicate()}"
            assert time.monotonic() < deadline, f"runner made no progress: {states}"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        stdout, _ = proc.communicate()
    assert proc.returncode == -signal.SIGKILL and "FINISHED" not in stdout

    at_kill = _statuses(db)
    done_before = {k for k, s in at_kill.items() if s == "done"}
    interrupted = {k for k, s in at_kill.items() if s == "running"}
    assert len(done_before) >= 3 and len(interrupted) == 1 and len(at_kill) == 8
    # Every finished run is in results.csv as it stood when the runner died.
    assert set(pd.read_csv(out / "results.csv")["run_key"]) == done_before

    summary = run_study(STUDY, grid, out, progress=False)
    assert summary.skipped == len(done_before) and summary.executed == 8 - len(done_before)
    assert set(_statuses(db).values()) == {"done"}
    runs = Counter(k for k, _, _ in log_lines(log))
    assert all(runs[k] == 1 for k in done_before), runs
    (killed,) = interrupted
    assert runs[killed] == 2  # started before the kill, redone after it
    assert set(runs) == set(at_kill) and sum(runs.values()) == 8 + 1  # pending runs had not started
    df = pd.read_csv(out / "results.csv")
    assert len(df) == 8 and df.set_index("run_key").loc[killed, "attempts"] == 2


def _alive(pid: int) -> bool:
    return identity(pid) is not None  # a zombie (exited, not yet reaped by its new parent) counts as gone


def _wait_gone(pids: set[int], seconds: float) -> set[int]:
    deadline = time.monotonic() + seconds
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return {p for p in pids if _alive(p)}


def _kill_leftovers(pids: set[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
def test_pool_workers_die_with_a_runner_killed_by_sigkill(tmp_path):
    """Killed with SIGKILL, the runner cannot shut its pool down: the workers must go by themselves
    (each holds a model and its data), not compute on as orphans."""
    out, log = tmp_path / "out", tmp_path / "log"
    grid = {"x": [1.0, 2.0], "sleep": 300.0, "log": str(log)}
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(HERE)!r})
        from _toy_study import STUDY
        from hesslens.studies import run_study
        run_study(STUDY, {grid!r}, {str(out)!r}, executor="pool", workers=2, progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 240  # a guard only: we wait for both runs to have started
        while len(log_lines(log)) < 2:
            assert proc.poll() is None, f"runner ended before it could be killed: {proc.communicate()}"
            assert time.monotonic() < deadline, "the pool never started both runs"
            time.sleep(0.05)
        workers = {pid for _, _, pid in log_lines(log)}
        assert len(workers) == 2 and proc.pid not in workers and all(_alive(p) for p in workers)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        left = _wait_gone(workers, 5.0)
        assert not left, f"pool workers {sorted(left)} outlived the runner killed with SIGKILL"
    finally:
        _kill_leftovers(workers)  # first: orphans would hold the runner's pipes open
        proc.kill()
        proc.communicate()


WATCHED = """
import os, sys, time
from hesslens.studies.processes import die_with_parent
die_with_parent(os.getppid(), use_prctl=False, interval=0.1)
open(sys.argv[1], "w").write("ready")
time.sleep(300)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
def test_the_watchdog_alone_ends_a_worker_whose_parent_was_killed(tmp_path):
    """The fallback where the kernel cannot be asked (no prctl off Linux): the watchdog thread."""
    ready = tmp_path / "ready"
    parent = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time\n"
                               f"child = subprocess.Popen([sys.executable, '-c', {WATCHED!r}, {str(ready)!r}])\n"
                               "print(child.pid, flush=True)\ntime.sleep(300)"], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert time.monotonic() < deadline and _alive(child), "the watched child never got ready"
            time.sleep(0.05)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        assert not _wait_gone({child}, 5.0), "the watchdog did not end the orphaned child"
    finally:
        parent.kill()
        parent.wait()
        _kill_leftovers({child})
