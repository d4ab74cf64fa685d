"""What the HESD assessment adds to ``hesslens analyze`` on the default digits model.

    .venv/bin/python -m benchmarks.assess_overhead [--runs 5] [--warmup 1]

Runs the real command, ``hesslens analyze --out DIR --quiet`` (default settings: train the embedded
digits MLP, then λ_min/λ_max, Hutch++ trace and SLQ 80 × 10), ``--runs`` times in fresh processes after
``--warmup`` uncounted runs, and reads each run's own step timings from its ``summary.json``:

* **analysis without the HESD step**: extreme eigenvalues + trace + spectral density (the Hessian
  products; the operator's engine choice and the training are shown separately, for context);
* **HESD step**: ``timings.hesd``, ``hesslens.assess`` on the density the analysis computed — type and
  criteria, no further products;
* **HESD figure**: writing ``hesd.png`` as the report does (``save_hesd_png(hesd_item(summary))``: the
  typed density drawn on a bare Figure and saved as a PNG), timed in this process on each run's
  density after one uncounted drawing and saving (which imports matplotlib and its PNG writer; in the
  command, ``density.png`` is drawn first and pays that).

Prints a Markdown table: the median and the min–max over the runs of each time and of the overhead
ratios (per run, then the median), and the 1-minute load average before and after, since other work on
the machine inflates wall times.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: The analysis steps of ``summary.json``'s timings that multiply by the Hessian.
ANALYSIS_STEPS = ("extreme_eigenvalues", "trace", "spectral_density")


def run_once(hesslens: str, out: Path, extra: list[str], first: bool = False) -> dict[str, float]:
    """One ``hesslens analyze`` in a fresh process, then the HESD figure of its density in this one
    (``first``: after one uncounted drawing, which imports matplotlib as ``density.png`` does in the command)."""
    from hesslens.report import load_summary
    from hesslens.report.analysis import hesd_item
    from hesslens.report.hesd_figure import hesd_figure, save_hesd_png

    subprocess.run([hesslens, "analyze", "--out", str(out), "--quiet", *extra], stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
    summary = load_summary(out)
    t = summary.timings
    if first:
        hesd_figure(hesd_item(summary)).savefig(io.BytesIO(), dpi=120, format="png")
    t0 = time.perf_counter()
    save_hesd_png(hesd_item(summary), out.parent / f"{out.name}-hesd.png")
    figure = time.perf_counter() - t0
    return {"train": t["train"], "operator": t["operator"], **{k: t[k] for k in ANALYSIS_STEPS},
            "analysis": sum(t[k] for k in ANALYSIS_STEPS), "hesd": t["hesd"], "figure": figure,
            "total": t["total"]}


def rows(runs: list[dict[str, float]]) -> list[tuple[str, list[float], str]]:
    """(quantity, per-run values, unit) of the table; ratios are taken per run."""
    col = lambda key: [r[key] for r in runs]  # noqa: E731
    ratio = lambda *keys: [sum(r[k] for k in keys) / r["analysis"] for r in runs]  # noqa: E731
    return [
        ("analysis without the HESD step (eigenvalues + trace + SLQ)", col("analysis"), "s"),
        ("of which extreme eigenvalues (λ_min, λ_max)", col("extreme_eigenvalues"), "s"),
        ("of which trace (Hutch++)", col("trace"), "s"),
        ("of which spectral density (SLQ)", col("spectral_density"), "s"),
        ("HESD step: type + criteria from the density (`timings.hesd`)", col("hesd"), "s"),
        ("HESD figure: `hesd.png` drawn and saved", col("figure"), "s"),
        ("overhead: HESD step / analysis", ratio("hesd"), "%"),
        ("overhead: HESD figure / analysis", ratio("figure"), "%"),
        ("overhead: HESD step + figure / analysis", ratio("hesd", "figure"), "%"),
        ("for context: operator set-up (engine choice)", col("operator"), "s"),
        ("for context: training the default model", col("train"), "s"),
        ("for context: the whole command (`timings.total`)", col("total"), "s"),
    ]


def cell(values: list[float], unit: str) -> tuple[str, str]:
    """Median and min–max, in seconds or per cent (3 significant digits)."""
    if unit == "%":
        f = lambda v: f"{100 * v:.3g} %"  # noqa: E731
    else:
        f = lambda v: f"{v:.3g} s"  # noqa: E731
    return f(statistics.median(values)), f"{f(min(values))} – {f(max(values))}"


def table(runs: list[dict[str, float]]) -> str:
    lines = [f"| quantity | median of {len(runs)} | min – max |", "|---|---|---|"]
    lines += [f"| {name} | {' | '.join(cell(values, unit))} |" for name, values, unit in rows(runs)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="counted runs (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="uncounted runs first (default 1)")
    parser.add_argument("--wait-idle", type=float, default=None, metavar="LOAD",
                        help="before each run, wait (at most 10 minutes) for the 1-minute load average to fall "
                        "below LOAD")
    parser.add_argument("--steps", type=int, help="hesslens analyze --steps (default: the command's)")
    parser.add_argument("--probes", type=int, help="hesslens analyze --probes (default: the command's)")
    parser.add_argument("--trace-matvecs", type=int, help="hesslens analyze --trace-matvecs (default: the command's)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be ≥ 1 and --warmup ≥ 0")
    given = (("steps", args.steps), ("probes", args.probes), ("trace-matvecs", args.trace_matvecs))
    extra = [f"--{name}={value}" for name, value in given if value is not None]
    hesslens = str(Path(sys.executable).parent / "hesslens")
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start; `hesslens analyze --quiet"
          f"{''.join(' ' + e for e in extra)}` (default digits model), {args.runs} runs after {args.warmup} warm-up")
    with tempfile.TemporaryDirectory(prefix="hesslens-assess-overhead-") as tmp:
        runs, loads = [], []
        for i in range(args.warmup + args.runs):
            if args.wait_idle is not None:
                from benchmarks.run import wait_until_idle

                wait_until_idle(args.wait_idle, 600)
            loads.append(os.getloadavg()[0])
            measured = run_once(hesslens, Path(tmp) / f"run-{i}", extra, first=i == 0)
            if i >= args.warmup:
                runs.append(measured)
    print()
    print(table(runs))
    print()
    hesd = statistics.median(r["hesd"] / r["analysis"] for r in runs)
    print(f"median HESD step overhead {100 * hesd:.3g} % of the analysis time (target ≤ 10 %); load average "
          f"{min(loads):.2f}–{max(loads):.2f} at the starts of the runs, {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
