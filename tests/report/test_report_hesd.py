"""The HESD type and criteria in ``hesslens analyze``'s summary, page and terminal lines."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

import hesslens as hl
from hesslens.report import AnalysisSettings, analyze_operator, load_summary, write_report
from hesslens.report.summary import Summary


def _summary(eigenvalues):
    A = torch.diag(torch.tensor(eigenvalues, dtype=torch.float64))
    n = len(eigenvalues)
    return analyze_operator(A, AnalysisSettings(seed=1, probes=4, steps=n, trace_matvecs=12), progress=False)


def test_summary_holds_what_assess_says_of_the_same_density(tmp_path):
    s = _summary([5.0, 2.0, 1.0, 0.5, -0.2, -0.4, 3.0, 0.1])
    again = hl.assess(s.spectral_density)
    h = s.hesd
    assert h["type"] == again.hesd_type.kind == "MP" and h["applicable"]
    assert h["balance"] == pytest.approx(again.hesd_type.balance)
    assert h["criteria"]["re"] == pytest.approx(again.criteria.re) and h["criteria"]["kh"] == pytest.approx(again.criteria.kh)
    # steps = n on a diagonal operator: every probe's nodes are the eigenvalues, so re is exact
    assert h["criteria"]["re"] == pytest.approx(0.4 / 5.0, rel=1e-9)
    assert h["verdict"] == again.verdict and s.timings["hesd"] >= 0
    files = write_report(s, tmp_path / "r")
    written = json.loads(files.summary_json.read_text())
    assert written["hesd"]["type"] == "MP" and load_summary(files.summary_json).hesd["criteria"]["n"] == 0.5
    page = files.report_html.read_text()
    assert "HESD type and criteria" in page and "The criteria apply" in page


def _section(page: str, heading: str) -> str:
    """The HTML of one section of the page: from its heading to the next one."""
    start = page.index(f">{heading}</h2>")
    end = page.find("<h2", start)
    return page[start:end if end >= 0 else None]


@pytest.mark.parametrize("eigenvalues", [[5.0, 2.0, 1.0, 0.5, -0.2, -0.4, 3.0, 0.1],
                                         [0.3, -2.0, -1.0, -4.0, 0.1, -0.5]], ids=["MP", "MN"])
def test_hesd_png_is_written_and_shown_in_the_hesd_section(tmp_path, eigenvalues):
    import base64
    import re

    s = _summary(eigenvalues)
    files = write_report(s, tmp_path / "r")
    png = (files.folder / "hesd.png").read_bytes()
    assert files.hesd_png == files.folder / "hesd.png" and png.startswith(b"\x89PNG\r\n\x1a\n")
    section = _section(files.report_html.read_text(), "HESD type and criteria")
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', section)
    assert [base64.b64decode(i) for i in images] == [png]  # embedded there, and only there
    assert "symmetric about 0" in section and "integrates to 1" in section
    # the figure's legend names the type the summary states, with its balance
    from hesslens.report.analysis import hesd_item
    from hesslens.report.hesd_figure import hesd_figure

    fig = hesd_figure(hesd_item(load_summary(files.summary_json)))
    (text,) = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    h = s.hesd
    assert text == f"{s.model.get('name', 'model')}: {h['type']} ({'decisive' if h['decisive'] else 'weak'}), " \
                   f"C = {h['balance']:+.3f}"


def test_the_hesd_figure_uses_the_thresholds_the_summary_records():
    from hesslens.report.analysis import hesd_item

    s = _summary([5.0, 2.0, 1.0, 0.5, -0.2, -0.4, 3.0, 0.1])
    strict = dataclasses.replace(s, hesd={**s.hesd, "margin": 0.99, "qs_floor": 10.0})
    assert hesd_item(s).hesd_type.kind == "MP" and hesd_item(s).hesd_type.decisive
    assert hesd_item(strict).hesd_type.kind == "QS"  # scale 5 < the recorded floor 10
    old = dataclasses.replace(s, hesd={})
    assert hesd_item(old).hesd_type == hl.hesd_type(s.spectral_density)


def test_mn_spectrum_says_the_criteria_do_not_apply(tmp_path):
    s = _summary([0.3, -2.0, -1.0, -4.0, 0.1, -0.5])
    assert s.hesd["type"] == "MN" and s.hesd["criteria"] is None and not s.hesd["applicable"]
    page = write_report(s, tmp_path / "r").report_html.read_text()
    assert "not applicable to this type" in page and "do not apply" in page


def test_a_summary_written_before_hesd_still_loads(tmp_path):
    s = _summary([2.0, 1.0, -0.1, 0.5])
    d = s.to_dict()
    d.pop("hesd")
    old = Summary.from_dict(d)
    assert old.hesd == {}
    files = write_report(old, tmp_path / "r")
    page = files.report_html.read_text()
    assert "HESD type and criteria" not in page
    assert files.hesd_png.read_bytes().startswith(b"\x89PNG")  # the folder holds the same files for every summary


def test_terminal_line(tmp_path):
    from hesslens.cli import summary_table

    files = write_report(_summary([2.0, 1.0, -0.1, 0.5]), tmp_path / "r")
    line = [ln for ln in summary_table(files).splitlines() if ln.strip().startswith("hesd")]
    assert len(line) == 1 and "MP" in line[0] and "re = " in line[0] and "Kh = " in line[0]
    assert np.isfinite(files.summary.hesd["balance"])
