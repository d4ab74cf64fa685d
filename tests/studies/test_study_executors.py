"""The process-pool and Ray executors: runs happen in other processes, the driver alone writes SQLite."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter

import pandas as pd
import pytest

from hesslens.errors import InvalidInputError
from hesslens.studies import Study, run_key, run_study, status

from _toy_study import STUDY, ToyConfig, log_lines

POOL_DIED = "a pool worker process died"


def test_pool_runs_in_spawned_single_threaded_workers_and_survives_a_dying_worker(tmp_path):
    log, out = tmp_path / "log", tmp_path / "out"
    cfg = lambda x, mode="ok": {"x": x, "mode": mode, "log": str(log)}  # noqa: E731
    # One worker: the run that kills its process is alone in flight, so exactly it fails; a fresh pool
    # runs the rest of the grid.
    first = run_study(STUDY, [cfg(6.0, "exit"), cfg(1.0), cfg(2.0), cfg(5.0, "fail")], out, executor="pool",
                      workers=1, progress=False)
    assert first.counts == {"pending": 0, "running": 0, "done": 2, "failed": 2, "diverged": 0}
    assert POOL_DIED in _error(out, run_key(ToyConfig(x=6.0, mode="exit", log=str(log))))
    assert dict(first.failures)[f"{run_key(ToyConfig(x=5.0, mode='fail', log=str(log)))} seed 0"] == \
        "RuntimeError: toy failure at x=5.0"
    # Two workers on a grid sharing two finished runs: only the new ones and the failed one run.
    second = run_study(STUDY, [cfg(1.0), cfg(2.0), cfg(3.0), cfg(4.0), cfg(5.0, "fail")], out, executor="pool",
                       workers=2, progress=False)
    assert second.executed == 3 and second.skipped == 2
    assert second.counts["done"] == 4 and second.counts["failed"] == 1
    df = pd.read_csv(out / "results.csv")
    assert sorted(df["x"]) == [1.0, 2.0, 3.0, 4.0]
    assert (df["pid"] != os.getpid()).all()  # ran in worker processes...
    assert (df["threads"] == 1).all()  # ...with one torch thread each
    assert (df["y"] == df["x"] ** 2).all()
    runs = log_lines(log)
    assert Counter(k for k, _, _ in runs) == Counter({k: 2 if x == 5.0 else 1 for k, x in
                                                     ((run_key(ToyConfig(**cfg(x, m))), x) for x, m in
                                                      ((1.0, "ok"), (2.0, "ok"), (3.0, "ok"), (4.0, "ok"),
                                                       (5.0, "fail"), (6.0, "exit")))})
    workers = {pid for _, _, pid in runs}
    assert os.getpid() not in workers and len(workers) >= 2


def _error(out, key):
    conn = sqlite3.connect(out / "study.sqlite")
    try:
        return conn.execute("SELECT error FROM runs WHERE run_key = ?", (key,)).fetchone()[0]
    finally:
        conn.close()


def test_unpicklable_run_function_is_refused_before_running(tmp_path):
    study = Study(name="local", config=ToyConfig, run=lambda c: {"y": 1.0}, presets={"smoke": {"x": 1.0}})
    with pytest.raises(InvalidInputError, match="cannot be pickled"):
        run_study(study, "smoke", tmp_path, executor="pool", progress=False)
    with pytest.raises(InvalidInputError, match="unknown executor 'gpu'"):
        run_study(study, "smoke", tmp_path, executor="gpu", progress=False)
    with pytest.raises(InvalidInputError, match="ray_address applies to the ray executor"):
        run_study(study, "smoke", tmp_path, ray_address="auto", progress=False)
    assert status(study, tmp_path).total == 0


def test_ray_executor_on_a_local_instance(tmp_path):
    pytest.importorskip("ray", reason="ray is an optional dependency (pip install 'ray>=2.9')")
    import ray

    log, out = tmp_path / "log", tmp_path / "out"
    spec = [{"x": [1.0, 2.0, 3.0], "log": str(log)}, {"x": 4.0, "mode": "fail", "log": str(log)},
            {"x": 5.0, "mode": "nan_loss", "log": str(log)}]
    summary = run_study(STUDY, spec, out, executor="ray", workers=2, progress=False)
    assert not ray.is_initialized()  # the instance it started is shut down again
    assert summary.counts == {"pending": 0, "running": 0, "done": 3, "failed": 1, "diverged": 1}
    assert summary.failures[0][1] == "RuntimeError: toy failure at x=4.0"
    df = pd.read_csv(out / "results.csv")
    assert sorted(df["x"]) == [1.0, 2.0, 3.0, 5.0]
    assert (df["pid"] != os.getpid()).all() and (df["threads"] == 1).all()
    assert set(Counter(k for k, _, _ in log_lines(log)).values()) == {1}
    # The series came back through Ray and were written by the driver.
    conn = sqlite3.connect(out / "study.sqlite")
    try:
        assert conn.execute("SELECT COUNT(*) FROM series").fetchone()[0] == 4 * 3
    finally:
        conn.close()


@pytest.fixture
def ray_head(monkeypatch):
    """A real Ray head (``ray start --head --block``) on loopback, in its own session so that stopping it
    stops its processes and nobody else's; yields its address. Its workers import the toy study.

    Token authentication is off for it and for this driver (``RAY_AUTH_MODE=disabled``, ignored before
    Ray 2.52): since Ray 2.59 ``ray start --head`` turns it on whenever a token file exists, which an
    earlier local instance may have written, while a driver joining by address does not send it."""
    pytest.importorskip("ray", reason="ray is an optional dependency (pip install 'ray>=2.9')")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    temp = tempfile.mkdtemp(prefix="rayh", dir="/tmp")  # Ray's socket paths must stay short
    port = _free_port()
    here = os.path.dirname(os.path.abspath(__file__))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([here, os.environ.get("PYTHONPATH", "")]),
           "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    ray_cli = os.path.join(os.path.dirname(sys.executable), "ray")
    log = open(os.path.join(temp, "head.log"), "w")
    head = subprocess.Popen([ray_cli, "start", "--head", "--block", "--port", str(port), "--num-cpus", "2",
                             "--include-dashboard", "false", "--node-ip-address", "127.0.0.1", "--temp-dir", temp],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in open(log.name).read():
            assert head.poll() is None and time.monotonic() < deadline, open(log.name).read()[-3000:]
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(head.pid, signal.SIGKILL)  # the head and every process it started (its session)
        head.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until the last of them has exited
            try:
                os.killpg(head.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_executor_joins_a_running_cluster(tmp_path, ray_head):
    import ray

    log, out = tmp_path / "log", tmp_path / "out"
    spec = [{"x": [1.0, 2.0, 3.0], "log": str(log)}, {"x": 4.0, "mode": "fail", "log": str(log)}]
    summary = run_study(STUDY, spec, out, executor="ray", ray_address=ray_head, progress=False)
    assert not ray.is_initialized()  # the driver disconnects; the cluster is not its to stop
    assert summary.counts["done"] == 3 and summary.counts["failed"] == 1
    df = pd.read_csv(out / "results.csv")
    assert sorted(df["x"]) == [1.0, 2.0, 3.0] and (df["pid"] != os.getpid()).all()
    # run again against the same cluster: everything finished is skipped, the failed run is retried
    again = run_study(STUDY, spec, out, executor="ray", ray_address=ray_head, progress=False)
    assert again.skipped == 3 and again.executed == 1


def test_a_cluster_that_cannot_be_joined_is_named_with_the_likely_cause(monkeypatch):
    ray = pytest.importorskip("ray", reason="ray is an optional dependency (pip install 'ray>=2.9')")
    from hesslens.errors import HesslensError
    from hesslens.studies.executors import RayExecutor

    def refuse(**kwargs):
        raise ConnectionError(f"Failed to connect to Ray cluster at {kwargs['address']}")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    with pytest.raises(HesslensError, match=r"10\.0\.0\.9:6379.*RAY_AUTH_MODE=token"):
        RayExecutor(address="10.0.0.9:6379")._init(ray)
    with pytest.raises(ConnectionError):  # a private instance's failure is Ray's own
        RayExecutor()._init(ray)
