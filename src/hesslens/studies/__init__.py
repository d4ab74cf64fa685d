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

from .declaration import (FINISHED, STATUSES, Diverged, ReportContent, RunContext, Study, canonical_json, config_dict,
                          expand_grid, load_presets, make_config, param, run_key)
from .artifacts import Artifact
from .executors import EXECUTORS
from .export import results_frame, series_frame
from .registry import get, names, register, unregister
from .reporting import ReportFiles, render_report
from .seeds import parse_seeds
from .runner import StudyStatus, StudySummary, default_out, run_study, status
from .store import Store, StoreError

__all__ = [
    "Artifact", "EXECUTORS", "FINISHED", "STATUSES", "Diverged", "ReportContent", "ReportFiles", "RunContext", "Store",
    "StoreError", "Study", "StudyStatus", "StudySummary", "canonical_json", "config_dict", "default_out", "expand_grid", "get", "load_presets",
    "make_config", "names", "param", "parse_seeds", "register", "render_report", "results_frame", "run_key", "run_study",
    "series_frame", "status", "unregister",
]
