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
