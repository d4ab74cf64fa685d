"""``report.html``: one self-contained page a person reads in a browser.

The density figure is embedded as a base64 PNG, so the page can be mailed or moved on its own.
Every string that comes from the user (model and data names, engine reasons, settings) is escaped;
the page is built with :class:`string.Template`, no template engine.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from string import Template
from typing import Any

from .summary import Summary

_PAGE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<style>
  body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 60rem; margin: 2rem auto;
         padding: 0 1rem; color: #1d1d1f; line-height: 1.45; }
  h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
  h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
  .sub { color: #666; margin-top: 0; }
  table { border-collapse: collapse; margin: 0.5rem 0; }
  th, td { text-align: left; padding: 0.25rem 0.9rem 0.25rem 0; vertical-align: top; }
  th { font-weight: 600; color: #333; }
  td.num { font-variant-numeric: tabular-nums; font-family: ui-monospace, Menlo, Consolas, monospace; }
  table.key td, table.key th { border-bottom: 1px solid #eee; }
  img { max-width: 100%; height: auto; }
  .note { background: #f6f8fa; border-left: 3px solid #8aa; padding: 0.6rem 1rem; }
  code { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.95em; }
</style>
</head>
<body>
<h1>$title</h1>
<p class="sub">$subtitle</p>

<h2>Model and data</h2>
$model_table

<h2>Key numbers</h2>
<table class="key">
<tr><th>Quantity</th><th>Value</th><th>Detail</th></tr>
$key_rows
</table>

<h2>Spectral density</h2>
$figure
<p>$density_caption</p>

<h2>Product engine</h2>
<p>$engine_intro</p>
<table class="key">
<tr><th>Candidate</th><th>Status</th><th>Detail</th></tr>
$engine_rows
</table>

<h2>Timings</h2>
$timings_table

<h2>Settings</h2>
$settings_table

<h2>What the numbers mean</h2>
<div class="note">
<p>The <b>Hessian</b> H is the matrix of second derivatives of the mean training loss with respect to the
model's parameters: it describes how the loss curves around the current parameters. hesslens never forms
H; it multiplies vectors by it.</p>
<ul>
<li><b>λ<sub>max</sub></b>, the largest eigenvalue, is the sharpest curvature: the loss rises fastest
along its eigenvector. Large values mean a sharp minimum; gradient descent with step size η is stable
only while λ<sub>max</sub> &lt; 2/η.</li>
<li><b>λ<sub>min</sub></b>, the smallest eigenvalue: a clearly negative value means the point is not a
minimum (some direction still lowers the loss); values near zero are the usual flat directions.</li>
<li>The <b>trace</b> is the sum of all eigenvalues (the total curvature), estimated from random probes;
“± stderr” is its standard error, so the true trace lies within about two of them of the estimate.</li>
<li>The <b>spectral density</b> is the distribution of all eigenvalues, estimated by stochastic Lanczos
quadrature (SLQ) and smoothed with a Gaussian for display. Here <b>σ is a standard deviation in
eigenvalue units</b> (not a variance, and not scaled by the spectral range as in PyHessian). The log
panel shows the few large outliers next to the bulk near zero.</li>
<li>The <b>residual</b> ‖H y − θ y‖ bounds how far a Lanczos estimate θ can be from a true eigenvalue.</li>
</ul>
</div>

<h2>Versions</h2>
$versions_table
<p class="sub">Full numbers: <code>summary.json</code> (schema <code>$schema</code>).</p>
</body>
</html>
""")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 6) -> str:
    """A number for people: ``digits`` significant digits; booleans and strings as they are."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if math.isfinite(value) else str(value)
    return str(value)


def _table(pairs: dict[str, Any] | list[tuple[str, Any]]) -> str:
    items = pairs.items() if isinstance(pairs, dict) else pairs
    rows = "\n".join(f"<tr><th>{_e(k)}</th><td class=\"num\">{_e(fmt(v))}</td></tr>" for k, v in items)
    return f"<table>\n{rows}\n</table>"


def _key_rows(s: Summary) -> list[tuple[str, str, str]]:
    def eig_detail(d: dict[str, Any]) -> str:
        state = "converged" if d.get("converged") else "NOT converged"
        return f"residual {fmt(d.get('residual'), 3)}, {state}"

    tr = s.trace
    total_matvecs = int(s.eigen.get("matvecs", 0)) + int(tr.get("matvecs", 0)) + int(s.density.get("matvecs", 0))
    return [
        ("λ_max", fmt(s.lambda_max.get("value")), eig_detail(s.lambda_max)),
        ("λ_min", fmt(s.lambda_min.get("value")), eig_detail(s.lambda_min)),
        ("trace", f"{fmt(tr.get('estimate'))} ± {fmt(tr.get('stderr'), 3)}",
         f"{tr.get('method')}, {fmt(tr.get('matvecs'))} products; ± is one standard error"),
        ("engine", str(s.engine.get("name")), str(s.engine.get("reason", ""))),
        ("Hessian-vector products", fmt(total_matvecs),
         f"eigenvalues {fmt(s.eigen.get('matvecs'))}, trace {fmt(tr.get('matvecs'))}, "
         f"density {fmt(s.density.get('matvecs'))}"),
        ("total time", f"{fmt(s.timings.get('total'), 3)} s", "wall clock, training (if any) included"),
    ]


def _engine_rows(s: Summary) -> tuple[str, str]:
    """The engine choice: every candidate, whether it agreed with double backward, and why not."""
    checks = s.engine.get("checks") or []
    intro = (f"Every candidate engine is checked against double backward on the first batch over repeated calls "
             f"(tolerance {fmt(s.engine.get('tolerance'), 2)}, relative to the largest product entry); "
             "one that disagrees is refused. Chosen: " + str(s.engine.get("name")) + ".")
    rows = []
    for c in checks:
        err = c.get("relative_error")
        detail = "; ".join(part for part in (
            f"relative error {fmt(err, 2)}" if err is not None else "",
            f"{fmt(c.get('seconds_per_column'), 3)} s per product column" if c.get("seconds_per_column") is not None else "",
            str(c.get("reason") or "")) if part)
        rows.append(f"<tr><th>{_e(c.get('label'))}</th><td>{_e(c.get('status'))}</td><td>{_e(detail)}</td></tr>")
    return intro, "\n".join(rows)


def render_html(summary: Summary, png: bytes | None = None, png_name: str = "density.png") -> str:
    """The report page. ``png`` (the density figure's bytes) is embedded; without it the page links ``png_name``."""
    s = summary
    model_name = s.model.get("name", "model")
    title = f"hesslens report: {model_name}"
    subtitle = (f"{fmt(s.model.get('analysed_parameters'))} parameters analysed on "
                f"{fmt(s.data.get('samples'))} samples of {s.data.get('name', 'the given data')}; "
                f"created {s.created or 'unknown'}")
    model_rows: list[tuple[str, Any]] = [(k.replace("_", " "), v) for k, v in s.model.items()]
    model_rows += [(f"data: {k.replace('_', ' ')}", v) for k, v in s.data.items()]
    key_rows = "\n".join(
        f"<tr><th>{_e(q)}</th><td class=\"num\">{_e(v)}</td><td>{_e(d)}</td></tr>" for q, v, d in _key_rows(s)
    )
    if png is not None:
        src = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    else:
        src = _e(png_name)
    figure = f'<img src="{src}" alt="Hessian spectral density, linear and log scale">'
    meta = s.density.get("meta", {})
    caption = (f"SLQ with {fmt(meta.get('probes'))} Rademacher probes × {fmt(meta.get('steps'))} Lanczos steps "
               f"({fmt(s.density.get('matvecs'))} products). Dashed lines: λ_min and λ_max from restarted Lanczos. "
               "The curve is a Gaussian smoothing of the quadrature nodes, σ given in the figure title "
               "as a standard deviation in eigenvalue units.")
    engine_timings = {
        (f"engine trial: building {k[6:]}" if k.startswith("build:") else f"engine trial: {k}"):
        (f"{fmt(v, 3)} s, once" if k.startswith("build:") else f"{fmt(v, 3)} s per product column")
        for k, v in s.engine.get("timings", {}).items()
    }
    timings = {k.replace("_", " "): f"{fmt(v, 3)} s" for k, v in s.timings.items()}
    timings.update({"operator setup (engine choice)": f"{fmt(s.engine.get('setup_seconds'), 3)} s", **engine_timings})
    engine_intro, engine_rows = _engine_rows(s)
    return _PAGE.substitute(
        engine_intro=_e(engine_intro), engine_rows=engine_rows,
        title=_e(title), subtitle=_e(subtitle), model_table=_table(model_rows), key_rows=key_rows,
        figure=figure, density_caption=_e(caption), timings_table=_table(timings),
        settings_table=_table(s.settings), versions_table=_table(s.versions), schema=_e(s.schema),
    )


def write_html(summary: Summary, path: str | Path, png_path: str | Path | None = None) -> Path:
    """Write :func:`render_html` to ``path``, embedding the PNG at ``png_path`` when given."""
    path = Path(path)
    png = Path(png_path).read_bytes() if png_path is not None else None
    path.write_text(render_html(summary, png), encoding="utf-8")
    return path
