"""The study database's schema, its version, and how a new database file comes into being.

Kept apart from :mod:`.store` (which reads and writes runs) so that the tables, the version number
and the versions this code refuses are read in one place: a change to a table is a change of
:data:`SCHEMA_VERSION`, and an older file is either upgraded (:data:`UPGRADABLE`) or refused with the
reason (:data:`SUPERSEDED`), never silently misread.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path

from .declaration import STATUSES

SCHEMA_VERSION = "3"
#: Older versions this code upgrades in place (none: see :data:`SUPERSEDED`).
UPGRADABLE: tuple[str, ...] = ()
#: Older versions refused with an explanation. Before version 3 a seed was an ordinary configuration
#: field, hashed into the run key, and runs had no artifacts; their keys cannot be mapped onto
#: (configuration key, seed) pairs without guessing which field meant the seed (the sharpness study
#: had two), so the runs are not carried over: the study is run again into a new database.
SUPERSEDED = {"1": "runs were keyed without a seed", "2": "runs were keyed without a seed"}

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    study       TEXT NOT NULL,
    run_key     TEXT NOT NULL,
    seed        INTEGER NOT NULL DEFAULT 0,
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
    PRIMARY KEY (study, run_key, seed)
);
CREATE INDEX IF NOT EXISTS runs_status ON runs (study, status);
CREATE TABLE IF NOT EXISTS series (
    study   TEXT NOT NULL,
    run_key TEXT NOT NULL,
    seed    INTEGER NOT NULL DEFAULT 0,
    step    REAL NOT NULL,
    key     TEXT NOT NULL,
    value   REAL,
    PRIMARY KEY (study, run_key, seed, key, step)
);
CREATE TABLE IF NOT EXISTS artifacts (
    study   TEXT NOT NULL,
    run_key TEXT NOT NULL,
    seed    INTEGER NOT NULL,
    name    TEXT NOT NULL,
    kind    TEXT NOT NULL CHECK (kind IN ('array', 'table', 'json')),
    data    BLOB NOT NULL,
    PRIMARY KEY (study, run_key, seed, name)
);
CREATE TABLE IF NOT EXISTS presets (
    study   TEXT NOT NULL,
    preset  TEXT NOT NULL,
    run_key TEXT NOT NULL,
    seed    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (study, preset, run_key, seed)
);
"""


def create_database(path: Path) -> None:
    """Build an empty study database under a temporary name, then link it into place whole."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.new")
    try:
        conn = sqlite3.connect(str(tmp), isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("BEGIN IMMEDIATE")
            for statement in filter(str.strip, SCHEMA.split(";")):
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
