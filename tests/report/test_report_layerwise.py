"""The layer-wise (local) Hessians in ``hesslens analyze``'s summary, report folder, page and terminal line."""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import math
import re

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import hesslens as hl
from hesslens.analysis.layerwise import COLUMNS, METRICS
from hesslens.report import AnalysisSettings, analyze_operator, load_summary, write_report
from hesslens.report.analysis import STEPS
from hesslens.report.layerwise_entry import LAYERWISE_COST_LIMIT, layerwise_item, layerwise_options, layerwise_summary
from hesslens.report.html import fmt

from ._cases import tiny_batches, tiny_model
from ._summaries import make_summary

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FAST = AnalysisSettings(seed=2, probes=3, steps=8, trace_matvecs=12)


def _reject_constants(name):
    raise AssertionError(f"non-standard JSON constant {name}")


def _section(page: str, heading: str) -> str:
    start = page.index(f">{heading}</h2>")
    end = page.find("<h2", start)
    return page[start:end if end >= 0 else None]


def _same_tables(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Equal tables: the same columns, strings and flags, and numbers equal (NaN where NaN)."""
    assert list(a.columns) == list(b.columns) == list(COLUMNS) and len(a) == len(b)
    for column in COLUMNS:
        if column in METRICS:
            np.testing.assert_array_equal(a[column].to_numpy(float), b[column].to_numpy(float), err_msg=column)
        else:
            assert a[column].tolist() == b[column].tolist(), column


@pytest.fixture(scope="module")
def analysed():
    op = hl.HessianOperator(tiny_model(), nn.CrossEntropyLoss(), tiny_batches())
    return op, analyze_operator(op, FAST, progress=False)


def test_the_summary_holds_hl_layerwise_of_the_same_operator(analysed):
    op, s = analysed
    lw = s.layerwise
    assert s.settings["layerwise"] is True and s.timings["layerwise"] > 0
    # the analysis's own settings (steps capped at n like the density's): the tiny model is cheap enough
    assert lw["notes"] == [] and {k: lw["settings"][k] for k in ("steps", "probes", "seed", "trace_matvecs")} == \
        {"steps": 8, "probes": 3, "seed": 2, "trace_matvecs": 12}
    options, notes = layerwise_options(op, FAST, s.eigen["matvecs"] + s.trace["matvecs"] + s.density["matvecs"])
    assert notes == [] and {k: options[k] for k in ("steps", "probes", "seed", "trace_matvecs")} == \
        {"steps": 8, "probes": 3, "seed": 2, "trace_matvecs": 12}
    direct = hl.layerwise(op, **options, progress=False)
    assert [r["block"] for r in lw["table"]] == ["0", "2"] == list(direct.names)
    _same_tables(pd.DataFrame(lw["table"], columns=list(COLUMNS)), direct.table)
    assert lw["matvecs"] == direct.matvecs and lw["engine"] == op.engine
    for name, d in lw["densities"].items():
        np.testing.assert_array_equal(hl.SpectralDensity.from_dict(d).nodes, direct.densities[name].nodes)
    assert lw["ranges"] == [[list(r) for r in ranges] for ranges in direct.blocks.ranges]


def test_slq_blocks_also_equal_a_direct_call(analysed):
    """With the SLQ path (exact_below=0 via the options), the summary's table is still hl.layerwise's."""
    op, _ = analysed
    lw = hl.layerwise(op, steps=8, probes=3, seed=2, trace_matvecs=12, exact_below=0, progress=False)
    entry = layerwise_summary(lw)
    assert not any(r["exact"] for r in entry["table"])
    loaded = load_summary(make_summary(layerwise=entry).to_json())  # through strict JSON and back
    again = layerwise_item(loaded)
    _same_tables(again.table, lw.table)
    assert again.densities["0"].probes == 3 and again.settings["exact_below"] == 0


def test_json_is_strict_and_round_trips_through_the_file(analysed, tmp_path):
    op, s = analysed
    files = write_report(s, tmp_path / "r")
    text = files.summary_json.read_text()
    written = json.loads(text, parse_constant=_reject_constants)  # NaN (exact blocks' stderrs) written as null
    rows = written["layerwise"]["table"]
    assert rows[0]["neg_mass_stderr"] is None and math.isnan(s.layerwise["table"][0]["neg_mass_stderr"])
    assert set(rows[0]) == set(COLUMNS)
    assert all(isinstance(r["warnings"], str) and isinstance(r["hesd_type"], str) for r in rows)
    loaded = load_summary(files.summary_json)
    assert loaded.layerwise == written["layerwise"] and loaded.settings["layerwise"] is True
    again = layerwise_item(loaded)
    _same_tables(again.table, hl.layerwise(op, **layerwise_options(op, FAST, 10**6)[0], progress=False).table)
    assert again.names == ("0", "2") and again.blocks.sizes == (24, 15)


def test_layerwise_png_is_written_and_shown_after_the_hesd_section(analysed, tmp_path):
    _, s = analysed
    files = write_report(s, tmp_path / "r")
    png = (files.folder / "layerwise.png").read_bytes()
    assert files.layerwise_png == files.folder / "layerwise.png" and png.startswith(PNG_SIGNATURE)
    assert sorted(p.name for p in files.folder.iterdir()) == ["density.png", "hesd.png", "layerwise.png",
                                                              "report.html", "summary.json"]
    page = files.report_html.read_text()
    headings = re.findall(r"<h2[^>]*>([^<]+)</h2>", page)
    assert headings[headings.index("HESD type and criteria") + 1] == "Layer-wise (local) Hessians"
    section = _section(page, "Layer-wise (local) Hessians")
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', section)
    assert [base64.b64decode(i) for i in images] == [png]  # embedded there, and only there
    flat = " ".join(section.split())
    assert "H_ii" in flat and "every other parameter held fixed" in flat and "The warnings are numerical only" in flat
    # two Linear blocks: outside the family the study's rules were learned on, and the page says so
    assert s.layerwise["diagnostics"] == [] and s.layerwise["diagnosable"] is False
    assert "No diagnosis: the rules learned by hesslens's layerwise study" in html.unescape(flat) and "three Linear blocks" in flat
    for heading in ("Block", "Type", "n_params", "λ_max", "λ_min", "trace ± stderr", "neg_mass", "condition",
                    "effective_rank", "spectral_entropy", "Kh", "HESD type", "Warnings"):
        assert f"<th>{heading}</th>" in section, heading
    for row in s.layerwise["table"]:
        assert f"<tr><th>{row['block']}</th><td>Linear</td>" in section
        assert fmt(row["lambda_max"], 4) in section
    # the figure draws one panel per block, named by the block
    fig = layerwise_item(load_summary(files.summary_json)).plot()
    titles = [ax.get_title() for ax in fig.axes if ax.axison]
    assert len(titles) == 2 and titles[0].startswith("0\nLinear") and titles[1].startswith("2\nLinear")


def test_the_studys_diagnoses_reach_the_summary_and_the_page(tmp_path):
    """A memorising two-hidden-layer MLP: hl.layerwise's evidence-based diagnoses, in summary.json and on the page."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(24, 5, generator=g), torch.randint(0, 3, (24,), generator=g)
    model = hl.models.mlp(5, (64, 64), 3, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):  # memorise 24 points: the hidden block's curvature per parameter collapses
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    op = hl.HessianOperator(model, nn.CrossEntropyLoss(), (x, y))
    s = analyze_operator(op, FAST, progress=False)
    direct = hl.layerwise(op, **layerwise_options(op, FAST, s.eigen["matvecs"] + s.trace["matvecs"]
                                                  + s.density["matvecs"])[0], progress=False)
    assert direct.diagnostics and s.layerwise["diagnosable"] is True
    assert s.layerwise["diagnostics"] == [{"block": b, "message": m} for b, m in direct.diagnostics]
    assert any(d["message"].startswith("overfitting") for d in s.layerwise["diagnostics"])
    files = write_report(s, tmp_path / "r")
    assert load_summary(files.summary_json).layerwise["diagnostics"] == s.layerwise["diagnostics"]
    flat = html.unescape(" ".join(_section(files.report_html.read_text(), "Layer-wise (local) Hessians").split()))
    assert "Diagnosis: overfitting (over-parameterised and memorising its training set)" in flat
    assert "No diagnosis" not in flat


def test_layerwise_false_omits_the_entry_the_figure_and_the_section(tmp_path):
    op = hl.HessianOperator(tiny_model(), nn.CrossEntropyLoss(), tiny_batches())
    s = analyze_operator(op, dataclasses.replace(FAST, layerwise=False), progress=False)
    assert s.layerwise == {} and s.settings["layerwise"] is False and "layerwise" not in s.timings
    steps = []
    analyze_operator(op, dataclasses.replace(FAST, layerwise=False), progress=False, on_step=steps.append)
    assert steps == list(STEPS[:-1])
    files = write_report(s, tmp_path / "r")
    assert files.layerwise_png is None and not (files.folder / "layerwise.png").exists()
    assert "Layer-wise (local) Hessians" not in files.report_html.read_text()
    with pytest.raises(hl.InvalidInputError, match="layerwise must be True or False"):
        AnalysisSettings(layerwise="yes")


def test_an_operator_without_a_model_has_no_layerwise_table():
    s = analyze_operator(torch.diag(torch.tensor([3.0, 1.0, -0.5, 0.25], dtype=torch.float64)),
                         AnalysisSettings(probes=2, steps=4, trace_matvecs=12), progress=False)
    assert s.layerwise == {} and s.settings["layerwise"] is False


def test_a_summary_written_before_layerwise_still_loads(analysed, tmp_path):
    _, s = analysed
    d = json.loads(s.to_json())
    d.pop("layerwise")
    d["settings"].pop("layerwise")
    d.pop("hesd")  # and one from before the HESD entry, too
    path = tmp_path / "old.json"
    path.write_text(json.dumps(d))
    old = load_summary(path)
    assert old.layerwise == {} and old.hesd == {} and layerwise_item(old) is None
    assert old.lambda_max == json.loads(s.to_json())["lambda_max"]
    files = write_report(old, tmp_path / "r")
    assert files.layerwise_png is None and not (files.folder / "layerwise.png").exists()
    assert "Layer-wise (local) Hessians" not in files.report_html.read_text()
    # an empty entry is not written at all: such a file reads as an older one
    hand_made = make_summary().to_dict()
    assert "layerwise" not in hand_made and load_summary(json.dumps(hand_made)).layerwise == {}


def test_settings_are_lowered_when_the_layerwise_step_would_cost_too_much():
    """Blocks of the default model's shapes (1,040 and 170 parameters) against its main analysis's 969
    products: forming both exactly (1,210 products) is over the limit, so the small block stays exact and
    the large one gets SLQ with fewer probes and steps, within the limit, and the note says so."""
    from hesslens.defaults import build_model

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(20, 64, generator=g, dtype=torch.float64), torch.randint(0, 10, (20,), generator=g)
    op = hl.HessianOperator(build_model(), nn.CrossEntropyLoss(), (x, y))
    settings = AnalysisSettings()
    options, notes = layerwise_options(op, settings, 969)
    assert options["seed"] == 0 and options["trace_matvecs"] == 100 and options["blocks"] == "auto"
    assert options["probes"] < settings.probes and options["exact_below"] >= 170 > 0 and options["exact_below"] < 1040
    from hesslens.report.layerwise_entry import _layerwise_cost

    cost = _layerwise_cost((1040, 170), options["steps"], options["probes"], 100, options["exact_below"])
    assert cost <= LAYERWISE_COST_LIMIT * 969 < 1210
    (note,) = notes
    assert "1,210 products" in note and "probes 10 → " in note and "969" in note
    # plenty of room: the analysis's own settings, both blocks exact, no note
    options, notes = layerwise_options(op, settings, 10_000)
    assert notes == [] and (options["steps"], options["probes"], options["exact_below"]) == (80, 10, 2048)


def test_terminal_line(analysed, tmp_path):
    from hesslens.cli import summary_table

    _, s = analysed
    lines = summary_table(write_report(s, tmp_path / "r")).splitlines()
    (line,) = [ln for ln in lines if ln.strip().startswith("layerwise")]
    assert "2 blocks (2 exact)" in line and "max lambda_max" in line and "min lambda_min" in line
    assert line.isascii() and len(line) < 120
    assert [ln.split()[0] for ln in lines].index("layerwise") == [ln.split()[0] for ln in lines].index("hesd") + 1
    off = summary_table(write_report(dataclasses.replace(s, layerwise={}), tmp_path / "q"))
    assert "layerwise" not in off
