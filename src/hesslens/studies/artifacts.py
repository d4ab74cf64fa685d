"""Per-run artifacts: NumPy arrays, pandas DataFrames and JSON documents a run stores with its record.

A record is a flat row of scalars; what a run computes is often more — a spectral density, a tracked
history, a per-layer table. A run saves those as *artifacts* (``ctx.save_artifact(name, obj)``, or
by returning ``(record, series, {name: obj})``). They are encoded to bytes as soon as they are saved
(so an unsupported object fails at the line that saved it, in the run, not later in the driver),
travel back from pool and Ray workers with the outcome, and are written to the study database in
the same transaction as the run's record: a run that is interrupted or fails leaves none behind, and a
resumed study never sees a half-stored one.

Each artifact is stored as a typed blob:

=========  ==============  =================================================  ==============
kind       Python object   stored as                                          exported as
=========  ==============  =================================================  ==============
``array``  ``np.ndarray``  ``.npy`` bytes (``np.save``, no pickle)            ``<name>.npy``
``table``  ``DataFrame``   JSON: columns, dtypes, values (floats exact; an    ``<name>.csv``
                           index kept; no pyarrow needed)
``json``   ``dict``        JSON text                                          ``<name>.json``
=========  ==============  =================================================  ==============

A torch tensor is saved as an array. :meth:`hesslens.studies.Store.artifacts` decodes them back;
:func:`hesslens.studies.export.export` writes them under ``OUT/artifacts/<run_key>-seed<seed>/``; a
report hook taking a fourth argument gets an :class:`ArtifactLoader`.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import InvalidInputError

#: kind → extension of the exported file.
EXTENSIONS = {"array": "npy", "table": "csv", "json": "json"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


@dataclass(frozen=True)
class Artifact:
    """One encoded artifact: plain data, so it pickles cheaply from a worker to the runner."""

    name: str
    kind: str  # "array" | "table" | "json"
    data: bytes


def run_folder(run_key: str, seed: int) -> str:
    """The folder name of one run (a configuration and a seed): ``<run_key>-seed<seed>``."""
    return f"{run_key}-seed{int(seed)}"


def check_name(name: Any) -> str:
    """Artifact names become file names: letters, digits, ``_``, ``.`` and ``-``, starting with a letter or digit."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInputError(f"artifact name {name!r} is not allowed: use 1-100 letters, digits, '_', '.' or '-', "
                                "starting with a letter or digit (it becomes a file name)")
    return name


def encode(name: str, obj: Any) -> Artifact:
    """``obj`` as an :class:`Artifact`; :class:`InvalidInputError` naming the artifact if it cannot be stored."""
    import numpy as np
    import pandas as pd

    check_name(name)
    if hasattr(obj, "detach") and hasattr(obj, "cpu"):  # a torch tensor
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray):
        buf = io.BytesIO()
        try:
            np.save(buf, obj, allow_pickle=False)
        except ValueError as exc:
            raise InvalidInputError(f"artifact {name!r}: an array of dtype {obj.dtype} cannot be stored without "
                                    f"pickling ({exc}); save a numeric or string array") from None
        return Artifact(name, "array", buf.getvalue())
    if isinstance(obj, pd.DataFrame):
        return Artifact(name, "table", _table_json(name, obj).encode())
    if isinstance(obj, Mapping):
        try:
            text = json.dumps(dict(obj), allow_nan=True)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"artifact {name!r}: the dict is not JSON-serialisable ({exc}); use numbers, "
                                    "strings, booleans, None, lists and dicts (or save arrays separately)") from None
        return Artifact(name, "json", text.encode())
    raise InvalidInputError(f"artifact {name!r} is a {type(obj).__name__}; an artifact is a NumPy array, a pandas "
                            "DataFrame or a JSON-able dict")


def decode(kind: str, data: bytes) -> Any:
    """The object an artifact was saved from (an array, a DataFrame or a dict)."""
    if kind == "array":
        import numpy as np

        return np.load(io.BytesIO(data), allow_pickle=False)
    if kind == "table":
        return _table_from_json(data.decode())
    if kind == "json":
        return json.loads(data.decode())
    raise InvalidInputError(f"unknown artifact kind {kind!r} (known: {', '.join(EXTENSIONS)})")


def _column(name: str, what: str, series: Any) -> dict[str, Any]:
    """One column as JSON: its dtype and its values (Python floats, so exact; missing values as null)."""
    import pandas as pd

    kind = series.dtype.kind
    if kind == "M":
        values = [None if pd.isna(v) else v.isoformat() for v in series]
    elif kind == "f":
        values = [float(v) for v in series]  # NaN and ±inf are kept (JSON NaN/Infinity)
    elif kind in "biu":
        values = [None if v is pd.NA else v for v in series.tolist()]  # nullable Int64/boolean: NA → null
    elif kind == "O" or isinstance(series.dtype, (pd.StringDtype, pd.CategoricalDtype)) or kind == "U":
        values = [None if v is None or (not isinstance(v, str) and pd.isna(v)) else v for v in series]
        bad = [v for v in values if v is not None and not isinstance(v, (str, bool, int, float))]
        if bad:
            raise InvalidInputError(f"artifact {name!r}: {what} holds a {type(bad[0]).__name__} ({bad[0]!r}); a "
                                    "stored table holds numbers, booleans, strings and dates")
    else:
        raise InvalidInputError(f"artifact {name!r}: {what} has dtype {series.dtype}, which a stored table does not "
                                "keep; convert it to numbers, booleans, strings or datetimes")
    return {"dtype": str(series.dtype), "values": values}


def _table_json(name: str, df: Any) -> str:
    import pandas as pd

    columns = list(df.columns)
    if not all(isinstance(c, str) for c in columns) or len(set(columns)) != len(columns):
        raise InvalidInputError(f"artifact {name!r}: a stored DataFrame needs unique string column names, got "
                                f"{columns[:10]}")
    doc: dict[str, Any] = {"columns": {c: _column(name, f"column {c!r}", df[c]) for c in columns}}
    index = df.index
    if isinstance(index, pd.MultiIndex):
        raise InvalidInputError(f"artifact {name!r}: a stored DataFrame has one index level; call reset_index() first")
    if not (isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1 and index.name is None):
        doc["index"] = {"name": index.name, **_column(name, "the index", index.to_series())}
    try:
        return json.dumps(doc, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"artifact {name!r}: this DataFrame cannot be stored as JSON ({exc})") from None


def _restore(column: Mapping[str, Any]) -> Any:
    import pandas as pd

    dtype = column["dtype"]
    values = pd.Series(column["values"], dtype=object)
    if dtype.startswith("datetime64"):
        return pd.to_datetime(values, format="ISO8601").astype(dtype)
    return values.astype(dtype)


def _table_from_json(text: str) -> Any:
    import pandas as pd

    doc = json.loads(text)
    frame = pd.DataFrame({c: _restore(col) for c, col in doc["columns"].items()})
    if "index" in doc:
        frame.index = pd.Index(_restore(doc["index"]), name=doc["index"]["name"])
    return frame


def encode_all(artifacts: Any) -> list[Artifact]:
    """A run's returned artifacts (a mapping name → object) encoded; ``None`` means none."""
    if artifacts is None:
        return []
    if not isinstance(artifacts, Mapping):
        raise InvalidInputError(f"the third item a run returns must be a dict of artifacts name → object, got "
                                f"{type(artifacts).__name__}")
    return [encode(name, obj) for name, obj in artifacts.items()]


def merge(saved: list[Artifact], returned: list[Artifact]) -> list[Artifact]:
    """Artifacts saved during a run and those it returned; a later one of the same name replaces an earlier."""
    by_name: dict[str, Artifact] = {}
    for a in [*saved, *returned]:
        by_name[a.name] = a
    return list(by_name.values())


def export_file(kind: str, data: bytes, path_without_suffix: Any) -> None:
    """Write one artifact as ``.npy``, ``.csv`` or ``.json`` (the suffix is added here)."""
    from pathlib import Path

    path = Path(f"{path_without_suffix}.{EXTENSIONS[kind]}")
    if kind == "table":
        import pandas as pd

        table = decode(kind, data)
        table.to_csv(path, index=not isinstance(table.index, pd.RangeIndex))
    else:  # .npy bytes and JSON text are already what the file holds
        path.write_bytes(data)


class ArtifactLoader:
    """What a report hook declared as ``report(df, out, series, artifacts)`` receives as ``artifacts``:
    ``artifacts(run_key, seed)`` → ``{name: array | DataFrame | dict}`` of one run (the ``run_key`` and
    ``seed`` columns of ``df`` name it). The database is opened on first use and closed after the hook."""

    def __init__(self, db: Any, study: str):
        self.db, self.study, self._store = db, study, None

    def __call__(self, run_key: str, seed: int = 0) -> dict[str, Any]:
        if self._store is None:
            from .store import Store

            self._store = Store(self.db)
        return self._store.artifacts(self.study, str(run_key), int(seed))

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
