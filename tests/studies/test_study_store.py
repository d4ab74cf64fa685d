"""The SQLite store: WAL, claims (recycled PIDs included), one-transaction finishes, rollback, release,
reads, and the files it refuses to open (empty, not SQLite, damaged, another program's database)."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import subprocess
import sys

import pytest

from hesslens.errors import InvalidInputError
from hesslens.studies import Store, StoreError
from hesslens.studies.processes import identity


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
        c.execute("INSERT INTO series VALUES ('s', 'k1', 0, 0, 'old', 9.0)")
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
    assert store.series("s", ["k2"]) == [("k2", 0, 0.0, "loss", None)]  # SQLite stores NaN as NULL
    assert store.claim("s", "k1") == 2  # failed runs are retried, attempt counted
    with pytest.raises(InvalidInputError, match="no run"):
        store.finish("s", "nope", "done", record={})
    with pytest.raises(InvalidInputError, match="status"):
        store.finish("s", "k1", "running")


def test_diverged_and_done_rows_are_never_handed_out_again(store):
    # Straight from the store, not through the runner (which also skips finished runs and would hide
    # a store that hands a finished row out again).
    store.claim("s", "k1")
    store.finish("s", "k1", "diverged", record={"loss": math.inf}, error="blew up")
    store.claim("s", "k2")
    store.finish("s", "k2", "done", record={"loss": 0.1})
    assert store.claim("s", "k1") is None and store.claim("s", "k2") is None
    with Store(store.path) as other:  # nor to another runner
        assert other.claim("s", "k1") is None and other.claim("s", "k2") is None
    assert [(r["status"], r["attempts"]) for r in store.runs("s")] == [("diverged", 1), ("done", 1)]


def _owned_by(store, key, pid, pid_start):
    with store.transaction() as c:
        c.execute("UPDATE runs SET pid = ?, pid_start = ? WHERE run_key = ?", (pid, pid_start, key))


def test_stale_running_rows_are_reclaimed_live_ones_are_not(store):
    store.claim("s", "k1")
    store.claim("s", "k2")
    assert store.runs("s", ["k1"])[0]["pid_start"] == identity(os.getpid()) != ""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # reaped: its pid no longer exists
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _owned_by(store, "k1", dead.pid, "boot:1")
        _owned_by(store, "k2", live.pid, identity(live.pid))
        assert store.claim("s", "k1") == 2  # its runner was killed: redo
        assert store.claim("s", "k2") is None  # another live runner on this host has it
    finally:
        live.kill()
        live.wait()
    assert store.claim("s", "k2") == 2


@pytest.mark.skipif(identity(os.getpid()) == "", reason="process start times are not readable here")
def test_a_recycled_pid_does_not_pass_for_the_runner_that_claimed_the_row(store):
    """The claimer died and the kernel gave its PID to an unrelated live process: the PID is alive, but
    its start time is not the claimer's, so the row is stale (it used to be skipped forever)."""
    store.claim("s", "k1")
    store.claim("s", "k2")
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        claimer_start = identity(os.getpid())  # any live process's identity but the stranger's
        assert identity(stranger.pid) not in (None, claimer_start)
        _owned_by(store, "k1", stranger.pid, claimer_start)
        _owned_by(store, "k2", stranger.pid, None)  # claimed by a hesslens that recorded no start time
        assert store.claim("s", "k1") == 2
        assert store.claim("s", "k2") is None  # the PID is all that is known: treated as the live owner
    finally:
        stranger.kill()
        stranger.wait()


def _as_version(path, version):
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (version,))
    conn.commit()
    conn.close()


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_database_from_before_seeds_is_refused_untouched(tmp_path, version):
    path = tmp_path / "old.sqlite"
    with Store(path) as s:
        s.add_runs("s", None, [("k1", "{}")])
    _as_version(path, version)
    before = path.read_bytes()
    with pytest.raises(StoreError) as info:
        Store(path)
    message = str(info.value)
    assert f"schema version {version!r}" in message and "reads version '3'" in message
    assert "(configuration, seed)" in message and "new --out" in message and "Nothing was run" in message
    assert path.read_bytes() == before


def test_a_database_of_a_later_version_is_refused(tmp_path):
    path = tmp_path / "new.sqlite"
    with Store(path) as s:
        s.add_runs("s", None, [("k1", "{}")])
    _as_version(path, "4")
    with pytest.raises(StoreError, match="schema version '4'; this hesslens reads version '3'"):
        Store(path)


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


# -- files that are not usable study databases -------------------------------------------------------
def _refused(path, *needles):
    before = path.read_bytes()
    with pytest.raises(StoreError) as info:
        Store(path)
    message = str(info.value)
    for needle in (str(path), "Nothing was run", *needles):
        assert needle in message, message
    assert path.read_bytes() == before  # not "repaired", not initialised
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no -wal/-shm or temporary left
    return message


def test_an_empty_file_is_refused_not_taken_for_a_new_study(tmp_path):
    path = tmp_path / "study.sqlite"
    path.write_bytes(b"")
    _refused(path, "is empty (0 bytes)", "delete it")


def test_garbage_is_refused_with_a_clear_error(tmp_path):
    path = tmp_path / "study.sqlite"
    path.write_bytes(b"these are not the pages you are looking for\n" * 200)
    _refused(path, "is not a SQLite database")


def test_a_damaged_database_is_refused(tmp_path):
    path = tmp_path / "study.sqlite"
    with Store(path) as s:
        s.add_runs("s", None, [(f"k{i}", json.dumps({"x": "y" * 500})) for i in range(40)])
    data = bytearray(path.read_bytes())
    assert len(data) > 3 * 4096
    data[2 * 4096:3 * 4096] = b"\xff" * 4096  # one whole page of the runs table overwritten
    path.write_bytes(bytes(data))
    message = _refused(path, "is damaged")
    assert "\n" not in message


def test_another_programs_sqlite_database_is_refused_untouched(tmp_path):
    path = tmp_path / "notes.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (text TEXT)")
    conn.commit()
    conn.close()
    _refused(path, "not a hesslens study database", "notes")


def test_a_new_database_appears_whole(tmp_path):
    path = tmp_path / "sub" / "study.sqlite"
    with Store(path) as s:
        assert s.counts("x")["pending"] == 0
    assert sorted(p.name for p in path.parent.iterdir() if not p.name.startswith("study.sqlite-")) == ["study.sqlite"]
    assert path.read_bytes().startswith(b"SQLite format 3\x00")
