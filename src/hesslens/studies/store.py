"""The study database: one SQLite file (stdlib ``sqlite3``) holding every run and its time series.

Tables::

    runs(study, run_key, config JSON, status, record JSON, error, created_at, started_at, finished_at,
         seconds, attempts, host, pid, worker, pid_start)   primary key (study, run_key)
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
runner killed with SIGKILL be resumed. The claimer is identified by its PID *and* its start time
(``pid_start``, see :mod:`.processes`), so a PID that the kernel has since given to an unrelated
process does not pass for the runner that claimed the row. Timestamps are Unix seconds.

Integrity: a new database is built under a temporary name and linked into place complete, so a
hesslens process never leaves an empty or half-initialised file. Opening refuses, with a
:class:`StoreError` naming the file and what to do, a file that is empty (0 bytes), not SQLite, damaged
(``PRAGMA quick_check``), or a SQLite database of something else — before anything is written, so
``results.csv`` and the file itself stay as they are.

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

from ..errors import HesslensError, InvalidInputError
from .declaration import FINISHED, STATUSES
from .processes import identity

SCHEMA_VERSION = "2"
#: Older versions this code upgrades in place: 1 lacked ``pid_start`` (claimers identified by PID only).
#: The upgrade bumps the version, so a hesslens that still writes version 1 (and would leave a stale
#: ``pid_start`` behind on claiming) refuses the upgraded file instead of sharing it.
UPGRADABLE = ("1",)

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
    pid_start   TEXT,
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


_SQLITE_HEADER = b"SQLite format 3\x00"
_AFRESH = "delete it (or move it away) to start the study afresh, which runs every configuration again"


class StoreError(HesslensError):
    """A study database that cannot be used as it is; the message names the file and what to do."""


def _refuse(path: Path, problem: str, remedy: str = _AFRESH) -> StoreError:
    return StoreError(f"study database {str(path)!r} {problem}. Nothing was run and no file was changed "
                      f"(results.csv included): restore it from a backup, or {remedy}")


def _create(path: Path) -> None:
    """Build an empty study database under a temporary name, then link it into place whole."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.new")
    try:
        conn = sqlite3.connect(str(tmp), isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("BEGIN IMMEDIATE")
            for statement in filter(str.strip, _SCHEMA.split(";")):
                conn.execute(statement)
            conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
            conn.execute("COMMIT")
        finally:
            conn.close()  # the last connection checkpoints the WAL into the file
        try:
            os.link(tmp, path)  # atomic, and never replaces a database another runner created meanwhile
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links
            if not path.exists():
                os.replace(tmp, path)
    finally:
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def _check_header(path: Path) -> None:
    try:
        with open(path, "rb") as f:
            head = f.read(len(_SQLITE_HEADER))
    except OSError as exc:
        raise StoreError(f"cannot read study database {str(path)!r}: {exc.strerror or exc}") from None
    if not head:
        raise _refuse(path, "is empty (0 bytes): it holds no runs, so it is not a database hesslens wrote (a "
                            "truncated copy, a full disk, or a file created by hand)")
    if head != _SQLITE_HEADER:
        raise _refuse(path, f"is not a SQLite database (it starts with {head[:16]!r})")


class Store:
    """A connection to one study database; use as a context manager or call :meth:`close`.

    One ``Store`` belongs to one thread (the runner's); workers never write the database.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            try:
                _create(self.path)
            except (OSError, sqlite3.Error) as exc:
                raise StoreError(f"cannot create study database {str(self.path)!r}: {exc}; choose another --db "
                                 "or --out, or make its folder writable") from None
        _check_header(self.path)
        # isolation_level=None: no implicit transactions; every write below opens its own explicitly.
        self._conn = sqlite3.connect(str(self.path), timeout=60.0, isolation_level=None)
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise _refuse(self.path, f"is damaged (sqlite3: {exc})") from None
        except BaseException:
            self._conn.close()
            raise
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.pid_start = identity(self.pid) or None

    def _open(self) -> None:
        """Check the file is a sound study database of this version, then bring its schema up to date."""
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA busy_timeout = 60000")
        damage = [r[0] for r in self._conn.execute("PRAGMA quick_check")]
        if damage != ["ok"]:
            found = "; ".join(" ".join(str(d).split()) for d in damage[:3])
            raise _refuse(self.path, f"is damaged (SQLite integrity check: {found})")
        tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables:  # not a fresh file: it must be a study database of a version this code reads
            version = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() \
                if "meta" in tables else None
            if version is None or "runs" not in tables:
                raise _refuse(self.path, "is a SQLite database but not a hesslens study database (its tables: "
                                         f"{', '.join(sorted(tables))})", "give another --db or --out")
            if version[0] != SCHEMA_VERSION and version[0] not in UPGRADABLE:
                raise _refuse(self.path, f"has schema version {version[0]!r}; this hesslens reads version "
                                         f"{SCHEMA_VERSION!r}", "use the hesslens version that wrote it")
        mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":  # e.g. a filesystem without shared memory: still correct, less concurrent
            self._conn.execute("PRAGMA journal_mode = DELETE")
        self._conn.execute("PRAGMA synchronous = FULL")
        with self.transaction() as c:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                c.execute(statement)
            c.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
            columns = {r[1] for r in c.execute("PRAGMA table_info(runs)")}
            if "pid_start" not in columns:  # version 1: claimers identified by PID only
                c.execute("ALTER TABLE runs ADD COLUMN pid_start TEXT")
            c.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION,))

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
            now = identity(int(row["pid"]))
            if now is None:  # its runner is gone (killed, crashed)
                return True
            # Alive: the claimer only if it started when the claimer did (a PID is reused once freed).
            # Without both start times (an older database, no /proc or ps) the PID is all there is.
            return bool(row["pid_start"] and now and now != row["pid_start"])
        return True

    def claim(self, study: str, key: str) -> int | None:
        """Mark a run ``running`` for this process; returns its attempt number, or None if it is not
        claimable (finished, unknown, or being run by another live process on this host)."""
        with self.transaction() as c:
            row = c.execute("SELECT status, host, pid, pid_start FROM runs WHERE study = ? AND run_key = ?",
                            (study, key)).fetchone()
            if not self._claimable(row):
                return None
            c.execute("UPDATE runs SET status = 'running', attempts = attempts + 1, started_at = ?, "
                      "finished_at = NULL, host = ?, pid = ?, pid_start = ?, worker = NULL "
                      "WHERE study = ? AND run_key = ?", (time.time(), self.host, self.pid, self.pid_start, study, key))
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
