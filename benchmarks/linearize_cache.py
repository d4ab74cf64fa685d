"""What a linearisation holds, against the bytes one gradient saves: the basis of
``hesslens.operators.gradient_profile.LINEARIZE_CACHE_FACTOR``.

For each zoo model, in a fresh process of its own: a double-backward operator is built (``engine="double_backward"``),
then a linearisation of its batch (``LinearizeEngine``, one product of one column), which is then dropped,
the heap trimmed (glibc ``malloc_trim``, through ``hesslens.memory.release_freed_memory``), and a second linearisation built and multiplied the same way.
Printed per model: the gradient's saved bytes (``GradientProfile.saved_bytes``), the resident set
(``VmRSS``) and its high-water mark (``VmHWM``) after each step, and the linearisation's growth of the
high-water mark over the double-backward operator's as a multiple of the saved bytes, and the operator calls a
replay runs (with the in-place writes ``linearize_passes.write_out_of_place`` made out of place). The rows after the
drop say whether the process gives the memory back (current RSS) and whether a second build reuses it
(no new high-water mark).

Run: ``.venv/bin/python -m benchmarks.linearize_cache [--models cnn,transformer,resnet18,gpt]``. Linux only
(``/proc/self/status``). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import gc
import json

import torch

import hesslens as hl
from hesslens.memory import release_freed_memory
from hesslens.operators.engines import LinearizeEngine

from . import compile_sources, per_model_processes, zoo


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise OSError(f"{field} not in /proc/self/status")


def measure(model: str) -> dict[str, float]:
    """RSS and its high-water mark (MB) after each step, and the saved bytes, for one zoo model."""
    torch.manual_seed(0)
    case = zoo.build(model)
    op = hl.HessianOperator(case.model, case.loss_fn, case.batch, engine="double_backward")
    engine = op._engine
    out = {"saved_mb": op._gradient_profile.saved_bytes / 2**20}

    def step(name: str) -> None:
        out[f"{name}_rss"], out[f"{name}_hwm"] = _status_mb("VmRSS"), _status_mb("VmHWM")

    step("double_backward")
    tangents = tuple(torch.randn(1, *p.shape, generator=torch.Generator().manual_seed(0)) for p in engine.params)
    for build in ("first", "second"):
        lin = LinearizeEngine(engine.loss, engine.params, engine.batches, engine.weights, use_vmap=False)
        lin.hvp(tangents)
        step(f"{build}_linearisation")
        out["replayed_nodes"], out["writes_out_of_place"] = lin._jvps[0].replayed_nodes, lin._jvps[0].writes_out_of_place
        del lin
        gc.collect()
        step(f"{build}_dropped")
        release_freed_memory()
        step(f"{build}_trimmed")
    return out


def table(rows: dict[str, dict[str, float]]) -> str:
    lines = ["| model | saved by a gradient | double backward: RSS / peak | linearisation: RSS / peak | "
             "dropped | trimmed | second build: peak | linearisation's growth of the peak / saved bytes | "
             "operator calls per replay (in-place writes made out of place) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for model, r in rows.items():
        growth = (r["first_linearisation_hwm"] - r["double_backward_hwm"]) / r["saved_mb"]
        lines.append(
            f"| {model} | {r['saved_mb']:,.0f} MB | {r['double_backward_rss']:,.0f} / {r['double_backward_hwm']:,.0f} MB | "
            f"{r['first_linearisation_rss']:,.0f} / {r['first_linearisation_hwm']:,.0f} MB | "
            f"{r['first_dropped_rss']:,.0f} MB | {r['first_trimmed_rss']:,.0f} MB | "
            f"{r['second_linearisation_hwm']:,.0f} MB | {growth:.1f}× | "
            f"{r['replayed_nodes']:,.0f} ({r['writes_out_of_place']:.0f}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="cnn,transformer,resnet18,gpt")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the child: measure one model, print JSON
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one)))
        return
    compile_sources()
    # a fresh process per model: the high-water mark is then that model's alone
    print(table(per_model_processes("benchmarks.linearize_cache", args.models)))


if __name__ == "__main__":
    main()
