"""``report.html``: one self-contained page a person reads in a browser.

The figures (the density, the HESD figure in the "HESD type and criteria" section and the per-block
spectra in the "Layer-wise (local) Hessians" section) are embedded as base64 PNGs, so the page can be
mailed or moved on its own.
Every string that comes from the user (model and data names, engine reasons, settings) is escaped;
tables and the page come from the shared renderer (:mod:`hesslens.render`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..render import Figure, Page, Raw, Section, Table, fmt
from .figures import BAND_STDERRS
from .hesd_figure import FLOOR, PAD, SIGMA_FRACTION
from .summary import Summary

__all__ = ["fmt", "render_html", "write_html"]

#: The explanation at the end of the page (trusted markup, no user strings).
_NOTE = """<div class="note">
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
</div>"""


def _cell(value: Any) -> Any:
    """Lists (parameter names, patterns) as one comma-separated cell instead of a Python repr."""
    return ", ".join(fmt(v) for v in value) if isinstance(value, (list, tuple)) else value


def _pairs(pairs: dict[str, Any] | list[tuple[str, Any]]) -> Table:
    items = list(pairs.items()) if isinstance(pairs, dict) else list(pairs)
    return Table([(k, _cell(v)) for k, v in items], {"float_digits": 6, "blank": "—", "row_headers": True})


def _settings(s: Summary) -> dict[str, Any]:
    """The settings, with ``params`` spelled out (None: every trainable parameter)."""
    settings = dict(s.settings)
    if "params" in settings and not settings["params"]:
        settings["params"] = "all trainable parameters"
    return settings


def _requested(s: Summary) -> list[Any]:
    """The eigenvalues asked for (k, which), in the order hesslens.eigenvalues returns them."""
    e = s.eigen
    values = e.get("values")
    if not values:  # a summary written before k and which existed
        return []
    k, which = e.get("k"), e.get("which")
    selected = s.model.get("selected_parameters")
    over = (f"over the {fmt(s.model.get('analysed_parameters'))} parameters of {', '.join(selected)}"
            if selected else f"over all {fmt(s.model.get('analysed_parameters'))} parameters")
    intro = (f"`hesslens.eigenvalues(H, k={k}, which={which!r})` {over}. The values are listed in the order "
             f"the Python API returns them: {e.get('order')}. Each residual ‖H y − θ y‖ bounds the value's "
             "distance to a true eigenvalue; converged means residual ≤ tol × the largest |value|.")
    rows = []
    for i, v in enumerate(values, 1):
        extreme = {"smallest": " (λ_min)", "largest": " (λ_max)"}[v["end"]] if v.get("rank") == 1 else ""
        rows.append((i, f"{v['end']} #{v['rank']}{extreme}", v.get("value"), fmt(v.get("residual"), 3),
                     "yes" if v.get("converged") else "NOT converged"))
    table = Table(rows, {"columns": ("Position", "Which", "Eigenvalue", "Residual", "Converged"),
                         "float_digits": 6, "blank": "—", "css_class": "key"})
    return [intro, table]


def _key_rows(s: Summary) -> list[tuple[str, Any, str]]:
    def eig_detail(d: dict[str, Any]) -> str:
        state = "converged" if d.get("converged") else "NOT converged"
        return f"residual {fmt(d.get('residual'), 3)}, {state}"

    tr = s.trace
    total_matvecs = int(s.eigen.get("matvecs", 0)) + int(tr.get("matvecs", 0)) + int(s.density.get("matvecs", 0))
    return [
        ("λ_max", s.lambda_max.get("value"), eig_detail(s.lambda_max)),
        ("λ_min", s.lambda_min.get("value"), eig_detail(s.lambda_min)),
        ("trace", f"{fmt(tr.get('estimate'))} ± {fmt(tr.get('stderr'), 3)}",
         f"{tr.get('method')}, {fmt(tr.get('matvecs'))} products; ± is one standard error"),
        ("engine", str(s.engine.get("name")), str(s.engine.get("reason", ""))),
        ("Hessian-vector products", total_matvecs,
         f"eigenvalues {fmt(s.eigen.get('matvecs'))}, trace {fmt(tr.get('matvecs'))}, "
         f"density {fmt(s.density.get('matvecs'))}"),
        ("total time", f"{fmt(s.timings.get('total'), 3)} s", "wall clock, training (if any) included"),
    ]


def _engine_rows(s: Summary) -> tuple[str, list[tuple[Any, Any, str]]]:
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
        rows.append((c.get("label"), c.get("status"), detail))
    return intro, rows


def _key_table(rows: list, columns: tuple[str, ...]) -> Table:
    return Table(rows, {"columns": columns, "float_digits": 6, "blank": "—", "row_headers": True, "css_class": "key"})


def _hesd_figure(png: bytes | None) -> Figure:
    """``hesd.png``: the density on a log scale over a symmetric axis, as Gabdullin draws it."""
    floor = f"{FLOOR:.0e}".replace("e-0", "e-")
    caption = ("The same SLQ density in the style of Gabdullin's papers: a log scale over an eigenvalue axis "
               f"symmetric about 0, [−b, b] with b = {fmt(1 + PAD)} × the largest |node|, so that the negative "
               "part is drawn on the same footing as the positive one. The curve integrates to 1; σ (in the title) "
               f"is a Gaussian standard deviation, {fmt(SIGMA_FRACTION)} × the plotted span 2b; the log axis starts "
               f"at {floor} × the peak. The legend gives the type (decisive or weak) and the balance C.")
    return Figure(png if png is not None else "hesd.png", caption=caption, link="hesd.png",
                  alt="Hessian spectral density, log scale over a symmetric eigenvalue axis, with its HESD type",
                  embed=png is not None)


def _hesd(s: Summary, png: bytes | None = None) -> list[Any]:
    """The HESD type and criteria (``summary.hesd``, hesslens.assess on the density): verdict, the numbers,
    then the HESD figure (``png``, embedded; without it the page links ``hesd.png``)."""
    h = s.hesd
    if not h:
        return []
    c = h.get("criteria")
    rows: list[tuple[str, Any, str]] = [
        ("type", h["type"], ("decisive" if h["decisive"] else "weakly determined") + f": {h['reason']}"),
        ("balance C", h["balance"], f"(P − N)/(P + N) of the spectral mass, ≈ tr(H)/tr|H|; ± {fmt(h['balance_stderr'], 2)} "
                                    f"(1 s.e. over probes); MP/MN decisive beyond ±{fmt(h['margin'])}"),
        ("scale max|λ|", h["scale"], f"quasi-singular below {fmt(h['qs_floor'])}"),
    ]
    if c is None:
        rows.append(("re, Kh", None, "not applicable to this type"))
    else:
        rows.append(("re", c["re"], f"|min λ / max λ| per probe, averaged; ± {fmt(c['re_stderr'], 2)}"))
        rows.append(("Kh", c["kh"], f"n = {fmt(c['n'])}; ± {fmt(c['kh_stderr'], 2)}"
                                    + (f"; {c['undefined']} probe run(s) undefined" if c["undefined"] else "")))
    parts: list[Any] = [h["verdict"], _key_table(rows, ("Quantity", "Value", "Detail")), _hesd_figure(png)]
    parts += [f"Warning: {w}" for w in h.get("warnings", ())]
    parts.append("The type is hesslens's criterion (the paper's own Ct was not available): see "
                 "`hesslens.analysis.hesd`; re and Kh as in Gabdullin 2024.")
    return parts


#: The columns of the page's layer-wise table: (heading, the table's column or a function of the row).
_LAYERWISE_COLUMNS: tuple[tuple[str, Any], ...] = (
    ("Block", "block"), ("Type", "type"), ("n_params", "n_params"), ("λ_max", "lambda_max"),
    ("λ_min", "lambda_min"),
    ("trace ± stderr", lambda r: f"{fmt(r.get('trace'), 4)} " + ("(exact)" if r.get("exact")
                                                                 else f"± {fmt(r.get('trace_stderr'), 2)}")),
    ("neg_mass", "neg_mass"), ("condition", "condition"), ("effective_rank", "effective_rank"),
    ("spectral_entropy", "spectral_entropy"), ("Kh", "kh"),
    ("HESD type", lambda r: f"{r.get('hesd_type')}" + ("" if r.get("hesd_decisive") else " (weak)")),
    ("Warnings", lambda r: r.get("warnings") or ""),
)


def _layerwise_figure(png: bytes | None) -> Figure:
    """``layerwise.png``: one log-density panel per block."""
    caption = ("Each block's local-Hessian density (exact eigenvalues or SLQ), smoothed with a Gaussian and drawn "
               "on a log scale over an axis symmetric about 0, each block on its own scale [−b_i, b_i] with "
               f"b_i = {fmt(1 + PAD)} × its largest |eigenvalue| (local Hessians of one model differ by orders "
               "of magnitude); dashed lines: the block's λ_min (red) and λ_max (green).")
    return Figure(png if png is not None else "layerwise.png", caption=caption, link="layerwise.png",
                  alt="Local Hessian spectral density of every block, log scale", embed=png is not None)


def _diagnoses(entry: dict[str, Any]) -> list[str]:
    """The evidence-based diagnoses of a layer-wise entry, or why there are none (nothing for older summaries)."""
    if "diagnostics" not in entry:
        return []
    study = "hesslens's layerwise study (docs/studies/layerwise.md)"
    if entry["diagnostics"]:
        return [f"Diagnosis{'' if d['block'] is None else ' of ' + str(d['block'])}: {d['message']}."
                for d in entry["diagnostics"]]
    if entry.get("diagnosable"):
        return [f"No diagnosis: none of the rules learned by {study} (overfitting, possibly under-parameterised) "
                "fires on this model."]
    return [f"No diagnosis: the rules learned by {study} cover MLPs with two hidden layers (three Linear blocks) "
            "only, so none is made for this model."]


def _layerwise(s: Summary, png: bytes | None = None) -> list[Any]:
    """The layer-wise table (``summary.layerwise``, hesslens.layerwise on the same operator) and its figure
    (``png``, embedded; without it the section links ``layerwise.png``); nothing for a summary without one."""
    entry = s.layerwise or {}
    rows = entry.get("table") or []
    if not rows:
        return []
    settings = entry.get("settings") or {}
    exact = sum(1 for r in rows if r.get("exact"))
    how = ("every block was formed and diagonalised exactly" if exact == len(rows) else
           f"{exact} of the {len(rows)} blocks (those of at most {fmt(settings.get('exact_below'))} parameters) "
           f"{'was' if exact == 1 else 'were'} formed and diagonalised exactly" if exact
           else "no block was small enough to be formed exactly")
    if exact < len(rows):
        how += (f"; the others by SLQ ({fmt(settings.get('steps'))} steps × {fmt(settings.get('probes'))} probes), "
                f"λ_max and λ_min by Lanczos and the trace by Hutchinson ({fmt(settings.get('trace_matvecs'))} "
                "probes of the whole model, z_iᵀ(Hz)_i)")
    intro = ("The local Hessian of block i is H_ii = ∇²_{θ_i} L, the diagonal block of H: the curvature of the loss "
             "in that block's parameters with every other parameter held fixed (Bolshim & Kugaevskikh 2025). "
             "A block is a module that owns parameters, its weight and bias together. "
             f"All blocks share the analysis's operator and its products ({fmt(entry.get('matvecs'))} product "
             f"columns): {how}. The warnings are numerical only.")
    columns = tuple(h for h, _ in _LAYERWISE_COLUMNS)
    body = [tuple(key(r) if callable(key) else r.get(key) for _, key in _LAYERWISE_COLUMNS) for r in rows]
    table = Table(body, {"columns": columns, "float_digits": 4, "blank": "—", "row_headers": True, "css_class": "key"})
    parts: list[Any] = [intro, *_diagnoses(entry), table, _layerwise_figure(png)]
    parts += [f"Note: {n}." for n in entry.get("notes", ())]
    parts.append("Formulas: neg_mass = N/(P + N), condition = max|λ| / min non-negligible |λ|, effective rank "
                 "exp(−Σ p_i log p_i) with p_i = |λ_i|/Σ|λ_j|, spectral entropy the same entropy / log n_i; Kh and "
                 "the type as in the HESD section, per block (`hesslens.analysis.metrics`, `hesslens.layerwise`). "
                 "Every column, with standard errors over probes, is in `summary.json`.")
    return parts


def render_html(summary: Summary, png: bytes | None = None, png_name: str = "density.png",
                hesd_png: bytes | None = None, layerwise_png: bytes | None = None) -> str:
    """The report page. ``png`` (the density figure's bytes) is embedded; without it the page links ``png_name``.
    ``hesd_png`` (the HESD figure's bytes) likewise, else the HESD section links ``hesd.png``; and
    ``layerwise_png`` for the layer-wise section (shown only when the summary has a layer-wise table)."""
    s = summary
    model_name = s.model.get("name", "model")
    title = f"hesslens report: {model_name}"
    subtitle = (f"{fmt(s.model.get('analysed_parameters'))} parameters analysed on "
                f"{fmt(s.data.get('samples'))} samples of {s.data.get('name', 'the given data')}; "
                f"created {s.created or 'unknown'}")
    model_rows: list[tuple[str, Any]] = [(k.replace("_", " "), v) for k, v in s.model.items()]
    model_rows += [(f"data: {k.replace('_', ' ')}", v) for k, v in s.data.items()]
    meta = s.density.get("meta", {})
    probes = meta.get("probes")
    band = (f"The shaded band is ±{BAND_STDERRS} standard errors of that mean over the {fmt(probes)} probes "
            "(pointwise; each probe's own density is an unbiased estimate), so it shows the probe noise. "
            if isinstance(probes, int) and probes > 1 else "With a single probe there is no band (no standard error). ")
    caption = (f"SLQ with {fmt(probes)} Rademacher probes × {fmt(meta.get('steps'))} Lanczos steps "
               f"({fmt(s.density.get('matvecs'))} products). The curve is the mean over probes of a Gaussian "
               "smoothing of the quadrature nodes, σ given in the figure title as a standard deviation in "
               "eigenvalue units; it integrates to 1 (multiply by the "
               f"{fmt(s.model.get('analysed_parameters'))} analysed parameters for eigenvalues per unit "
               f"eigenvalue). {band}Dashed lines: λ_min and λ_max from restarted Lanczos, labelled with their "
               "residuals; dotted lines: the other requested eigenvalues.")
    figure = Figure(png if png is not None else png_name, caption=caption, link=png_name,
                    alt="Hessian spectral density, linear and log scale", embed=png is not None)
    engine_timings = {
        (f"engine trial: building {k[6:]}" if k.startswith("build:") else f"engine trial: {k}"):
        (f"{fmt(v, 3)} s, once" if k.startswith("build:") else f"{fmt(v, 3)} s per product column")
        for k, v in s.engine.get("timings", {}).items()
    }
    timings = {k.replace("_", " "): f"{fmt(v, 3)} s" for k, v in s.timings.items()}
    timings.update({"operator setup (engine choice)": f"{fmt(s.engine.get('setup_seconds'), 3)} s", **engine_timings})
    engine_intro, engine_rows = _engine_rows(s)
    requested = _requested(s)
    page = Page(title, subtitle=subtitle, footer=f"Full numbers: `summary.json` (schema `{s.schema}`).", sections=[
        Section("Model and data", [_pairs(model_rows)]),
        Section("Key numbers", [_key_table(_key_rows(s), ("Quantity", "Value", "Detail"))]),
        *([Section("Requested eigenvalues", requested)] if requested else []),
        Section("Spectral density", [figure]),
        *([Section("HESD type and criteria", hesd)] if (hesd := _hesd(s, hesd_png)) else []),
        *([Section("Layer-wise (local) Hessians", lw)] if (lw := _layerwise(s, layerwise_png)) else []),
        Section("Product engine", [engine_intro, _key_table(engine_rows, ("Candidate", "Status", "Detail"))]),
        Section("Timings", [_pairs(timings)]),
        Section("Settings", [_pairs(_settings(s))]),
        Section("What the numbers mean", [Raw(_NOTE)]),
        Section("Versions", [_pairs(s.versions)]),
    ])
    return page.html()


def write_html(summary: Summary, path: str | Path, png_path: str | Path | None = None,
               hesd_png_path: str | Path | None = None, layerwise_png_path: str | Path | None = None) -> Path:
    """Write :func:`render_html` to ``path``, embedding the PNGs at ``png_path`` (the density figure),
    ``hesd_png_path`` (the HESD figure) and ``layerwise_png_path`` (the per-block spectra) when given."""
    path = Path(path)
    png = Path(png_path).read_bytes() if png_path is not None else None
    hesd_png = Path(hesd_png_path).read_bytes() if hesd_png_path is not None else None
    layerwise_png = Path(layerwise_png_path).read_bytes() if layerwise_png_path is not None else None
    path.write_text(render_html(summary, png, hesd_png=hesd_png, layerwise_png=layerwise_png), encoding="utf-8")
    return path
