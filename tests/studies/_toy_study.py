"""A toy study for the runner tests: cheap, with every behaviour a run can have, and an execution log.

Each execution appends ``run attempt pid`` to ``config.log`` (O_APPEND writes of one short line are
atomic), so tests can count how often each run really ran, across processes; ``run`` is the run key,
followed by ``/seed`` for seeds other than 0.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hesslens.studies import Diverged, RunContext, Study, param

Mode = Literal["ok", "fail", "fail_once", "nan_loss", "flag", "raise_diverged", "exit", "bad_record", "check_csv",
               "artifacts", "artifacts_then_fail", "artifacts_then_exit", "interrupt_once", "bad_artifact"]


@dataclass(frozen=True)
class ToyConfig:
    x: float = param(0.0, ge=-100, le=100)
    seed: int = param(0, ge=0)
    mode: Mode = "ok"
    sleep: float = param(0.0, ge=0)
    log: str = ""
    tags: tuple[int, ...] = ()


def log_lines(path: str | Path) -> list[tuple[str, int, int]]:
    p = Path(path)
    if not p.exists():
        return []
    return [(k, int(a), int(pid)) for k, a, pid in (ln.split() for ln in p.read_text().splitlines() if ln.strip())]


def run_toy(config: ToyConfig, ctx: RunContext):
    if config.log:
        fd = os.open(config.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            run = ctx.run_key if ctx.seed == 0 else f"{ctx.run_key}/{ctx.seed}"
            os.write(fd, f"{run} {ctx.attempt} {os.getpid()}\n".encode())
        finally:
            os.close(fd)
    if config.sleep:
        time.sleep(config.sleep)
    mode = config.mode
    returned = None
    if mode.startswith("artifacts") or mode == "interrupt_once":
        returned = _save_artifacts(config, ctx)
        if mode == "artifacts_then_fail":
            raise RuntimeError("failed after saving artifacts")
        if mode == "artifacts_then_exit":
            os._exit(3)
        if mode == "interrupt_once" and ctx.attempt == 1:
            raise KeyboardInterrupt  # as Ctrl-C in the runner's own process (the inline executor)
    if mode == "bad_artifact":
        ctx.save_artifact("values", [1, 2, 3])
    if mode == "fail":
        raise RuntimeError(f"toy failure at x={config.x}")
    if mode == "fail_once" and ctx.attempt == 1:
        raise RuntimeError("first attempt fails")
    if mode == "exit":
        os._exit(3)
    if mode == "raise_diverged":
        raise Diverged("blew up at step 7", record={"step": 7})
    if mode == "bad_record":
        return {"values": [1, 2, 3]}
    import torch

    record = {"y": config.x ** 2 + config.seed, "loss": math.nan if mode == "nan_loss" else config.x ** 2,
              "pid": os.getpid(), "threads": torch.get_num_threads(), "attempt": ctx.attempt}
    if mode == "flag":
        record["diverged"] = True
    if mode == "check_csv":
        csv = ctx.out / "results.csv"
        record["csv_rows_seen"] = (len(csv.read_text().splitlines()) - 1) if csv.exists() else -1
    series = [(step, "loss", config.x ** 2 / (step + 1)) for step in range(3)]
    if returned is not None:
        return record, series, returned
    return record, series


def _save_artifacts(config: ToyConfig, ctx: RunContext) -> dict:
    """An array and a dict saved through ``ctx``, a DataFrame returned: each depends on x and the seed."""
    import numpy as np
    import pandas as pd

    ctx.save_artifact("density", np.linspace(0.0, config.x, 5) + ctx.seed)
    ctx.save_artifact("summary", {"x": config.x, "seed": ctx.seed, "nested": {"values": [1, 2]}, "nan": math.nan})
    table = pd.DataFrame({"layer": ["fc1", "fc2"], "lambda_max": [config.x, config.x + ctx.seed + 0.5],
                          "params": [10, 20], "frozen": [False, True]})
    return {"layers": table}


def toy_report(df, out):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 2))
    ax = fig.add_subplot()
    ax.plot(df["x"], df["y"], "o")
    return {"y against x": fig}


STUDY = Study(name="toy", config=ToyConfig, run=run_toy,
              presets={"smoke": {"x": [0.0, 1.0, 2.0]}, "full": {"x": [0.0, 1.0, 2.0, 3.0], "seed": [0, 1]}},
              description="Toy study of the test suite.")

REPORTED = Study(name="toy-reported", config=ToyConfig, run=run_toy, presets={"smoke": {"x": [1.0, 2.0, 3.0]}},
                 report=toy_report, description="Toy study with a report hook.")
