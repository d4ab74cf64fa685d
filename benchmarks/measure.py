"""One (library, model) measurement, run in a fresh process by :mod:`benchmarks.run`.

    python -m benchmarks.measure --library hesslens --model mlp --settings '{"steps": 80, ...}'

Prints one JSON object on the last stdout line (after the marker ``RESULT``). A fresh process per
measurement makes the peak resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) that
of this library on this model alone; ``tracemalloc`` would not see torch's allocations.

Measured, in this order (every failure is recorded with its message and the rest goes on):

1. gradient time: median of several forward+backward passes over the analysis batch;
2. setup: the library's operator construction (hesslens: including its engine timing);
3. products: median wall time of H·V with 1 column and, where the library takes several at once,
   10 columns; reported per column and in gradient-equivalents (product time / gradient time);
4. SLQ: ``steps`` Lanczos steps × ``probes`` probes with the library's own SLQ;
5. λ_max: the library's eigen-solver swept over its accuracy setting (loosest first); the first
   setting whose value is within ``lambda_rtol`` (relative) of the reference λ_max counts, with
   its wall time and its number of products (hesslens also runs SciPy ``eigsh`` on its operator);
6. trace with ``trace_matvecs`` products;
7. trace to accuracy (with ``trace_rtol`` set): the library's trace estimator swept over a grid of
   product counts (``trace_grid``, else 6, 12, 24, … up to ``trace_max_matvecs``), ``trace_seeds``
   seeded runs at each (more at small counts, so that each count spends at least
   ``trace_level_matvecs`` products); the first count whose root-mean-square relative error against the reference
   trace is at most ``trace_rtol`` counts, with the mean wall time of one run there. The reference
   (``trace_ref``, else hesslens computes it: exact up to ``trace_exact_max_params`` parameters, a
   seeded Hutch++ run of ``trace_reference_matvecs`` products above) is passed on by run.py.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
import traceback
import warnings
from typing import Any, Callable

import numpy as np
import torch

from . import zoo
from .peers import LIBRARIES, Library, ScipyOnHesslens


class PhasePeaks:
    """Peak resident set size of each phase of a measurement: Linux's high-water mark ``VmHWM``, reset
    (``/proc/self/clear_refs``, value 5) at the start of each phase, so a phase's peak is what the process
    held during it: the library's state left by earlier phases (its operator, kept graphs) plus the
    phase's own work. None where the kernel offers neither file.

    The reset also resets ``getrusage``'s ``ru_maxrss`` (both read the same high-water mark), so the
    whole process's peak is :meth:`overall`: the largest of the peak before the first reset and every
    phase's."""

    def __init__(self) -> None:
        self.peaks: dict[str, float | None] = {}
        self._before = _rss_mb()
        self._reset()

    def overall(self) -> float:
        """The process's peak so far: before the first reset, in every phase, and now."""
        return max([self._before, _rss_mb(), *(p for p in self.peaks.values() if p is not None)])

    @staticmethod
    def _reset() -> None:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass

    @staticmethod
    def _hwm_mb() -> float | None:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024.0
        except OSError:
            return None
        return None

    def end(self, phase: str) -> None:
        self.peaks[phase] = self._hwm_mb()
        self._reset()


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _error(err: BaseException) -> str:
    return f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _median_product_seconds(lib: Library, n: int, k: int, repeats: int) -> float:
    gen = torch.Generator().manual_seed(123)
    v = torch.randn(n, k, generator=gen)
    lib.product(v)  # warm-up (allocations, kernel selection)
    times = [_timed(lambda: lib.product(v))[0] for _ in range(repeats)]
    return float(np.median(times))


def _sweep(lib: Library, reference: float, rtol: float, budget_seconds: float) -> dict[str, Any]:
    """Run the eigen-solver at ever tighter settings until it lands within rtol of the reference."""
    tried = []
    spent = 0.0
    for setting in lib.lambda_settings:
        try:
            seconds, (value, products) = _timed(lambda: lib.lambda_max(setting))
        except Exception as err:  # noqa: BLE001 - a failing setting is a result
            tried.append({"setting": setting, "error": _error(err)})
            break
        rel = abs(value - reference) / abs(reference)
        tried.append({"setting": setting, "value": value, "products": products, "seconds": seconds, "rel_error": rel})
        spent += seconds
        if rel <= rtol:
            return {"reached": True, "setting_name": lib.lambda_setting_name, "setting": setting, "value": value,
                    "products": products, "seconds": seconds, "rel_error": rel, "tried": tried,
                    "method": lib.lambda_method}
        if spent > budget_seconds:
            break
    return {"reached": False, "setting_name": lib.lambda_setting_name, "tried": tried, "method": lib.lambda_method}


def trace_grid(settings: dict[str, Any]) -> list[int]:
    """The product counts of the trace-to-accuracy sweep: ``trace_grid`` if given, else doubling from
    ``trace_grid_start`` (6: the least Hutch++ takes, a multiple of 3 as curvlinops requires) up to
    ``trace_max_matvecs``."""
    if settings.get("trace_grid"):
        return [int(m) for m in settings["trace_grid"]]
    m, cap, grid = int(settings.get("trace_grid_start", 6)), int(settings.get("trace_max_matvecs", 768)), []
    while m <= cap:
        grid.append(m)
        m *= 2
    return grid


def trace_seeds_at(m: int, seeds: int, level_matvecs: int = 0) -> int:
    """Seeded runs at m products: ``seeds``, or more where m is small, so that the runs at one count
    spend at least ``level_matvecs`` products (cheap there, and small counts have heavy-tailed errors
    that a few seeds miss, which would let a lucky small count pass)."""
    return max(seeds, -(-level_matvecs // m))


def _trace_sweep(lib: Library, reference: float, rtol: float, grid: list[int], seeds: int,
                 budget_seconds: float, level_matvecs: int = 0) -> dict[str, Any]:
    """Run the trace estimator at each product count m of ``grid`` with seeds 0, …, k − 1
    (k = :func:`trace_seeds_at`) until the root-mean-square relative error over the seeds is at most rtol.

    A count is skipped, and the sweep ends unreached, when its predicted time (the last count's time
    per run, scaled by the ratio of product counts, times its number of runs) would take the sweep
    past ``budget_seconds``.
    """
    tried: list[dict[str, Any]] = []
    spent = 0.0
    base = {"rtol": rtol, "seeds": seeds, "level_matvecs": level_matvecs, "method": lib.trace_method,
            "reference": reference}
    if not np.isfinite(reference) or reference == 0:
        return {"reached": False, "stopped": f"no relative error against a reference trace of {reference}",
                "tried": [], **base}
    for m in grid:
        runs = trace_seeds_at(m, seeds, level_matvecs)
        if tried and "seconds" in tried[-1]:
            last = tried[-1]
            if spent + runs * last["seconds"] * m / last["products"] > budget_seconds:
                return {"reached": False, "stopped": f"time budget ({budget_seconds:g} s)", "tried": tried, **base}
        values, times = [], []
        try:
            for seed in range(runs):
                seconds, value = _timed(lambda: lib.trace(m, seed=seed))
                values.append(float(value))
                times.append(seconds)
        except Exception as err:  # noqa: BLE001 - a failing count is a result
            tried.append({"products": m, "error": _error(err)})
            return {"reached": False, "stopped": "error", "tried": tried, **base}
        spent += sum(times)
        rel = [(v - reference) / abs(reference) for v in values]
        rms = float(np.sqrt(np.mean(np.square(rel))))
        entry = {"products": m, "seeds": runs, "rms_rel_error": rms, "seconds": float(np.mean(times)),
                 "values": values, "seconds_each": times}
        tried.append(entry)
        if rms <= rtol:
            return {"reached": True, "products": m, "rms_rel_error": rms, "seconds": entry["seconds"],
                    "tried": tried, **base}
    return {"reached": False, "stopped": "grid exhausted", "tried": tried, **base}


class LoadSampler:
    """Samples the 1-minute load average every few seconds in a daemon thread: a measurement
    taken while other processes compete for the cores is flagged by its maximum."""

    def __init__(self, interval: float = 2.0):
        self.samples = [os.getloadavg()[0]]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.samples.append(os.getloadavg()[0])

    def stop(self) -> float:
        self._stop.set()
        self.samples.append(os.getloadavg()[0])
        return max(self.samples)


def measure(library: str, model: str, settings: dict[str, Any]) -> dict[str, Any]:
    sampler = LoadSampler()
    try:
        out = _measure(library, model, settings)
    finally:
        load = sampler.stop()
    out["loadavg_max"] = load
    return out


def _measure(library: str, model: str, settings: dict[str, Any]) -> dict[str, Any]:
    torch.manual_seed(0)
    out: dict[str, Any] = {"library": library, "model": model, "settings": settings, "loadavg_start": os.getloadavg()}
    cls = LIBRARIES[library]
    out["label"], out["version"] = cls.label, cls.version()
    missing = cls.unavailable()
    if missing:
        out["unavailable"] = missing
        return out
    case = zoo.build(model, **settings.get("model_kwargs", {}))
    out.update(num_params=case.num_params, num_samples=case.num_samples, description=case.description,
               torch_version=torch.__version__, threads=torch.get_num_threads())
    out["grad_seconds"], _ = zoo.gradient_seconds(case, settings.get("grad_repeats", 7))
    grad = out["grad_seconds"]
    out["rss_before_setup_mb"] = _rss_mb()
    phases = out["phase_peak_rss_mb"] = {}
    peaks = PhasePeaks()

    lib = cls()
    try:
        out["setup_seconds"], _ = _timed(lambda: lib.setup(case))
    except Exception as err:  # noqa: BLE001
        out["setup_error"] = _error(err)
        out["traceback"] = traceback.format_exc()
        peaks.end("setup")
        phases.update(peaks.peaks)
        out["peak_rss_mb"] = peaks.overall()
        return out
    if library == "hesslens":
        op = lib.op
        out.update(engine=op.engine, engine_reason=op.engine_reason, engine_timings=op.engine_timings,
                   engine_choice_seconds=op.setup_seconds, max_columns=op.max_columns)

    peaks.end("setup")
    # -- the same Hessian? vᵀHv for one seeded v, compared across libraries by run.py ------------
    n = case.num_params
    try:
        v = torch.randn(n, 1, generator=torch.Generator().manual_seed(7))
        hv = lib.product(v).to(torch.float64)
        out["check"] = {"vHv": float(v.double().T @ hv), "norm_Hv": float(hv.norm())}
    except Exception as err:  # noqa: BLE001
        out["check"] = {"error": _error(err)}

    # -- products ------------------------------------------------------------------------------
    products: dict[str, Any] = {}
    for k in (1, 10):
        if k > lib.max_columns:
            continue
        try:
            per_col = _median_product_seconds(lib, n, k, settings.get("product_repeats", 5)) / k
            products[str(k)] = {"seconds_per_column": per_col, "grad_equivalents": per_col / grad}
        except Exception as err:  # noqa: BLE001
            products[str(k)] = {"error": _error(err)}
    out["products"] = products

    peaks.end("products")
    # -- SLQ -----------------------------------------------------------------------------------
    steps, probes = settings["steps"], settings["probes"]
    if settings.get("slq", True):
        kwargs = {"probe_batch": settings.get("probe_batch"), "boundaries": settings.get("boundaries")}
        before = (getattr(getattr(lib, "op", None), "product_seconds", None), getattr(getattr(lib, "op", None), "matvecs", None))
        # PyHessian's density() fails only after its first Lanczos run (torch.eig comes last), so
        # it is called with a few steps to record the failure without spending a full run.
        run_steps, run_probes = (3, 1) if library == "pyhessian" else (steps, probes)
        try:
            seconds, (nodes, weights) = _timed(lambda: lib.slq(run_steps, run_probes, seed=0, **kwargs))
            slq: dict[str, Any] = {"seconds": seconds, "steps": run_steps, "probes": run_probes, "note": lib.slq_note}
            if nodes is not None:
                slq["moment1"] = float((np.asarray(weights) * np.asarray(nodes)).sum(1).mean())
                live = np.asarray(nodes)[np.asarray(weights) > 0]
                slq["min_node"], slq["max_node"] = float(live.min()), float(live.max())
            if library == "hesslens":
                slq["product_seconds"] = op.product_seconds - before[0]
                slq["matvecs"] = op.matvecs - before[1]
                slq["probe_batch"] = settings.get("probe_batch")
        except Exception as err:  # noqa: BLE001
            slq = {"error": _error(err), "note": lib.slq_note, "steps": run_steps, "probes": run_probes}
        out["slq"] = slq

    peaks.end("slq")
    # -- λ_max ---------------------------------------------------------------------------------
    reference = settings.get("lambda_ref")
    rtol = settings.get("lambda_rtol", 1e-4)
    budget = settings.get("lambda_budget_seconds", 300.0)
    if library == "hesslens" and reference is None and settings.get("lambda", True):
        seconds, (reference, ref_products, ref_converged) = _timed(lambda: lib.reference_lambda(settings.get("lambda_ref_tol", 1e-9)))
        out["lambda_reference"] = {"value": reference, "products": ref_products, "converged": ref_converged,
                                   "seconds": seconds, "tol": settings.get("lambda_ref_tol", 1e-9)}
    if reference is not None and lib.lambda_settings and settings.get("lambda", True):
        if library == "pyhessian":
            lib.power_max_iter = settings.get("power_max_iter", 1000)
        out["lambda_max"] = _sweep(lib, reference, rtol, budget)
        if library == "hesslens":
            out["lambda_max_eigsh"] = _sweep(ScipyOnHesslens(lib), reference, rtol, budget)

    peaks.end("lambda_max")
    # -- trace ---------------------------------------------------------------------------------
    t = settings.get("trace_matvecs")
    if t and lib.trace_method:
        try:
            seconds, value = _timed(lambda: lib.trace(t))
            out["trace"] = {"seconds": seconds, "estimate": value, "matvecs": t, "method": lib.trace_method}
        except Exception as err:  # noqa: BLE001
            out["trace"] = {"error": _error(err), "method": lib.trace_method}

    peaks.end("trace")
    # -- trace at equal accuracy -----------------------------------------------------------------
    trace_rtol = settings.get("trace_rtol")
    trace_ref = settings.get("trace_ref")
    if trace_rtol and library == "hesslens" and trace_ref is None:
        try:
            seconds, ref = _timed(lambda: lib.reference_trace(
                settings.get("trace_exact_max_params", 12_000), settings.get("trace_reference_matvecs", 3000),
                settings.get("trace_reference_seed", 12345)))
            out["trace_reference"] = {**ref, "seconds": seconds}
            trace_ref = ref["value"]
        except Exception as err:  # noqa: BLE001
            out["trace_reference"] = {"error": _error(err)}
    if trace_rtol and trace_ref is not None and lib.trace_method:
        out["trace_accuracy"] = _trace_sweep(lib, trace_ref, trace_rtol, trace_grid(settings),
                                             settings.get("trace_seeds", 4), settings.get("trace_budget_seconds", 120.0),
                                             settings.get("trace_level_matvecs", 0))

    peaks.end("trace_accuracy")
    phases.update(peaks.peaks)
    out["peak_rss_mb"] = peaks.overall()
    out["loadavg_end"] = os.getloadavg()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--library", required=True, choices=sorted(LIBRARIES))
    parser.add_argument("--model", required=True, choices=sorted(zoo.BUILDERS))
    parser.add_argument("--settings", default="{}", help="JSON dict of settings")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    result = measure(args.library, args.model, json.loads(args.settings))
    sys.stdout.write("RESULT " + json.dumps(result, default=float) + "\n")


if __name__ == "__main__":
    main()
