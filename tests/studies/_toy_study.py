"""A toy study for the runner tests: cheap, with every behaviour a run can have, and an execution log.

Each execution appends ``run_key attempt pid`` to ``config.log`` (O_APPEND writes of one short line are
atomic), so tests can count how often each configuration really ran, across processes.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hesslens.studies import Diverged, RunContext, Study, param

Mode = Literal["ok", "fail", "fail_once", "nan_loss", "flag", "raise_diverged", "exit", "bad_record", "check_csv"]


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
            os.write(fd, f"{ctx.run_key} {ctx.attempt} {os.getpid()}\n".encode())
        finally:
            os.close(fd)
    if config.sleep:
        time.sleep(config.sleep)
    mode = config.mode
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
    return record, series


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
