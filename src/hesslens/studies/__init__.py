"""Studies: a declared grid of configurations, run (and resumed) into a SQLite database.

Declare a :class:`Study` (a configuration dataclass, presets, the number of seeds per preset, a run
function returning a flat record and optional series and artifacts, an optional report hook),
and run it with :func:`run_study` or ``hesslens study path/to/file.py:ATTRIBUTE`` (or
``module:ATTRIBUTE``); the built-in studies, which :func:`register` themselves, run as
``hesslens study NAME``. See
:mod:`hesslens.studies.declaration` for the declaration API, :mod:`~hesslens.studies.seeds` for
replicates, :mod:`~hesslens.studies.artifacts` for the arrays and tables a run stores,
``examples/demo_study.py`` in the repository for a complete example, :mod:`~hesslens.studies.store`
for the database and its durability guarantees, and :mod:`~hesslens.studies.executors` for the
inline, process-pool and Ray executors.
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING

from .. import lazy as _lazy

#: Public name → the submodule that defines it; imported on first access (PEP 562), so that
#: ``hesslens study NAME --status`` loads neither the report nor the statistics (SciPy) it does not use.
_LAZY: dict[str, str] = {
    **dict.fromkeys(("FINISHED", "STATUSES", "Diverged", "ReportContent", "RunContext", "Study", "canonical_json",
                     "config_dict", "expand_grid", "load_presets", "make_config", "param", "run_key"), ".declaration"),
    "Artifact": ".artifacts",
    "EXECUTORS": ".executors",
    **dict.fromkeys(("results_frame", "series_frame"), ".export"),
    **dict.fromkeys(("get", "names", "register", "unregister"), ".registry"),
    **dict.fromkeys(("ReportFiles", "render_report"), ".reporting"),
    "parse_seeds": ".seeds",
    **dict.fromkeys(("StudyStatus", "StudySummary", "default_out", "run_study", "status"), ".runner"),
    **dict.fromkeys(("Store", "StoreError"), ".store"),
}

__all__ = [
    "Artifact", "EXECUTORS", "FINISHED", "STATUSES", "Diverged", "ReportContent", "ReportFiles", "RunContext", "Store",
    "StoreError", "Study", "StudyStatus", "StudySummary", "canonical_json", "config_dict", "default_out", "expand_grid", "get", "load_presets",
    "make_config", "names", "param", "parse_seeds", "register", "render_report", "results_frame", "run_key", "run_study",
    "series_frame", "status", "unregister",
]


__getattr__, __dir__ = _lazy.attach(__name__, _LAZY, __all__)


if _TYPE_CHECKING:
    from .artifacts import Artifact
    from .declaration import (FINISHED, STATUSES, Diverged, ReportContent, RunContext, Study, canonical_json,
                              config_dict, expand_grid, load_presets, make_config, param, run_key)
    from .executors import EXECUTORS
    from .export import results_frame, series_frame
    from .registry import get, names, register, unregister
    from .reporting import ReportFiles, render_report
    from .runner import StudyStatus, StudySummary, default_out, run_study, status
    from .seeds import parse_seeds
    from .store import Store, StoreError
