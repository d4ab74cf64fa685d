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
6. trace with ``trace_matvecs`` products.
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

    lib = cls()
    try:
        out["setup_seconds"], _ = _timed(lambda: lib.setup(case))
    except Exception as err:  # noqa: BLE001
        out["setup_error"] = _error(err)
        out["traceback"] = traceback.format_exc()
        out["peak_rss_mb"] = _rss_mb()
        return out
    if library == "hesslens":
        op = lib.op
        out.update(engine=op.engine, engine_reason=op.engine_reason, engine_timings=op.engine_timings,
                   engine_choice_seconds=op.setup_seconds, max_columns=op.max_columns)

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

    # -- trace ---------------------------------------------------------------------------------
    t = settings.get("trace_matvecs")
    if t and lib.trace_method:
        try:
            seconds, value = _timed(lambda: lib.trace(t))
            out["trace"] = {"seconds": seconds, "estimate": value, "matvecs": t, "method": lib.trace_method}
        except Exception as err:  # noqa: BLE001
            out["trace"] = {"error": _error(err), "method": lib.trace_method}

    out["peak_rss_mb"] = _rss_mb()
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
