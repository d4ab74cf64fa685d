"""The study database: one SQLite file (stdlib ``sqlite3``) holding every run and its time series.

Tables::

    runs(study, run_key, config JSON, status, record JSON, error, created_at, started_at, finished_at,
         seconds, attempts, host, pid, worker)          primary key (study, run_key)
    series(study, run_key, step, key, value)           primary key (study, run_key, key, step)
    presets(study, preset, run_key)                    which preset asked for which run
    meta(key, value)                                   schema version

Durability: the journal is in WAL mode with ``synchronous=FULL`` and every write is one explicit
``BEGIN IMMEDIATE … COMMIT`` transaction. A run is marked ``running`` (attempt + 1, host and pid of the
process that claimed it) in one transaction before it starts, and becomes ``done``/``diverged`` in the
single transaction that also writes its record and its series. So a runner killed at any instant
leaves each run either finished with all its data, or ``running``/``pending``/``failed`` with none of
it; the next invocation redoes exactly the unfinished ones.

A ``running`` row is *stale* (claimable again) unless it belongs to another live process on this host:
that lets two runners share a database without running the same configuration twice, and lets a
runner killed with SIGKILL be resumed (its pid is gone). Timestamps are Unix seconds.

Note that SQLite stores a float NaN as NULL; a NaN in a series comes back as a missing value.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from ..errors import InvalidInputError
from .declaration import FINISHED, STATUSES

SCHEMA_VERSION = "1"

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    study       TEXT NOT NULL,
    run_key     TEXT NOT NULL,
    config      TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ({', '.join(repr(s) for s in STATUSES)})),
    record      TEXT,
    error       TEXT,
    created_at  REAL NOT NULL,
    started_at  REAL,
    finished_at REAL,
    seconds     REAL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    host        TEXT,
    pid         INTEGER,
    worker      TEXT,
    PRIMARY KEY (study, run_key)
);
CREATE INDEX IF NOT EXISTS runs_status ON runs (study, status);
CREATE TABLE IF NOT EXISTS series (
    study   TEXT NOT NULL,
    run_key TEXT NOT NULL,
    step    REAL NOT NULL,
    key     TEXT NOT NULL,
    value   REAL,
    PRIMARY KEY (study, run_key, key, step)
);
CREATE TABLE IF NOT EXISTS presets (
    study   TEXT NOT NULL,
    preset  TEXT NOT NULL,
    run_key TEXT NOT NULL,
    PRIMARY KEY (study, preset, run_key)
);
"""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


class Store:
    """A connection to one study database; use as a context manager or call :meth:`close`.

    One ``Store`` belongs to one thread (the runner's); workers never write the database.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: no implicit transactions; every write below opens its own explicitly.
        self._conn = sqlite3.connect(str(self.path), timeout=60.0, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA busy_timeout = 60000")
        mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":  # e.g. a filesystem without shared memory: still correct, less concurrent
            self._conn.execute("PRAGMA journal_mode = DELETE")
        self._conn.execute("PRAGMA synchronous = FULL")
        with self.transaction() as c:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                c.execute(statement)
            c.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
        self.host = socket.gethostname()
        self.pid = os.getpid()

    # -- plumbing ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``; any exception rolls the whole transaction back."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def journal_mode(self) -> str:
        return str(self._conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()

    # -- writes ------------------------------------------------------------------------------------
    def add_runs(self, study: str, preset: str | None, runs: Iterable[tuple[str, str]]) -> int:
        """Insert ``(run_key, config_json)`` pairs as ``pending`` (existing rows untouched); returns new rows."""
        now = time.time()
        added = 0
        with self.transaction() as c:
            for key, config_json in runs:
                cur = c.execute("INSERT OR IGNORE INTO runs (study, run_key, config, status, created_at) "
                                "VALUES (?, ?, ?, 'pending', ?)", (study, key, config_json, now))
                added += cur.rowcount
                if preset is not None:
                    c.execute("INSERT OR IGNORE INTO presets (study, preset, run_key) VALUES (?, ?, ?)",
                              (study, preset, key))
        return added

    def _claimable(self, row: Mapping[str, Any] | None) -> bool:
        if row is None or row["status"] in FINISHED:
            return False
        if row["status"] == "running" and row["host"] == self.host and row["pid"] not in (None, self.pid):
            return not _pid_alive(int(row["pid"]))
        return True

    def claim(self, study: str, key: str) -> int | None:
        """Mark a run ``running`` for this process; returns its attempt number, or None if it is not
        claimable (finished, unknown, or being run by another live process on this host)."""
        with self.transaction() as c:
            row = c.execute("SELECT status, host, pid FROM runs WHERE study = ? AND run_key = ?",
                            (study, key)).fetchone()
            if not self._claimable(row):
                return None
            c.execute("UPDATE runs SET status = 'running', attempts = attempts + 1, started_at = ?, "
                      "finished_at = NULL, host = ?, pid = ?, worker = NULL WHERE study = ? AND run_key = ?",
                      (time.time(), self.host, self.pid, study, key))
            return int(c.execute("SELECT attempts FROM runs WHERE study = ? AND run_key = ?",
                                 (study, key)).fetchone()[0])

    def finish(self, study: str, key: str, status: str, *, record: Mapping[str, Any] | None = None,
               series: Sequence[tuple[float, str, float]] = (), error: str | None = None,
               seconds: float | None = None, worker: str | None = None) -> None:
        """Write a run's outcome, its record and its series, all in one transaction."""
        if status not in ("done", "diverged", "failed"):
            raise InvalidInputError(f"finish() takes status done, diverged or failed, got {status!r}")
        record_json = None if record is None else json.dumps(dict(record), allow_nan=True)
        with self.transaction() as c:
            found = c.execute("SELECT 1 FROM runs WHERE study = ? AND run_key = ?", (study, key)).fetchone()
            if found is None:
                raise InvalidInputError(f"study {study!r} has no run {key!r} in {self.path}")
            # A retried run replaces whatever an earlier attempt left (there is nothing, unless it finished).
            c.execute("DELETE FROM series WHERE study = ? AND run_key = ?", (study, key))
            if status != "failed" and series:
                c.executemany("INSERT OR REPLACE INTO series (study, run_key, step, key, value) VALUES (?, ?, ?, ?, ?)",
                              [(study, key, float(step), str(k), _float_or_none(v)) for step, k, v in series])
            c.execute("UPDATE runs SET status = ?, record = ?, error = ?, finished_at = ?, seconds = ?, worker = ? "
                      "WHERE study = ? AND run_key = ?",
                      (status, record_json, error, time.time(), seconds, worker, study, key))

    def release(self, study: str, keys: Iterable[str]) -> None:
        """Give back runs this process claimed but did not finish (an interrupted runner): ``pending``."""
        with self.transaction() as c:
            for key in keys:
                c.execute("UPDATE runs SET status = 'pending' WHERE study = ? AND run_key = ? AND status = 'running' "
                          "AND host = ? AND pid = ?", (study, key, self.host, self.pid))

    # -- reads -------------------------------------------------------------------------------------
    def runs(self, study: str, keys: Sequence[str] | None = None, *, preset: str | None = None) -> list[dict[str, Any]]:
        """Rows of ``runs`` (config and record decoded), in insertion order."""
        sql = "SELECT rowid AS _order, * FROM runs WHERE study = ?"
        args: list[Any] = [study]
        if preset is not None:
            sql += " AND run_key IN (SELECT run_key FROM presets WHERE study = ? AND preset = ?)"
            args += [study, preset]
        rows = [dict(r) for r in self._conn.execute(sql + " ORDER BY rowid", args)]
        if keys is not None:
            wanted = set(keys)
            rows = [r for r in rows if r["run_key"] in wanted]
        for r in rows:
            r.pop("_order", None)
            r["config"] = json.loads(r["config"])
            r["record"] = None if r["record"] is None else json.loads(r["record"])
        return rows

    def status_of(self, study: str, key: str) -> str | None:
        row = self._conn.execute("SELECT status FROM runs WHERE study = ? AND run_key = ?", (study, key)).fetchone()
        return None if row is None else row[0]

    def counts(self, study: str, preset: str | None = None) -> dict[str, int]:
        """Number of runs in each status (every status present, zeros included)."""
        sql = "SELECT status, COUNT(*) FROM runs WHERE study = ?"
        args: list[Any] = [study]
        if preset is not None:
            sql += " AND run_key IN (SELECT run_key FROM presets WHERE study = ? AND preset = ?)"
            args += [study, preset]
        found = dict(self._conn.execute(sql + " GROUP BY status", args).fetchall())
        return {s: int(found.get(s, 0)) for s in STATUSES}

    def presets(self, study: str) -> list[str]:
        return [r[0] for r in self._conn.execute(
            "SELECT preset FROM presets WHERE study = ? GROUP BY preset ORDER BY MIN(rowid)", (study,))]

    def studies(self) -> list[str]:
        return [r[0] for r in self._conn.execute("SELECT study FROM runs GROUP BY study ORDER BY MIN(rowid)")]

    def series(self, study: str, keys: Sequence[str] | None = None) -> list[tuple[str, float, str, float | None]]:
        """``(run_key, step, key, value)`` rows, ordered by run, key and step."""
        rows = self._conn.execute("SELECT run_key, step, key, value FROM series WHERE study = ? "
                                  "ORDER BY run_key, key, step", (study,)).fetchall()
        if keys is not None:
            wanted = set(keys)
            rows = [r for r in rows if r[0] in wanted]
        return [tuple(r) for r in rows]  # type: ignore[misc]


def _float_or_none(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return None if math.isnan(f) else f
