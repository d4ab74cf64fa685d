"""Start-up latency: ``import hesslens`` and ``hesslens study NAME --status``, each in fresh processes.

    .venv/bin/hesslens study sharpness --preset smoke --out /tmp/lean-smoke    # once, ~20 s
    .venv/bin/python -m benchmarks.startup --out /tmp/lean-smoke [--runs 10]

Every command is started ``--runs`` times after one warm-up run that is not counted (it fills the
file cache); each run is a whole process, interpreter start-up included. Printed per command: the
median, min and max of the wall time and of the CPU time (user + system of the finished child),
and the 1-minute load average before and after, since other work on the machine inflates wall
times (CPU times much less). Only the standard library is used.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from . import compile_sources


def commands(python: str, hesslens: str, out: str | None, study: str) -> dict[str, list[str]]:
    cmds = {
        "import hesslens": [python, "-c", "import hesslens"],
        "from hesslens import * (every public name)": [python, "-c", "from hesslens import *"],
        "hesslens --version": [hesslens, "--version"],
    }
    if out is not None:
        cmds[f"hesslens study {study} --status --out {out}"] = [hesslens, "study", study, "--status", "--out", out]
    return cmds


def time_once(cmd: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run of ``cmd`` (its output discarded; a failure raises)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="a study folder for --status (e.g. made by --preset smoke)")
    parser.add_argument("--study", default="sharpness")
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args(argv)
    bindir = Path(sys.executable).parent
    hesslens = str(bindir / "hesslens")
    if args.out is not None and not (Path(args.out) / "study.sqlite").exists():
        parser.error(f"{args.out}/study.sqlite does not exist: run `hesslens study {args.study} --preset smoke "
                     f"--out {args.out}` first")
    compile_sources()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start; {args.runs} runs after 1 warm-up")
    print(f"{'command':<60} {'wall s: median (min-max)':>26} {'cpu s: median (min-max)':>26}")
    for name, cmd in commands(sys.executable, hesslens, args.out, args.study).items():
        time_once(cmd)  # warm-up
        walls, cpus = zip(*(time_once(cmd) for _ in range(args.runs)))
        cell = lambda xs: f"{statistics.median(xs):.3f} ({min(xs):.3f}-{max(xs):.3f})"  # noqa: E731
        print(f"{name:<60} {cell(walls):>26} {cell(cpus):>26}")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
