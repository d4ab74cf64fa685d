"""The SQLite store: WAL, claims, one-transaction finishes, rollback, release, and reads."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import subprocess
import sys

import pytest

from hesslens.errors import InvalidInputError
from hesslens.studies import Store


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "db" / "study.sqlite") as s:
        s.add_runs("s", "smoke", [("k1", '{"x": 1}'), ("k2", '{"x": 2}')])
        yield s


def _raw(store, sql, *args):
    conn = sqlite3.connect(store.path)  # an independent reader, as another process would be
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def test_schema_wal_and_pending_rows(store):
    assert store.journal_mode == "wal"
    assert store.counts("s") == {"pending": 2, "running": 0, "done": 0, "failed": 0, "diverged": 0}
    assert store.counts("s", "smoke")["pending"] == 2
    # Adding the same runs again (a resumed invocation) changes nothing; another preset shares them.
    assert store.add_runs("s", "full", [("k1", '{"x": 1}'), ("k3", '{"x": 3}')]) == 1
    assert store.counts("s", "full")["pending"] == 2 and store.presets("s") == ["smoke", "full"]


def test_claim_and_finish_write_record_and_series_together(store):
    assert store.claim("s", "k1") == 1
    row = store.runs("s", ["k1"])[0]
    assert (row["status"], row["attempts"], row["pid"]) == ("running", 1, os.getpid())
    store.finish("s", "k1", "done", record={"loss": 0.5, "acc": 1.0}, series=[(0, "loss", 1.0), (1, "loss", 0.5)],
                 seconds=0.1, worker="w:1")
    assert _raw(store, "SELECT status, record FROM runs WHERE run_key='k1'") == \
        [("done", json.dumps({"loss": 0.5, "acc": 1.0}))]
    assert _raw(store, "SELECT step, key, value FROM series WHERE run_key='k1' ORDER BY step") == \
        [(0.0, "loss", 1.0), (1.0, "loss", 0.5)]
    assert store.claim("s", "k1") is None  # finished runs are never claimed again


def test_a_failing_finish_rolls_back_everything(store):
    store.claim("s", "k1")
    with store.transaction() as c:  # points left by an earlier attempt, which finish() first deletes
        c.execute("INSERT INTO series VALUES ('s', 'k1', 0, 'old', 9.0)")
    with pytest.raises(ValueError):
        # The last point cannot be converted after the old points were deleted: the whole transaction is undone.
        store.finish("s", "k1", "done", record={"loss": 0.5}, series=[(0, "loss", 1.0), (1, "loss", 2.0),
                                                                       (2, "loss", "not a number")])
    assert _raw(store, "SELECT status, record FROM runs WHERE run_key='k1'") == [("running", None)]
    assert _raw(store, "SELECT run_key, step, key, value FROM series") == [("k1", 0.0, "old", 9.0)]


def test_failed_and_diverged_rows(store):
    store.claim("s", "k1")
    store.finish("s", "k1", "failed", error="Traceback ...\nRuntimeError: boom")
    store.claim("s", "k2")
    store.finish("s", "k2", "diverged", record={"loss": math.nan}, series=[(0, "loss", math.nan)])
    rows = {r["run_key"]: r for r in store.runs("s")}
    assert rows["k1"]["status"] == "failed" and rows["k1"]["error"].endswith("boom")
    assert rows["k2"]["status"] == "diverged" and math.isnan(rows["k2"]["record"]["loss"])
    assert store.series("s", ["k2"]) == [("k2", 0.0, "loss", None)]  # SQLite stores NaN as NULL
    assert store.claim("s", "k1") == 2  # failed runs are retried, attempt counted
    with pytest.raises(InvalidInputError, match="no run"):
        store.finish("s", "nope", "done", record={})
    with pytest.raises(InvalidInputError, match="status"):
        store.finish("s", "k1", "running")


def test_stale_running_rows_are_reclaimed_live_ones_are_not(store):
    store.claim("s", "k1")
    store.claim("s", "k2")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # reaped: its pid no longer exists
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with store.transaction() as c:
            c.execute("UPDATE runs SET pid = ? WHERE run_key = 'k1'", (dead.pid,))
            c.execute("UPDATE runs SET pid = ? WHERE run_key = 'k2'", (live.pid,))
        assert store.claim("s", "k1") == 2  # its runner was killed: redo
        assert store.claim("s", "k2") is None  # another live runner on this host has it
    finally:
        live.kill()
        live.wait()
    assert store.claim("s", "k2") == 2


def test_release_returns_own_claims_to_pending(store):
    store.claim("s", "k1")
    store.release("s", ["k1", "k2"])
    assert [r["status"] for r in store.runs("s")] == ["pending", "pending"]


def test_concurrent_reader_sees_only_committed_state(store):
    store.claim("s", "k1")
    with store.transaction() as c:
        c.execute("UPDATE runs SET status = 'done', record = '{}' WHERE run_key = 'k1'")
        # Not yet committed: another connection still reads 'running'.
        assert _raw(store, "SELECT status FROM runs WHERE run_key='k1'") == [("running",)]
    assert _raw(store, "SELECT status FROM runs WHERE run_key='k1'") == [("done",)]
