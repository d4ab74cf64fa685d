"""End to end: one job per fresh process, set-up included — what a script or a CLI user waits for.

    .venv/bin/python -m benchmarks.end_to_end --wait-idle 1.5            # MLP and CNN, 3 runs each
    .venv/bin/python -m benchmarks.end_to_end --quick                    # the smoke MLP, one run: a check

For each model of the zoo (MLP, CNN; :mod:`benchmarks.zoo`), each job and each library, a fresh Python
process imports torch, builds the model and data, imports the library, sets it up and runs the job once:

* ``slq``: the spectral density at the main benchmark's settings (:data:`benchmarks.run.PRESETS`, full:
  80 steps × 10 probes on both), through each library's own SLQ (as in :mod:`benchmarks.peers`);
  PyHessian's ``density()`` fails on current PyTorch, so our PyHessian-style loop stands in for it;
* ``lambda_max``: one λ_max, each library at the loosest setting that reached 1e-4 relative accuracy in
  the main benchmark (``benchmarks/results/full.json``; the setting is chosen knowing the answer, for every
  library alike), hesslens with its defaults (``HessianOperator(model, loss, data)``, no hint of how
  many products will follow).

The parent times each process from outside (interpreter start-up included) and the process reports
its parts (and, for hesslens, the engine report: which engine the choice took in that run): ``build`` (importing torch and building the model and data — the same for every library,
the MLP's includes its 150 training steps), ``import`` (the library), ``setup`` and the job. Printed
per (model, job): the median over ``--runs`` of the whole process and of the library's own part
(import + set-up + job), interleaved across libraries so that a change of load hits all alike, and
the ratios fastest peer / hesslens with ✔ where the targets of issue 13 are reached: SLQ at least 2× the
fastest peer, λ_max ahead of every peer (> 1×) — on the library's part, the whole process beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import compile_sources, cpu_model
from .run import PRESETS, _fmt_s, wait_until_idle

MODELS = ("mlp", "cnn")
JOBS = {"slq": ("hesslens", "eigenthings", "curvlinops", "pyhessian_style"),
        "lambda_max": ("hesslens", "eigenthings", "curvlinops", "pyhessian")}
TARGETS = {"slq": 2.0, "lambda_max": 1.0}
RESULTS = Path(__file__).with_name("results")


def lambda_settings(path: Path = RESULTS / "full.json") -> dict[str, dict[str, Any]]:
    """model → library → its λ_max setting that reached the main benchmark's tolerance."""
    if not path.exists():
        return {}
    results = json.loads(path.read_text())["results"]
    return {m: {r["library"]: r["lambda_max"]["setting"] for r in rows if (r.get("lambda_max") or {}).get("reached")}
            for m, rows in results.items()}


def one(library: str, model: str, job: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The job in this (fresh) process; its parts' seconds."""
    t0 = time.perf_counter()
    import torch

    from . import zoo
    from .peers import LIBRARIES

    torch.manual_seed(0)
    case = zoo.build(model, **settings.get("model_kwargs", {}))
    t1 = time.perf_counter()
    lib = LIBRARIES[library]()
    lib.choose_at_setup = False  # hesslens as a script uses it: the engine chosen for the job's own products
    if lib.module:
        __import__(lib.module)
    t2 = time.perf_counter()
    lib.setup(case)
    t3 = time.perf_counter()
    if job == "slq":
        nodes, _ = lib.slq(settings["steps"], settings["probes"], seed=0)
        value = None if nodes is None else float(nodes.max())
    else:
        value, _ = lib.lambda_max(settings["lambda_setting"])
    t4 = time.perf_counter()
    out = {"build": t1 - t0, "import": t2 - t1, "setup": t3 - t2, "job": t4 - t3, "value": value}
    report = getattr(getattr(lib, "op", None), "engine_report", None)
    if library == "hesslens" and report is not None:  # the choice moves with load: which way this run went
        out["engine"] = report.to_dict()
    return out


def run_one(library: str, model: str, job: str, settings: dict[str, Any]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.end_to_end", "--one", library, model, job, json.dumps(settings)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1],
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1][:200], "process": wall}
    out = json.loads(lines[-1][len("RESULT "):])
    out["process"] = wall
    return out


def table(results: dict[str, dict[str, dict[str, list[dict[str, Any]]]]]) -> str:
    from .peers import LIBRARIES

    lines = ["| model | job | library | whole process (median) | of which build | library: import + set-up + job | "
             "fastest peer / hesslens: library part (target) | whole process |", "|---|---|---|---|---|---|---|---|"]
    for model, jobs in results.items():
        for job, libs in jobs.items():
            med = {}
            for lib, runs in libs.items():
                ok = [r for r in runs if "error" not in r]
                if ok:
                    med[lib] = {k: statistics.median(r[k] for r in ok) for k in ("process", "build")}
                    med[lib]["own"] = statistics.median(r["import"] + r["setup"] + r["job"] for r in ok)
            peers = [lib for lib in med if lib != "hesslens"]
            for lib, runs in libs.items():
                label = LIBRARIES[lib].label
                if lib not in med:
                    lines.append(f"| {model} | {job} | {label} | fails: {runs[0].get('error', '?')} | | | | |")
                    continue
                m, ratio = med[lib], ""
                if lib == "hesslens" and peers:
                    own = min(med[p]["own"] for p in peers) / m["own"]
                    whole = min(med[p]["process"] for p in peers) / m["process"]
                    mark = "✔" if own >= TARGETS[job] else "✘"
                    ratio = f"{own:.2f}× (≥ {TARGETS[job]:g}× {mark}) | {whole:.2f}×"
                else:
                    ratio = " | "
                lines.append(f"| {model} | {job} | {label} | {_fmt_s(m['process'])} | {_fmt_s(m['build'])} | "
                             f"{_fmt_s(m['own'])} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", nargs=4, metavar=("LIBRARY", "MODEL", "JOB", "SETTINGS"), help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny settings, one run: checks that everything works")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--wait-idle", type=float, default=None, metavar="LOAD")
    parser.add_argument("--out", default=None, help="JSON output (default benchmarks/results/end-to-end[-quick].json)")
    args = parser.parse_args(argv)
    if args.one:
        library, model, job, settings = args.one
        print("RESULT " + json.dumps(one(library, model, job, json.loads(settings))))
        return 0
    compile_sources()
    preset = "smoke" if args.quick else "full"
    runs = 1 if args.quick else args.runs
    models = [m for m in args.models.split(",") if m] if not args.quick else ["mlp"]
    for m in models:
        if m not in PRESETS[preset]:
            parser.error(f"model {m!r} has no settings in preset {preset!r}")
    from .peers import LIBRARIES

    missing = {lib for libs in JOBS.values() for lib in libs if LIBRARIES[lib].unavailable()}
    for lib in sorted(missing):
        print(f"# {LIBRARIES[lib].label}: {LIBRARIES[lib].unavailable()}; left out", file=sys.stderr)
    lam = lambda_settings()
    started = time.time()
    results: dict[str, Any] = {}
    for model in models:
        base = PRESETS[preset][model]
        for job, every in JOBS.items():
            libs = [lib for lib in every if lib not in missing]
            cell = results.setdefault(model, {}).setdefault(job, {lib: [] for lib in libs})
            for _ in range(runs):
                for lib in libs:  # interleaved: a change of load hits every library alike
                    settings = {"steps": base["steps"], "probes": base["probes"],
                                "model_kwargs": base.get("model_kwargs", {})}
                    if job == "lambda_max":
                        fallback = {"hesslens": 1e-4, "eigenthings": 40, "curvlinops": 1e-4, "pyhessian": 1e-5}[lib]
                        settings["lambda_setting"] = lam.get(model, {}).get(lib, fallback)
                    if args.wait_idle is not None:
                        wait_until_idle(args.wait_idle, 600)
                    r = run_one(lib, model, job, settings)
                    cell[lib].append(r)
                    print(f"# {model} {job} {lib}: {_fmt_s(r['process'])}"
                          f"{' ' + r['error'] if 'error' in r else ''}", file=sys.stderr)
    out = Path(args.out) if args.out else RESULTS / f"end-to-end{'-quick' if args.quick else ''}.json"
    text = table(results)
    cpu = cpu_model()
    header = (f"Command: `.venv/bin/python -m benchmarks.end_to_end {' '.join(argv if argv is not None else sys.argv[1:])}`"
              f"\nMachine: {cpu}, {os.cpu_count()} CPUs. Runs per cell: {runs}; total wall time {time.time() - started:.0f} s; "
              f"load average at the end {os.getloadavg()[0]:.2f}.")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"preset": preset, "runs": runs, "cpu": cpu, "results": results}, indent=1))
    out.with_suffix(".md").write_text(f"# End to end, one job per fresh process\n\n{header}\n\n{text}\n")
    print(header + "\n\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
