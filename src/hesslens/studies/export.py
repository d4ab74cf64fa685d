"""Tables out of the store: ``results.csv`` (refreshed after every finished run), Parquet on request, and
the runs' artifacts.

One row per *finished* run (``done`` or ``diverged``): ``run_key``, ``seed``, the configuration's other
fields, the record's entries, then ``status``, ``attempts``, ``seconds`` and ``finished`` (UTC, ISO
8601). A record entry whose name clashes with a configuration field or one of those columns is renamed
``record_<name>``. Sequence-valued configuration fields are written as JSON text. Artifacts
(:mod:`.artifacts`) go to ``artifacts/<run_key>-seed<seed>/<name>.{npy,csv,json}``, written with the
tables when asked (the runner does so once its runs are over). The files are
written into a staging folder and renamed into place together
(:func:`hesslens.outputs.staged_folder`), so a reader — or a runner killed mid-write — never
sees half a table, and a symbolic link in their place is refused rather than written through.
"""

from __future__ import annotations

import importlib.util
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from ..errors import HesslensError
from ..outputs import staged_folder
from .artifacts import export_file, run_folder
from .declaration import FINISHED
from .seeds import SEED_FIELD
from .store import Store

META_COLUMNS = ("status", "attempts", "seconds", "finished")
#: The files :func:`export` replaces in a study's folder.
EXPORTS = ("results.csv", "results.parquet", "series.parquet", "artifacts")


def _cell(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


def results_frame(rows: Iterable[Mapping[str, Any]], statuses: tuple[str, ...] = FINISHED) -> pd.DataFrame:
    """The results table of ``rows`` (as returned by :meth:`Store.runs`) whose status is in ``statuses``."""
    table, config_cols, record_cols = [], [], []
    for r in rows:
        if r["status"] not in statuses:
            continue
        config, record = r["config"], r["record"] or {}
        for k in config:
            if k not in config_cols and k != SEED_FIELD:
                config_cols.append(k)
        row: dict[str, Any] = {"run_key": r["run_key"], "seed": r.get("seed", 0)}
        row.update({k: _cell(v) for k, v in config.items() if k != SEED_FIELD})
        reserved = set(config) | set(META_COLUMNS) | {"run_key", SEED_FIELD}
        for k, v in record.items():
            name = f"record_{k}" if k in reserved else k
            if name not in record_cols:
                record_cols.append(name)
            row[name] = v
        row.update(status=r["status"], attempts=r["attempts"], seconds=r["seconds"], finished=_iso(r["finished_at"]))
        table.append(row)
    columns = ["run_key", SEED_FIELD, *config_cols, *record_cols, *META_COLUMNS]
    return pd.DataFrame(table, columns=columns)


def series_frame(store: Store, study: str, keys: Iterable[str] | None = None) -> pd.DataFrame:
    """Long-form series: columns ``run_key, seed, step, key, value``."""
    rows = store.series(study, None if keys is None else list(keys))
    df = pd.DataFrame(rows, columns=["run_key", "seed", "step", "key", "value"])
    if len(df) and (df["step"] == df["step"].round()).all():
        df["step"] = df["step"].astype("int64")
    df["value"] = df["value"].astype("float64")
    return df


def require_parquet() -> None:
    if importlib.util.find_spec("pyarrow") is None:
        raise HesslensError("Parquet export needs pyarrow: pip install pyarrow (or pip install 'hesslens[parquet]'); "
                            "results.csv is written regardless")


def export(store: Store, study: str, out: Path, *, parquet: bool = False, artifacts: bool = False) -> dict[str, Path]:
    """Write ``results.csv`` (and ``results.parquet`` + ``series.parquet`` if asked, and the folder
    ``artifacts`` if asked and any run stored one) under ``out``, all moved into place together."""
    out = Path(out)
    if parquet:
        require_parquet()
    rows = store.runs(study)
    df = results_frame(rows)
    finished = {(r["run_key"], r["seed"]) for r in rows if r["status"] in FINISHED}
    stored = [a for a in store.artifact_rows(study) if (a[0], a[1]) in finished] if artifacts else []
    with staged_folder(out, whole=False, what="study folder") as stage:
        df.to_csv(stage / "results.csv", index=False)
        if parquet:
            df.to_parquet(stage / "results.parquet", index=False, engine="pyarrow")
            series_frame(store, study).to_parquet(stage / "series.parquet", index=False, engine="pyarrow")
        for key, seed, name, kind, data in stored:
            folder = stage / "artifacts" / run_folder(key, seed)
            folder.mkdir(parents=True, exist_ok=True)
            export_file(kind, bytes(data), folder / name)
    files = {"csv": out / "results.csv"}
    if parquet:
        files.update(parquet=out / "results.parquet", series_parquet=out / "series.parquet")
    if stored:
        files.update(artifacts=out / "artifacts")
    return files
