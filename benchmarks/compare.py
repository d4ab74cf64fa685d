"""Compare hesslens's rows of two benchmark runs (e.g. before and after a change to the operator).

    .venv/bin/python -m benchmarks.compare BEFORE.json AFTER.json [--labels before,after]

Prints one Markdown table: per model, the operator set-up (construction, including the engine
checks and timings), the engine chosen, the product cost in gradient-equivalents, the SLQ time and
the process's wall time, for each run, with the after/before ratio of set-up and SLQ. Both JSON
files are the output of :mod:`benchmarks.run`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .run import _fmt, _fmt_s


def _hesslens(path: Path) -> dict[str, dict[str, Any]]:
    data = json.loads(path.read_text())
    return {model: next((r for r in rows if r.get("library") == "hesslens"), {})
            for model, rows in data["results"].items()}


def _grad_eq(row: dict[str, Any]) -> str:
    products = row.get("products") or {}
    best = [p["grad_equivalents"] for p in products.values() if isinstance(p, dict) and p.get("grad_equivalents")]
    return _fmt(min(best)) if best else "—"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{b / a:.2f}×" if a and b else "—"


def table(before: Path, after: Path, labels: tuple[str, str]) -> str:
    old, new = _hesslens(before), _hesslens(after)
    a, b = labels
    lines = [f"| model | set-up {a} | set-up {b} | {b}/{a} | engine {a} | engine {b} | grad-eq. {a} | grad-eq. {b} "
             f"| SLQ {a} | SLQ {b} | {b}/{a} |",
             "|---|" + "---|" * 10]
    for model in new:
        o, n = old.get(model, {}), new[model]
        slq_o, slq_n = ((r.get("slq") or {}).get("seconds") for r in (o, n))
        lines.append(f"| {model} | {_fmt_s(o.get('setup_seconds'))} | {_fmt_s(n.get('setup_seconds'))} | "
                     f"{_ratio(o.get('setup_seconds'), n.get('setup_seconds'))} | {o.get('engine', '—')} | "
                     f"{n.get('engine', '—')} | {_grad_eq(o)} | {_grad_eq(n)} | {_fmt_s(slq_o)} | {_fmt_s(slq_n)} | "
                     f"{_ratio(slq_o, slq_n)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--labels", default="before,after", help="column labels of the two runs")
    args = parser.parse_args(argv)
    print(table(args.before, args.after, tuple(args.labels.split(",", 1))))


if __name__ == "__main__":
    main()
