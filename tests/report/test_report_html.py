"""report.html: self-contained, escaped, carries the key numbers and the σ convention."""

from __future__ import annotations

import base64
import re

from hesslens.report.html import fmt, render_html

from ._summaries import make_summary

PNG = b"\x89PNG\r\n\x1a\nfake"


def test_key_numbers_and_embedded_figure():
    page = render_html(make_summary(), PNG)
    for text in ("3.25", "-0.625", "9.5 ± 0.125", "linearize+vmap", "NOT converged", "hutch++"):
        assert text in page
    # total products: eigenvalues 40 + trace 12 + density 6
    assert re.search(r"Hessian-vector products</th><td class=\"num\">58<", page)
    src = re.search(r'src="data:image/png;base64,([^"]+)"', page).group(1)
    assert base64.b64decode(src) == PNG


def test_without_png_the_page_links_the_file():
    assert 'src="density.png"' in render_html(make_summary())


def test_user_strings_are_escaped():
    page = render_html(make_summary(name="<script>alert('x')</script>"))
    assert "<script>" not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page


def test_explains_sigma_and_the_quantities():
    page = " ".join(render_html(make_summary()).split())
    assert "σ is a standard deviation in eigenvalue units" in page
    for word in ("λ<sub>max</sub>", "λ<sub>min</sub>", "trace", "spectral density"):
        assert word in page


def test_fmt():
    assert fmt(1234567) == "1,234,567" and fmt(0.1234567891) == "0.123457" and fmt(None) == "—"
    assert fmt(True) == "yes" and fmt(float("nan")) == "nan" and fmt("a<b") == "a<b"


def _with_requested(**settings):
    eigen = {"matvecs": 40, "seconds": 0.5, "restarts": 1, "tol": 1e-6, "k": 2, "which": "both",
             "order": "the 2 smallest, ascending (λ_min first), then the 2 largest, descending (λ_max first)",
             "values": [{"end": "smallest", "rank": 1, "value": -0.625, "residual": 2e-8, "converged": False},
                        {"end": "smallest", "rank": 2, "value": -0.125, "residual": 1e-9, "converged": True},
                        {"end": "largest", "rank": 1, "value": 3.25, "residual": 1e-9, "converged": True},
                        {"end": "largest", "rank": 2, "value": 2.5, "residual": 3e-9, "converged": True}]}
    base = make_summary()
    return make_summary(eigen=eigen, settings={**base.settings, "k": 2, "which": "both", **settings},
                        model={**base.model, "selected_parameters": ["2.weight", "2.bias"]})


def test_requested_eigenvalues_are_listed_in_the_stated_order():
    page = render_html(_with_requested(params=["2.*"]), PNG)
    flat = " ".join(page.split())
    assert "Requested eigenvalues" in page
    assert ("<code>hesslens.eigenvalues(H, k=2, which=&#x27;both&#x27;)</code> over the 7 parameters of "
            "2.weight, 2.bias") in flat
    assert "listed in the order the Python API returns them: the 2 smallest, ascending (λ_min first), then " \
           "the 2 largest, descending (λ_max first)" in flat
    rows = re.findall(r'<tr><td class="num">(\d)</td><td>([^<]+)</td><td class="num">([^<]+)</td>', page)
    assert rows == [("1", "smallest #1 (λ_min)", "-0.625"), ("2", "smallest #2", "-0.125"),
                    ("3", "largest #1 (λ_max)", "3.25"), ("4", "largest #2", "2.5")]
    # the settings table: the patterns as written, k and which; list cells joined, not a Python repr
    assert "<th>params</th><td>2.*</td>" in page and "<th>which</th><td>both</td>" in page
    assert "<th>selected parameters</th><td>2.weight, 2.bias</td>" in page and "[&#x27;" not in page


def test_all_parameters_and_old_summaries():
    assert "<th>params</th><td>all trainable parameters</td>" in render_html(_with_requested(params=None))
    # a summary written before k and which: no section, nothing broken
    assert "Requested eigenvalues" not in render_html(make_summary())


def test_caption_states_normalisation_band_and_residuals():
    flat = " ".join(render_html(make_summary(), PNG).split())
    assert "it integrates to 1" in flat and "±2 standard errors of that mean over the 2 probes" in flat
    assert "labelled with their residuals" in flat
    one_probe = make_summary(density={**make_summary().density, "meta": {"steps": 3, "probes": 1}})
    assert "With a single probe there is no band" in render_html(one_probe, PNG)


def test_the_hesd_section_embeds_or_links_the_hesd_figure():
    from hesslens.report.analysis import hesd_summary

    s = make_summary(hesd=hesd_summary(make_summary().spectral_density))
    linked = render_html(s, PNG)
    section = linked[linked.index(">HESD type and criteria</h2>"):]
    section = section[:section.index("<h2")]
    assert 'src="hesd.png"' in section and "symmetric about 0" in section
    hesd_png = b"\x89PNG\r\n\x1a\nhesd"
    embedded = render_html(s, PNG, hesd_png=hesd_png)
    sources = [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', embedded)]
    assert sources == [PNG, hesd_png] and 'src="hesd.png"' not in embedded
