"""Where runs execute: in-process, in a local process pool, or on Ray. Only the runner writes the store.

Every executor gets the :class:`Job` (the study's run function, pickled once) and an iterator of
pending runs, asks the runner's ``claim`` callback for a :class:`Task` right before submitting one
(that is when the run is marked ``running`` in the database), and yields an :class:`Outcome` as each
run completes. Outcomes are plain data (a flat record, a list of series points, encoded artifacts,
an error text), so
they travel back from pool workers and Ray tasks, and the driver writes them to SQLite as they arrive.

* ``inline`` runs one configuration after another in this process.
* ``pool``: :class:`concurrent.futures.ProcessPoolExecutor` with the ``spawn`` start method (safe
  with torch, which ``fork`` is not once threads exist). At most ``workers`` runs are in flight, so
  ``running`` in the database means running. A worker that dies (``os._exit``, a segfault, the OOM
  killer) breaks the pool: the runs in flight are recorded ``failed`` and a fresh pool carries on.
  Workers die with the runner (:func:`~hesslens.studies.processes.die_with_parent`), even when it is
  killed with SIGKILL, instead of computing on, orphaned, with a model each in memory.
* ``ray``: remote tasks (1 CPU each) run the same function; results are collected with
  ``ray.wait`` as they complete. By default a local Ray instance is started (``num_cpus=workers`` or
  2, no dashboard) whose workers see the driver's ``sys.path``; ``address`` joins an existing
  cluster instead (``"auto"``, ``"ray://head:10001"``, ...), whose workers must be able to import
  the study's module.

Pool and Ray workers set ``torch.set_num_threads(1)``: with one run per core, intra-op threads would
only oversubscribe the machine.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import socket
import sys
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from ..errors import HesslensError, InvalidInputError
from .artifacts import Artifact, encode_all, merge
from .declaration import Diverged, RunContext
from .processes import die_with_parent

EXECUTORS = ("inline", "pool", "ray")
Scalar = (bool, int, float, str, type(None))


@dataclass(frozen=True)
class Job:
    """What every worker needs to run any configuration of a study."""

    study: str
    run: Callable[..., Any]
    arity: int
    loss_keys: tuple[str, ...] | None
    out: str


@dataclass(frozen=True)
class Pending:
    """A run to do: a configuration (its key) with one seed; ``config.seed`` is already filled, if declared."""

    run_key: str
    config: Any
    seed: int = 0


@dataclass(frozen=True)
class Task:
    run_key: str
    config: Any
    attempt: int
    seed: int = 0


@dataclass
class Outcome:
    run_key: str
    status: str  # "done" | "diverged" | "failed"
    record: dict[str, Any] | None = None
    series: list[tuple[float, str, float]] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    worker: str = ""
    seed: int = 0
    artifacts: list[Artifact] = field(default_factory=list)


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# -- normalising what a run function returns ---------------------------------------------------
def normalize_record(record: Any) -> dict[str, Any]:
    """A flat ``{str: bool|int|float|str|None}`` copy of ``record`` (numpy/torch scalars unwrapped)."""
    if not isinstance(record, Mapping):
        raise InvalidInputError(f"a run must return a dict record (or (record, series)), got {type(record).__name__}")
    out: dict[str, Any] = {}
    for key, value in record.items():
        if not isinstance(key, str):
            raise InvalidInputError(f"record keys must be strings, got {key!r}")
        if not isinstance(value, Scalar) and hasattr(value, "item"):
            try:
                value = value.item()  # numpy scalar, 0-d array, one-element tensor
            except (ValueError, RuntimeError):
                pass
        if not isinstance(value, Scalar):
            raise InvalidInputError(f"record entry {key!r} is a {type(value).__name__}; records are flat: "
                                    "numbers, strings, booleans or None (store sequences as series)")
        out[key] = value
    return out


def normalize_series(series: Any) -> list[tuple[float, str, float]]:
    """``(step, key, value)`` points from a list of triples, a mapping key → [(step, value)], or a
    DataFrame (long: columns step/key/value; wide: a ``step`` column and one column per key)."""
    if series is None:
        return []
    points: list[tuple[Any, Any, Any]] = []
    if hasattr(series, "columns") and hasattr(series, "itertuples"):  # a pandas DataFrame
        cols = list(series.columns)
        if {"step", "key", "value"} <= set(cols):
            points = list(series[["step", "key", "value"]].itertuples(index=False, name=None))
        elif "step" in cols:
            for col in cols:
                if col != "step":
                    points.extend((s, col, v) for s, v in zip(series["step"], series[col]))
        else:
            raise InvalidInputError(f"a series DataFrame needs a 'step' column (and key/value, or one column "
                                    f"per key), got columns {cols}")
    elif isinstance(series, Mapping):
        for key, pairs in series.items():
            points.extend((s, key, v) for s, v in pairs)
    else:
        for item in series:
            if not (isinstance(item, (tuple, list)) and len(item) == 3):
                raise InvalidInputError(f"series items must be (step, key, value) triples, got {item!r}")
            points.append(tuple(item))
    out = []
    for step, key, value in points:
        if hasattr(step, "item"):
            step = step.item()
        if isinstance(step, bool) or not isinstance(step, (int, float)):
            raise InvalidInputError(f"series step must be a number, got {step!r} (key {key!r})")
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise InvalidInputError(f"series value for {key!r} at step {step} is not a number: {value!r}") from None
        out.append((step, str(key), value))
    return out


def split_result(result: Any) -> tuple[dict[str, Any], list[tuple[float, str, float]], list[Artifact]]:
    """A run's return value as (record, series, artifacts): a record, ``(record, series)`` or
    ``(record, series, {name: array | DataFrame | dict})``."""
    if isinstance(result, tuple) and len(result) in (2, 3) and isinstance(result[0], Mapping):
        artifacts = encode_all(result[2]) if len(result) == 3 else []
        return normalize_record(result[0]), normalize_series(result[1]), artifacts
    return normalize_record(result), [], []


def is_diverged(record: Mapping[str, Any], loss_keys: tuple[str, ...] | None) -> bool:
    """True if ``record['diverged']`` is truthy or a loss entry is NaN/±inf."""
    if record.get("diverged"):
        return True
    keys = loss_keys if loss_keys is not None else [k for k in record if "loss" in k.lower()]
    for k in keys:
        v = record.get(k)
        if isinstance(v, float) and not math.isfinite(v):
            return True
    return False


def execute_task(job: Job, task: Task) -> Outcome:
    """Run one configuration; never raises for an ordinary exception (it becomes a ``failed`` outcome)."""
    t0 = time.perf_counter()
    ctx = RunContext(study=job.study, run_key=task.run_key, attempt=task.attempt, out=Path(job.out), seed=task.seed)
    try:
        result = job.run(task.config) if job.arity == 1 else job.run(task.config, ctx)
        record, series, returned = split_result(result)
        artifacts = merge(ctx.saved_artifacts(), returned)
        status = "diverged" if is_diverged(record, job.loss_keys) else "done"
        error = None
    except Diverged as exc:
        try:
            record = normalize_record(exc.record)
        except InvalidInputError:
            record = {}
        record.setdefault("diverged", True)
        # What the run saved before it diverged (e.g. the history up to the blow-up) is kept.
        status, series, error, artifacts = "diverged", [], str(exc), ctx.saved_artifacts()
    except Exception:
        return Outcome(task.run_key, "failed", error=traceback.format_exc(), seconds=time.perf_counter() - t0,
                       worker=_worker_name(), seed=task.seed)
    return Outcome(task.run_key, status, record=record, series=series, error=error,
                   seconds=time.perf_counter() - t0, worker=_worker_name(), seed=task.seed, artifacts=artifacts)


def failed_outcome(task: Task, exc: BaseException, note: str = "") -> Outcome:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return Outcome(task.run_key, "failed", error=(note + "\n" if note else "") + text, seed=task.seed)


def _single_thread() -> None:
    try:
        import torch

        torch.set_num_threads(1)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # only settable before inter-op work started; harmless if too late
            pass
    except ImportError:  # a study that does not use torch
        pass


def _pool_worker_init(parent: int) -> None:
    die_with_parent(parent)
    _single_thread()


Claim = Callable[[Pending], "Task | None"]


# -- executors -----------------------------------------------------------------------------------
class InlineExecutor:
    name = "inline"

    def execute(self, job: Job, pending: Iterable[Pending], claim: Claim) -> Iterator[Outcome]:
        for p in pending:
            task = claim(p)
            if task is not None:
                yield execute_task(job, task)


class PoolExecutor:
    name = "pool"

    def __init__(self, workers: int | None = None):
        self.workers = workers or os.cpu_count() or 1

    def _pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_pool_worker_init, initargs=(os.getpid(),))

    def execute(self, job: Job, pending: Iterable[Pending], claim: Claim) -> Iterator[Outcome]:
        todo = iter(pending)
        pool = self._pool()
        inflight: dict[Future, Task] = {}
        exhausted = False
        try:
            while True:
                while not exhausted and len(inflight) < self.workers:
                    p = next(todo, None)
                    if p is None:
                        exhausted = True
                        break
                    task = claim(p)
                    if task is not None:
                        inflight[pool.submit(execute_task, job, task)] = task
                if not inflight:
                    break
                done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
                broken = False
                for fut in done:
                    task = inflight.pop(fut)
                    try:
                        yield fut.result()
                    except BrokenProcessPool as exc:
                        broken = True
                        yield failed_outcome(task, exc, "a pool worker process died while this run was in flight "
                                                        "(this run or another one in the pool exited, crashed or "
                                                        "was killed)")
                    except Exception as exc:  # e.g. the config or result could not be pickled
                        yield failed_outcome(task, exc)
                if broken:
                    # Every other run in flight dies with the pool; record them and start a fresh pool.
                    for fut in wait(list(inflight)).done:
                        task = inflight.pop(fut)
                        try:
                            yield fut.result()
                        except BaseException as exc:
                            yield failed_outcome(task, exc, "a pool worker process died while this run was in "
                                                            "flight (this run or another one in the pool exited, "
                                                            "crashed or was killed)")
                    pool.shutdown(wait=True, cancel_futures=True)
                    pool = self._pool()
        finally:
            # Normal end: nothing in flight. Interrupted: do not wait for runs the database calls unfinished.
            pool.shutdown(wait=not inflight, cancel_futures=True)


def _ray_entry(job: Job, task: Task) -> Outcome:
    _single_thread()
    return execute_task(job, task)


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise HesslensError("--executor ray needs Ray: pip install 'ray>=2.9' (or pip install 'hesslens[ray]')") from None
    return ray


class RayExecutor:
    name = "ray"

    def __init__(self, workers: int | None = None, address: str | None = None,
                 init_kwargs: Mapping[str, Any] | None = None):
        self.workers = workers
        self.address = address
        self.init_kwargs = dict(init_kwargs or {})

    def _init(self, ray: Any) -> bool:
        """Start or join Ray unless already initialised; True if this call started it."""
        if ray.is_initialized():
            return False
        kwargs: dict[str, Any] = {"include_dashboard": False, "ignore_reinit_error": True, "log_to_driver": True}
        if self.address:
            kwargs["address"] = self.address
        else:
            # A private local instance whose workers import what this process can (tests, scripts).
            path = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
            kwargs.update(address="local", num_cpus=self.workers or 2,
                          runtime_env={"env_vars": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"}})
        kwargs.update(self.init_kwargs)
        try:
            ray.init(**kwargs)
        except ConnectionError as err:
            if not self.address:
                raise
            # Ray >= 2.59 turns token authentication on for `ray start --head` where a token file exists,
            # and a driver joining by address does not send it unless told to: the commonest cause here.
            raise HesslensError(
                f"could not join the Ray cluster at {self.address} ({err}). If the cluster uses token "
                "authentication (Ray 2.59 and later turn it on for `ray start --head`), set RAY_AUTH_MODE=token "
                "here, with the cluster's token in ~/.ray/auth_token or RAY_AUTH_TOKEN (`ray get-auth-token` "
                "on the head prints it)") from err
        return True

    def execute(self, job: Job, pending: Iterable[Pending], claim: Claim) -> Iterator[Outcome]:
        ray = import_ray()
        started = self._init(ray)
        inflight: dict[Any, Task] = {}
        try:
            limit = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
            remote = ray.remote(num_cpus=1, max_retries=0)(_ray_entry)
            job_ref = ray.put(job)
            todo = iter(pending)
            exhausted = False
            while True:
                while not exhausted and len(inflight) < limit:
                    p = next(todo, None)
                    if p is None:
                        exhausted = True
                        break
                    task = claim(p)
                    if task is not None:
                        inflight[remote.remote(job_ref, task)] = task
                if not inflight:
                    break
                ready, _ = ray.wait(list(inflight), num_returns=1)
                for ref in ready:
                    task = inflight.pop(ref)
                    try:
                        yield ray.get(ref)
                    except Exception as exc:  # the worker died, or the task could not be (de)serialised
                        yield failed_outcome(task, exc, "the Ray task failed outside the run function")
        finally:
            for ref in inflight:
                try:
                    ray.cancel(ref, force=True)
                except Exception:
                    pass
            if started:
                ray.shutdown()


def make_executor(name: str, workers: int | None = None, ray_address: str | None = None) -> Any:
    if name not in EXECUTORS:
        raise InvalidInputError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise InvalidInputError(f"workers must be a positive integer, got {workers!r}")
    if workers is not None and name == "inline":
        raise InvalidInputError("workers applies to the pool and ray executors; the inline executor runs one "
                                "configuration at a time (did you mean executor='pool'?)")
    if ray_address is not None and name != "ray":
        raise InvalidInputError(f"ray_address applies to the ray executor, not {name!r}")
    if name == "inline":
        return InlineExecutor()
    if name == "pool":
        return PoolExecutor(workers)
    import_ray()  # fail before anything runs if Ray is missing
    return RayExecutor(workers, ray_address)
