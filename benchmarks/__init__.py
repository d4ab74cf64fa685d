"""hesslens benchmarks: the zoo of models and side-by-side runs against the peer libraries.

Run ``python -m benchmarks.run --help``. The environment variable ``HESSLENS_BENCH_HIDE`` (a
comma-separated list of module names) makes those modules unimportable in the benchmark
processes, to check that everything works on a machine without the optional ``bench`` extra.
"""

import os
import sys

for _name in filter(None, os.environ.get("HESSLENS_BENCH_HIDE", "").split(",")):
    sys.modules[_name.strip()] = None  # type: ignore[assignment]  # import now raises ImportError


def compile_sources() -> None:
    """Write the bytecode of hesslens and of the benchmarks before fresh processes are timed, as pip
    does for an installed package (the peers have theirs). An editable install leaves it to the first
    import, which never writes it where ``PYTHONDONTWRITEBYTECODE`` is set: every measured process
    would then compile hesslens's sources again (about 0.1 s), a cost no installed user pays."""
    import compileall
    from pathlib import Path

    import hesslens

    for folder in (Path(hesslens.__file__).parent, Path(__file__).parent):
        compileall.compile_dir(str(folder), quiet=1)


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`): the
    ratios between libraries move with it (two runs on an Intel and an AMD 2-core machine differ)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def per_model_processes(module: str, models: str, *args: str) -> dict:
    """``python -m <module> --one <model> <args…>`` in a fresh process for each of the comma-separated
    ``models`` (its memory and allocator state then are that model's alone); each child prints its
    result as JSON on its last line. Returns {model: result}."""
    import json
    import subprocess

    rows = {}
    for model in models.split(","):
        done = subprocess.run([sys.executable, "-m", module, "--one", model, *args],
                              capture_output=True, text=True, check=True)
        rows[model] = json.loads(done.stdout.strip().splitlines()[-1])
    return rows
