"""Cost per product in ONE process, interleaved: hesslens against the kept-graph peers on the same model.

The full run (``benchmarks.run``) times each library in a process of its own, a median of a few calls.
Where hesslens's chosen engine is ``double_backward+loop`` its product is the very autograd call that
PyHessian and the PyHessian-style loop make (one backward pass through a kept gradient graph), so a
difference between those rows is between processes (allocator state, the machine's moment) rather
than between libraries. Here one fresh process per model sets up hesslens (the engine chosen as in the
full run, for 1,000 products), PyHessian and the PyHessian-style loop side by side, then runs
``--rounds`` rounds in which each multiplies the same seeded vector once, in an order that rotates from
round to round; hesslens takes the columns in the model's dtype, as the peers do (and as the full run's
product row and its own default Lanczos basis pass them), and also multiplies ten columns at once (its
time divided by ten) and one float64 column (what a float64 basis passes). Printed per
model: the median seconds per product of each, and the median over rounds of the per-round ratio
(fastest peer of that round / hesslens) with its interquartile range.

Run: ``.venv/bin/python -m benchmarks.product_parity [--models transformer,gpt,resnet18] [--rounds 9]``.
Prints a Markdown table. PyHessian is left out where it is not installed.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from . import compile_sources, per_model_processes, zoo
from .peers import LIBRARIES


def measure(model: str, rounds: int) -> dict:
    """Per-round seconds per product of each contender on one zoo model (this process only)."""
    torch.manual_seed(0)
    case = zoo.build(model)
    libs = {}
    for key in ("hesslens", "pyhessian", "pyhessian_style"):
        cls = LIBRARIES[key]
        if cls.unavailable() is None:
            libs[key] = cls()
            libs[key].setup(case)
    n = case.num_params
    v = torch.randn(n, 10, generator=torch.Generator().manual_seed(123))
    calls = {key: (lambda lib=lib: lib.product(v[:, :1])) for key, lib in libs.items()}
    calls["hesslens, 10 columns"] = lambda: libs["hesslens"].product(v)
    # a float64 column in and out (what a float64 Lanczos basis passes)
    calls["hesslens, float64 columns"] = lambda: libs["hesslens"].op.torch_matmat(v[:, :1].double())
    width = {"hesslens, 10 columns": 10}
    for call in calls.values():
        call()  # warm-up (allocations, kernel selection)
    names = list(calls)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            calls[name]()
            seconds[name].append((time.perf_counter() - t0) / width.get(name, 1))
    return {"engine": libs["hesslens"].op.engine, "seconds": seconds}


def table(rows: dict[str, dict]) -> str:
    def ms(x: float) -> str:
        return f"{1e3 * x:,.1f} ms"

    lines = ["| model | hesslens engine | hesslens, 1 column | hesslens, per column of 10 | hesslens, 1 float64 column | "
             "PyHessian | PyHessian-style loop | fastest peer / hesslens, 1 column: median over rounds (IQR) | "
             "the same, float64 column |",
             "|---|---|---|---|---|---|---|---|---|"]
    for model, r in rows.items():
        s = {k: np.asarray(v) for k, v in r["seconds"].items()}
        peers = [s[k] for k in ("pyhessian", "pyhessian_style") if k in s]
        ratios = []
        for ours in ("hesslens", "hesslens, float64 columns"):
            q1, med, q3 = np.percentile(np.min(peers, axis=0) / s[ours], [25, 50, 75])
            ratios.append(f"{med:.2f}× ({q1:.2f}–{q3:.2f})")
        cell = {k: ms(float(np.median(v))) for k, v in s.items()}
        lines.append(f"| {model} | {r['engine']} | {cell['hesslens']} | {cell['hesslens, 10 columns']} | "
                     f"{cell['hesslens, float64 columns']} | {cell.get('pyhessian', 'not installed')} | "
                     f"{cell['pyhessian_style']} | {ratios[0]} | {ratios[1]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="transformer,gpt,resnet18")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the child: measure one model, print JSON
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.one:
        print(json.dumps(measure(args.one, args.rounds)))
        return
    compile_sources()
    rows = per_model_processes("benchmarks.product_parity", args.models, "--rounds", str(args.rounds))
    print(f"Command: `.venv/bin/python -m benchmarks.product_parity --models {args.models} --rounds {args.rounds}`\n")
    print(table(rows))


if __name__ == "__main__":
    main()
