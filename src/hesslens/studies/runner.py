"""Running a study with resume, and showing its status from the database.

:func:`run_study` validates every configuration of the preset (nothing runs if one is bad), pairs
each with every seed of the preset (:mod:`.seeds`; ``seeds=`` overrides), records those runs as
``pending`` in ``OUT/study.sqlite``, skips those already ``done`` or ``diverged`` — so asking for more
seeds later runs only the new ones — and hands the rest to an executor. Each run is marked
``running`` just before it is submitted and its outcome is written, with its record, series and
artifacts, in one transaction as it completes; ``OUT/results.csv`` is rewritten after every one, and
``OUT/artifacts`` once the runs are over. Re-running the same command therefore resumes: finished
runs are skipped, runs interrupted by a kill (``running`` in the database, their process gone) and
``failed`` ones are run again. An exception inside a run is stored as ``failed`` with its traceback and does not stop the
others; a run reporting divergence (``diverged`` in its record, a NaN/inf loss, or
:class:`~hesslens.studies.Diverged` raised) is stored as ``diverged``. The output folder is checked
before anything runs (no symbolic link where ``results.csv`` goes, writable), so a bad folder fails
in a second rather than after the first run; :attr:`StudySummary.ok` says whether every run of the
preset finished, which is what ``hesslens study``'s exit status reports.

:func:`status` summarises the database; :mod:`.reporting` renders the report.
"""

from __future__ import annotations

import json
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from ..errors import InvalidInputError
from ..outputs import check_folder
from .declaration import FINISHED, STATUSES, Study, config_dict, run_key
from .executors import Job, Pending, Task, make_executor
from .export import EXPORTS, export, require_parquet
from .registry import get
from .seeds import with_seed
from .store import Store

DB_NAME = "study.sqlite"


def default_out(name: str) -> Path:
    """``./studies/NAME`` (relative to the working directory)."""
    return Path("studies") / name.replace(":", "_").replace("/", "_")


def _paths(study: Study, out: str | Path | None, db: str | Path | None) -> tuple[Path, Path]:
    out_dir = Path(out) if out is not None else default_out(study.name)
    return out_dir, Path(db) if db is not None else out_dir / DB_NAME


@dataclass
class StudySummary:
    """What :func:`run_study` did. ``counts`` covers every run of the preset, by status."""

    study: str
    preset: str
    out: Path
    db: Path
    total: int
    counts: dict[str, int]
    executed: int
    skipped: int
    busy: int
    seconds: float
    failures: list[tuple[str, str]] = field(default_factory=list)
    seeds: tuple[int, ...] = (0,)

    @property
    def ok(self) -> bool:
        """Every run of the preset finished (done or diverged)."""
        return sum(self.counts[s] for s in FINISHED) == self.total

    def __str__(self) -> str:
        counts = ", ".join(f"{n} {s}" for s, n in self.counts.items() if n)
        lines = [f"study {self.study!r}, preset {self.preset!r}, seeds {_seed_text(self.seeds)}: {self.total} runs "
                 f"({counts}); "
                 f"ran {self.executed}, skipped {self.skipped} already finished"
                 + (f", {self.busy} being run by another process" if self.busy else "")
                 + f", {self.seconds:.1f} s",
                 f"results: {self.out / 'results.csv'}  (database {self.db})"]
        for key, err in self.failures[:10]:
            lines.append(f"  failed {key}: {err}")
        if self.failures:
            lines.append("  rerun the same command to retry the failed runs")
        unfinished = self.total - sum(self.counts[s] for s in FINISHED) - len(self.failures)
        if unfinished:
            lines.append(f"  {unfinished} run{'s' if unfinished > 1 else ''} not finished"
                         + (f" ({self.busy} being run by another live process on this host; see --status)"
                            if self.busy else "")
                         + f": rerun the same command when {'it has' if unfinished == 1 else 'they have'} finished")
        return "\n".join(lines)


def _seed_text(seeds: Sequence[int]) -> str:
    seeds = list(seeds)
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}-{seeds[-1]}"
    return ",".join(map(str, seeds))


def _last_line(text: str | None) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


def _check_picklable(study: Study, configs: Sequence[Any], executor: str) -> None:
    for what, obj in (("run function", study.run), ("configuration", configs[0])):
        try:
            pickle.dumps(obj)
        except Exception as exc:
            raise InvalidInputError(f"study {study.name!r}: the {executor} executor sends the {what} to other "
                                    f"processes, but it cannot be pickled ({type(exc).__name__}: {exc}); "
                                    "declare it at module level (no lambdas or nested functions)") from exc


def run_study(study: str | Study, preset: str | Mapping[str, Any] | Sequence[Mapping[str, Any]] = "smoke",
              out: str | Path | None = None, *, executor: str = "inline", workers: int | None = None,
              ray_address: str | None = None, progress: bool | None = None, parquet: bool = False,
              db: str | Path | None = None, grid_file: str | Path | None = None,
              seeds: int | str | Sequence[int] | None = None) -> StudySummary:
    """Run (or resume) every configuration of ``preset``; see the module docstring.

    Args:
        study: a :class:`Study` or a registered name (or ``module:attribute``).
        preset: a preset name of the study (or of ``grid_file``), or a grid spec given directly.
        out: output folder (default ``./studies/NAME``): database, ``results.csv``, artifacts.
        executor: ``"inline"``, ``"pool"`` or ``"ray"``; ``workers`` bounds the runs in flight.
        ray_address: join this Ray cluster instead of starting a local instance.
        progress: progress bar over runs; ``None`` shows it only on a terminal.
        parquet: also write ``results.parquet`` and ``series.parquet`` (needs pyarrow).
        db: database path (default ``OUT/study.sqlite``); several studies may share one.
        seeds: ``N`` (seeds 0..N-1), a list of seeds, or its text (``"5"``, ``"3,4,5"``); default: the
            number the study declares for ``preset`` (:attr:`Study.seeds`).
    """
    t0 = time.perf_counter()
    study = get(study)
    preset_name = preset if isinstance(preset, str) else "custom"
    # Everything that can be wrong with the request is checked before the database is touched.
    configs = study.configs(preset, grid_file=grid_file)
    seed_list = study.seeds_for(preset_name, seeds)
    runs = [(run_key(c), s, with_seed(c, s)) for c in configs for s in seed_list]
    arity = study.run_arity()
    runner = make_executor(executor, workers, ray_address)
    if executor != "inline":
        _check_picklable(study, configs, executor)
    if parquet:
        require_parquet()
    out_dir, db_path = _paths(study, out, db)
    # Per-run folders and a database kept in the study folder are written there too: no link may
    # lead them outside it (a database elsewhere is asked for with db=, not smuggled in as a link).
    inside = (*EXPORTS, "runs", *([db_path.name] if db_path.parent == out_dir else []))
    check_folder(out_dir, whole=False, entries=inside, what="study folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    job = Job(study=study.name, run=study.run, arity=arity, loss_keys=study.loss_keys, out=str(out_dir.resolve()))

    from ..progress import progress_bar  # tqdm: only when running, not for --status

    with Store(db_path) as store:
        # Stored in declared field order (the key hashes the sorted form), so tables list fields as declared.
        store.add_runs(study.name, preset_name,
                       [(k, s, json.dumps(config_dict(c), allow_nan=True)) for k, s, c in runs])
        wanted = [(k, s) for k, s, _ in runs]
        before = {(r["run_key"], r["seed"]): r["status"] for r in store.runs(study.name, wanted)}
        todo = [Pending(k, c, s) for k, s, c in runs if before[(k, s)] not in FINISHED]
        skipped = len(runs) - len(todo)
        executed = busy = 0
        claimed: set[tuple[str, int]] = set()

        with progress_bar(total=len(todo), desc=f"study {study.name}", enabled=progress, unit="run") as bar:
            def claim(p: Pending) -> Task | None:
                nonlocal busy, skipped
                attempt = store.claim(study.name, p.run_key, p.seed)
                if attempt is None:
                    if store.status_of(study.name, p.run_key, p.seed) in FINISHED:  # finished meanwhile elsewhere
                        skipped += 1
                    else:
                        busy += 1
                    bar.update(1)
                    return None
                claimed.add((p.run_key, p.seed))
                return Task(p.run_key, p.config, attempt, p.seed)

            try:
                for outcome in runner.execute(job, todo, claim):
                    store.finish(study.name, outcome.run_key, outcome.status, seed=outcome.seed,
                                 record=outcome.record, series=outcome.series, artifacts=outcome.artifacts,
                                 error=outcome.error, seconds=outcome.seconds, worker=outcome.worker)
                    claimed.discard((outcome.run_key, outcome.seed))
                    executed += 1
                    export(store, study.name, out_dir)
                    bar.update(1)
                    bar.set_postfix_str(outcome.status)
            finally:
                if claimed:  # interrupted (Ctrl-C, an error in the driver): hand the runs back as pending
                    try:
                        store.release(study.name, claimed)
                    except Exception:
                        pass  # they stay 'running' with this pid, which the next invocation reclaims
        export(store, study.name, out_dir, parquet=parquet, artifacts=True)
        final = store.runs(study.name, wanted)  # exactly this grid's runs
        counts = {s: sum(r["status"] == s for r in final) for s in STATUSES}
        failures = [(f"{r['run_key']} seed {r['seed']}", _last_line(r["error"])) for r in final
                    if r["status"] == "failed"]
    return StudySummary(study=study.name, preset=preset_name, out=out_dir, db=db_path, total=len(runs),
                        counts=counts, executed=executed, skipped=skipped, busy=busy,
                        seconds=time.perf_counter() - t0, failures=failures, seeds=seed_list)


# -- status --------------------------------------------------------------------------------------
@dataclass
class StudyStatus:
    """Counts by status (all runs of the study in the database, per preset and per seed) and one row per run."""

    study: str
    db: Path
    counts: dict[str, int]
    presets: dict[str, dict[str, int]]
    runs: pd.DataFrame
    seeds: dict[int, dict[str, int]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __str__(self) -> str:
        if not self.total:
            return f"study {self.study!r}: no runs recorded in {self.db}"

        def fmt(c: Mapping[str, int]) -> str:
            n = sum(c.values())
            fin = sum(c[s] for s in FINISHED)
            rest = ", ".join(f"{c[s]} {s}" for s in STATUSES if c[s])
            return f"{fin}/{n} finished ({rest})"

        lines = [f"study {self.study!r} in {self.db}: {fmt(self.counts)}"]
        lines += [f"  preset {name}: {fmt(c)}" for name, c in self.presets.items()]
        lines += [f"  seed {seed}: {fmt(c)}" for seed, c in self.seeds.items()]
        bad = self.runs[self.runs["status"].isin(["failed", "running"])]
        for _, r in bad.head(20).iterrows():
            what = r["error"] if r["status"] == "failed" else f"running on {r['host']} pid {r['pid']}"
            lines.append(f"  {r['status']:<8} {r['run_key']} seed {r['seed']}  attempts {r['attempts']}  {what}")
        return "\n".join(lines)


def status(study: str | Study, out: str | Path | None = None, *, db: str | Path | None = None) -> StudyStatus:
    """What the database says about ``study`` (nothing is created if there is no database yet)."""
    study = get(study)
    _, db_path = _paths(study, out, db)
    columns = ["run_key", "seed", "status", "attempts", "seconds", "host", "pid", "worker", "error"]
    if not db_path.exists():
        return StudyStatus(study.name, db_path, {s: 0 for s in STATUSES}, {}, pd.DataFrame(columns=columns))
    with Store(db_path) as store:
        rows = store.runs(study.name)
        counts = store.counts(study.name)
        presets = {p: store.counts(study.name, p) for p in store.presets(study.name)}
    table = pd.DataFrame([{**r["config"], **{c: r.get(c) for c in columns}, "error": _last_line(r["error"])}
                          for r in rows], columns=None if rows else columns)
    if rows:  # run columns first, then the configuration's fields
        table = table[columns + [c for c in table.columns if c not in columns]]
    per_seed: dict[int, dict[str, int]] = {}
    for r in sorted(rows, key=lambda r: r["seed"]):
        per_seed.setdefault(int(r["seed"]), {s: 0 for s in STATUSES})[r["status"]] += 1
    return StudyStatus(study.name, db_path, counts, presets, table, per_seed)
