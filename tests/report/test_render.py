"""hesslens.render: one formatter, one table renderer (Markdown and HTML from the same cells), one page builder."""

from __future__ import annotations

import base64
import math
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from hesslens.errors import InvalidInputError
from hesslens.render import Figure, Page, Raw, Section, Table, fmt, table

DF = pd.DataFrame({"name": ["a|b", "<script>x</script>", "plain"], "value": [0.123456, math.nan, 1234.5],
                   "count": [1234567, 2, 3], "flag": [True, False, True], "note": [None, "x & y", "l1\nl2"]})


class _Cells(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self._cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(self._cell)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def _md_cells(md: str) -> list[list[str]]:
    rows = [ln for ln in md.splitlines() if ln.startswith("|") and not ln.startswith("|---")]
    return [[c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", ln)[1:-1]] for ln in rows]


def test_fmt_digits_blanks_ints_and_numpy():
    assert fmt(0.123456789, 3) == "0.123" and fmt(1234567) == "1,234,567" and fmt(np.int64(1234)) == "1,234"
    assert fmt(np.float32(0.5)) == "0.5" and fmt(np.bool_(True)) == "yes" and fmt(False) == "no"
    assert fmt(None) == "—" and fmt(None, blank="") == "" and fmt(math.nan) == "nan" and fmt(math.nan, nan="") == ""
    assert fmt(pd.NA, blank="-") == "-" and fmt(math.inf) == "inf" and fmt("a<b") == "a<b"


def test_html_escapes_every_user_string():
    page = table(DF.rename(columns={"note": "<b>note</b>"}), "html")
    assert "<script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert "&lt;b&gt;note&lt;/b&gt;" in page and "x &amp; y" in page
    assert '<div class="table">' in page  # wide tables scroll sideways


def test_blanks_and_digits():
    md = table(DF, float_digits=3, blank="")
    cells = _md_cells(md)
    assert cells[0] == ["name", "value", "count", "flag", "note"]
    assert cells[1] == ["a|b", "0.123", "1,234,567", "yes", ""]
    assert cells[2][1] == "" and cells[3][1] == "1.23e+03" and cells[3][4] == "l1 l2"
    assert _md_cells(table(DF, float_digits=6, blank="—"))[2][1] == "—"
    assert _md_cells(table(DF, float_digits=6))[3][1] == "1234.5"


def test_row_cap_says_how_many_rows_were_left_out():
    df = pd.DataFrame({"i": range(10)})
    md = table(df, max_rows=4, more="{n} more rows in results.csv")
    assert len(_md_cells(md)) == 1 + 4 and md.endswith("(6 more rows in results.csv)")
    page = table(df, "html", max_rows=4)
    assert page.count("<tr>") == 5 and "6 more rows not shown" in page
    assert "more rows" not in table(df, max_rows=10)
    with pytest.raises(InvalidInputError):
        table(df, "latex")


def test_markdown_and_html_show_the_same_cells():
    for data, kw in ((DF, {}), ([("k", 1.5), ("n", 2000)], {"columns": ("key", "value")}),
                     ({"a": 1, "b": None}, {}), ([{"x": 1, "y": "u"}, {"x": 2.25}], {})):
        parser = _Cells()
        parser.feed(table(data, "html", **kw))
        shown = [[" ".join(c.split()) for c in row] for row in parser.rows]  # as a browser shows white space
        md = _md_cells(table(data, "markdown", **kw))
        assert shown == (md[1:] if isinstance(data, dict) else md)  # a mapping has no header; Markdown's is blank
        assert md[1:] and all(len(row) == len(md[0]) for row in md)


def test_numbers_are_marked_and_row_headers():
    page = table([("n", 58), ("s", "text")], "html", row_headers=True)
    assert '<tr><th>n</th><td class="num">58</td></tr>' in page and "<tr><th>s</th><td>text</td></tr>" in page


def test_page_contains_every_section(tmp_path):
    png = tmp_path / "figures" / "a.png"
    png.parent.mkdir()
    png.write_bytes(b"\x89PNG fake")
    page = Page("Study `toy` <1>", subtitle="sub & title", footer="Full numbers: `summary.json`.", sections=[
        Section("Tables", [Table(DF, {"float_digits": 3}), "a paragraph with `code`"]),
        Section("Figures", [Figure(png, caption="first figure"), Figure(b"bytes", caption="second", link="b.png")]),
        Section("Note", [Raw("<div class='note'><b>trusted</b></div>", "**trusted**")]),
        Section("Empty"),
    ])
    html = page.html()
    assert [h for h in re.findall(r"<h2>(.*?)</h2>", html)] == ["Tables", "Figures", "Note", "Empty"]
    assert "<h1>Study <code>toy</code> &lt;1&gt;</h1>" in html and "<title>Study toy &lt;1&gt;</title>" in html
    assert '<p class="sub">sub &amp; title</p>' in html and "<code>summary.json</code>" in html
    assert "<p>a paragraph with <code>code</code></p>" in html and "<b>trusted</b>" in html
    srcs = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert [base64.b64decode(s) for s in srcs] == [b"\x89PNG fake", b"bytes"]
    assert "overflow-x: auto" in html and "<figcaption>first figure</figcaption>" in html
    md = page.markdown(root=tmp_path)
    assert [h for h in re.findall(r"^## (.*)$", md, re.MULTILINE)] == ["Tables", "Figures", "Note", "Empty"]
    assert md.startswith("# Study `toy` <1>\n\nsub & title") and "![first figure](figures/a.png)" in md
    assert "![second](b.png)" in md and "**trusted**" in md and md.rstrip().endswith("Full numbers: `summary.json`.")
    with pytest.raises(InvalidInputError, match="page part"):
        Page("t", [Section("s", [42])]).html()


def test_a_linked_figure_is_not_embedded():
    html = Page("t", [Section("s", [Figure("density.png", embed=False)])]).html()
    assert 'src="density.png"' in html and "base64" not in html
