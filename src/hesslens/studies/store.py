"""The study database: one SQLite file (stdlib ``sqlite3``) holding every run and its time series.

Tables (:mod:`.schema`)::

    runs(study, run_key, seed, config JSON, status, record JSON, error, created_at, started_at,
         finished_at, seconds, attempts, host, pid, worker, pid_start)  primary key (study, run_key, seed)
    series(study, run_key, seed, step, key, value)     primary key (study, run_key, seed, key, step)
    artifacts(study, run_key, seed, name, kind, data)  primary key (study, run_key, seed, name)
    presets(study, preset, run_key, seed)              which preset asked for which run
    meta(key, value)                                   schema version

A run is one configuration (its run key) with one seed (:mod:`.seeds`); ``seed`` arguments below
default to 0. Artifacts are typed blobs (:mod:`.artifacts`).

Durability: the journal is in WAL mode with ``synchronous=FULL`` and every write is one explicit
``BEGIN IMMEDIATE … COMMIT`` transaction. A run is marked ``running`` (attempt + 1, host and pid of the
process that claimed it) in one transaction before it starts, and becomes ``done``/``diverged`` in the
single transaction that also writes its record, its series and its artifacts. So a runner killed at any instant
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
from .artifacts import Artifact, decode
from .declaration import FINISHED, STATUSES
from .schema import SCHEMA, SCHEMA_VERSION, SUPERSEDED, UPGRADABLE, create_database
from .processes import identity

_SQLITE_HEADER = b"SQLite format 3\x00"
_AFRESH = "delete it (or move it away) to start the study afresh, which runs every configuration again"


class StoreError(HesslensError):
    """A study database that cannot be used as it is; the message names the file and what to do."""


def _refuse(path: Path, problem: str, remedy: str = _AFRESH) -> StoreError:
    return StoreError(f"study database {str(path)!r} {problem}. Nothing was run and no file was changed "
                      f"(results.csv included): restore it from a backup, or {remedy}")


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
                create_database(self.path)
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
            if version[0] in SUPERSEDED:
                raise StoreError(
                    f"study database {str(self.path)!r} has schema version {version[0]!r}, written by an earlier "
                    f"hesslens ({SUPERSEDED[version[0]]}); this hesslens reads version {SCHEMA_VERSION!r}, where "
                    "every run is a (configuration, seed) pair. Nothing was run and no file was changed: run the "
                    "study again into a new --out (or --db), or move this file away; its results.csv stays "
                    "readable, and the hesslens that wrote it can still resume it")
            if version[0] != SCHEMA_VERSION and version[0] not in UPGRADABLE:
                raise _refuse(self.path, f"has schema version {version[0]!r}; this hesslens reads version "
                                         f"{SCHEMA_VERSION!r}", "use the hesslens version that wrote it")
        mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":  # e.g. a filesystem without shared memory: still correct, less concurrent
            self._conn.execute("PRAGMA journal_mode = DELETE")
        self._conn.execute("PRAGMA synchronous = FULL")
        with self.transaction() as c:
            for statement in filter(str.strip, SCHEMA.split(";")):
                c.execute(statement)
            c.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
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
    def add_runs(self, study: str, preset: str | None, runs: Iterable[Sequence[Any]]) -> int:
        """Insert ``(run_key, seed, config_json)`` triples (or ``(run_key, config_json)`` pairs: seed 0) as
        ``pending``, existing rows untouched; returns the number of new rows."""
        now = time.time()
        added = 0
        with self.transaction() as c:
            for run in runs:
                key, seed, config_json = (run[0], 0, run[1]) if len(run) == 2 else run
                cur = c.execute("INSERT OR IGNORE INTO runs (study, run_key, seed, config, status, created_at) "
                                "VALUES (?, ?, ?, ?, 'pending', ?)", (study, key, int(seed), config_json, now))
                added += cur.rowcount
                if preset is not None:
                    c.execute("INSERT OR IGNORE INTO presets (study, preset, run_key, seed) VALUES (?, ?, ?, ?)",
                              (study, preset, key, int(seed)))
        return added

    def _claimable(self, row: Mapping[str, Any] | None) -> bool:
        if row is None or row["status"] in FINISHED:
            return False
        if row["status"] == "running" and row["host"] == self.host and row["pid"] not in (None, self.pid):
            now = identity(int(row["pid"]))
            if now is None:  # its runner is gone (killed, crashed)
                return True
            # Alive: the claimer only if it started when the claimer did (a PID is reused once freed).
            # Without both start times (no /proc or ps) the PID is all there is.
            return bool(row["pid_start"] and now and now != row["pid_start"])
        return True

    def claim(self, study: str, key: str, seed: int = 0) -> int | None:
        """Mark a run ``running`` for this process; returns its attempt number, or None if it is not
        claimable (finished, unknown, or being run by another live process on this host)."""
        where = (study, key, int(seed))
        with self.transaction() as c:
            row = c.execute("SELECT status, host, pid, pid_start FROM runs "
                            "WHERE study = ? AND run_key = ? AND seed = ?", where).fetchone()
            if not self._claimable(row):
                return None
            c.execute("UPDATE runs SET status = 'running', attempts = attempts + 1, started_at = ?, "
                      "finished_at = NULL, host = ?, pid = ?, pid_start = ?, worker = NULL "
                      "WHERE study = ? AND run_key = ? AND seed = ?",
                      (time.time(), self.host, self.pid, self.pid_start, *where))
            return int(c.execute("SELECT attempts FROM runs WHERE study = ? AND run_key = ? AND seed = ?",
                                 where).fetchone()[0])

    def finish(self, study: str, key: str, status: str, *, seed: int = 0, record: Mapping[str, Any] | None = None,
               series: Sequence[tuple[float, str, float]] = (), artifacts: Sequence[Artifact] = (),
               error: str | None = None, seconds: float | None = None, worker: str | None = None) -> None:
        """Write a run's outcome, its record, its series and its artifacts, all in one transaction.

        A ``failed`` run keeps neither series nor artifacts: only a finished run's data is stored.
        """
        if status not in ("done", "diverged", "failed"):
            raise InvalidInputError(f"finish() takes status done, diverged or failed, got {status!r}")
        record_json = None if record is None else json.dumps(dict(record), allow_nan=True)
        where = (study, key, int(seed))
        with self.transaction() as c:
            found = c.execute("SELECT 1 FROM runs WHERE study = ? AND run_key = ? AND seed = ?", where).fetchone()
            if found is None:
                raise InvalidInputError(f"study {study!r} has no run {key!r} with seed {seed} in {self.path}")
            # A retried run replaces whatever an earlier attempt left (there is nothing, unless it finished).
            c.execute("DELETE FROM series WHERE study = ? AND run_key = ? AND seed = ?", where)
            c.execute("DELETE FROM artifacts WHERE study = ? AND run_key = ? AND seed = ?", where)
            if status != "failed" and series:
                c.executemany("INSERT OR REPLACE INTO series (study, run_key, seed, step, key, value) "
                              "VALUES (?, ?, ?, ?, ?, ?)",
                              [(*where, float(step), str(k), _float_or_none(v)) for step, k, v in series])
            if status != "failed" and artifacts:
                c.executemany("INSERT OR REPLACE INTO artifacts (study, run_key, seed, name, kind, data) "
                              "VALUES (?, ?, ?, ?, ?, ?)", [(*where, a.name, a.kind, a.data) for a in artifacts])
            c.execute("UPDATE runs SET status = ?, record = ?, error = ?, finished_at = ?, seconds = ?, worker = ? "
                      "WHERE study = ? AND run_key = ? AND seed = ?",
                      (status, record_json, error, time.time(), seconds, worker, *where))

    def release(self, study: str, runs: Iterable[str | tuple[str, int]]) -> None:
        """Give back runs (run keys, seed 0, or ``(run_key, seed)`` pairs) this process claimed but did not
        finish (an interrupted runner): ``pending``."""
        with self.transaction() as c:
            for run in runs:
                key, seed = (run, 0) if isinstance(run, str) else run
                c.execute("UPDATE runs SET status = 'pending' WHERE study = ? AND run_key = ? AND seed = ? "
                          "AND status = 'running' AND host = ? AND pid = ?",
                          (study, key, int(seed), self.host, self.pid))

    # -- reads -------------------------------------------------------------------------------------
    def runs(self, study: str, keys: Sequence[str | tuple[str, int]] | None = None, *,
             preset: str | None = None) -> list[dict[str, Any]]:
        """Rows of ``runs`` (config and record decoded), in insertion order; ``keys`` selects run keys
        (every seed) or ``(run_key, seed)`` pairs."""
        sql = "SELECT rowid AS _order, * FROM runs WHERE study = ?"
        args: list[Any] = [study]
        if preset is not None:
            sql += " AND (run_key, seed) IN (SELECT run_key, seed FROM presets WHERE study = ? AND preset = ?)"
            args += [study, preset]
        rows = [dict(r) for r in self._conn.execute(sql + " ORDER BY rowid", args)]
        if keys is not None:
            wanted = set(keys)
            rows = [r for r in rows if r["run_key"] in wanted or (r["run_key"], r["seed"]) in wanted]
        for r in rows:
            r.pop("_order", None)
            r["config"] = json.loads(r["config"])
            r["record"] = None if r["record"] is None else json.loads(r["record"])
        return rows

    def status_of(self, study: str, key: str, seed: int = 0) -> str | None:
        row = self._conn.execute("SELECT status FROM runs WHERE study = ? AND run_key = ? AND seed = ?",
                                 (study, key, int(seed))).fetchone()
        return None if row is None else row[0]

    def counts(self, study: str, preset: str | None = None) -> dict[str, int]:
        """Number of runs in each status (every status present, zeros included)."""
        sql = "SELECT status, COUNT(*) FROM runs WHERE study = ?"
        args: list[Any] = [study]
        if preset is not None:
            sql += " AND (run_key, seed) IN (SELECT run_key, seed FROM presets WHERE study = ? AND preset = ?)"
            args += [study, preset]
        found = dict(self._conn.execute(sql + " GROUP BY status", args).fetchall())
        return {s: int(found.get(s, 0)) for s in STATUSES}

    def presets(self, study: str) -> list[str]:
        return [r[0] for r in self._conn.execute(
            "SELECT preset FROM presets WHERE study = ? GROUP BY preset ORDER BY MIN(rowid)", (study,))]

    def studies(self) -> list[str]:
        return [r[0] for r in self._conn.execute("SELECT study FROM runs GROUP BY study ORDER BY MIN(rowid)")]

    def series(self, study: str, keys: Sequence[str | tuple[str, int]] | None = None
               ) -> list[tuple[str, int, float, str, float | None]]:
        """``(run_key, seed, step, key, value)`` rows, ordered by run, seed, key and step."""
        rows = self._conn.execute("SELECT run_key, seed, step, key, value FROM series WHERE study = ? "
                                  "ORDER BY run_key, seed, key, step", (study,)).fetchall()
        if keys is not None:
            wanted = set(keys)
            rows = [r for r in rows if r[0] in wanted or (r[0], r[1]) in wanted]
        return [tuple(r) for r in rows]  # type: ignore[misc]

    def artifact_rows(self, study: str) -> list[tuple[str, int, str, str, bytes]]:
        """Every stored artifact of ``study`` as ``(run_key, seed, name, kind, data)``, encoded."""
        return [tuple(r) for r in self._conn.execute(  # type: ignore[misc]
            "SELECT run_key, seed, name, kind, data FROM artifacts WHERE study = ? ORDER BY run_key, seed, name",
            (study,))]

    def artifacts(self, study: str, run_key: str, seed: int = 0) -> dict[str, Any]:
        """The artifacts one run stored, decoded: name → NumPy array, DataFrame or dict (empty if none)."""
        rows = self._conn.execute("SELECT name, kind, data FROM artifacts WHERE study = ? AND run_key = ? AND seed = ? "
                                  "ORDER BY name", (study, run_key, int(seed))).fetchall()
        return {name: decode(kind, bytes(data)) for name, kind, data in rows}


def _float_or_none(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return None if math.isnan(f) else f
