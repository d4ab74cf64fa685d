"""A study's report comes from the shared renderer, and its default figure shows the spread over seeds."""

from __future__ import annotations

import math

import numpy as np
from _toy_study import STUDY
from matplotlib.container import ErrorbarContainer
from scipy import stats

from hesslens.render import CSS, table
from hesslens.studies import Store, render_report, run_study
from hesslens.studies.export import results_frame
from hesslens.studies.reporting import metrics_figure


def _frame(out):
    with Store(out / "study.sqlite") as store:
        return results_frame(store.runs("toy"))


def test_two_seeds_draw_the_mean_with_t_interval_error_bars(tmp_path):
    run_study(STUDY, {"x": [1.0, 2.0, 3.0]}, tmp_path, seeds=2, progress=False)
    df = _frame(tmp_path)
    fig, caption = metrics_figure(df, STUDY)
    assert "mean over 2 seeds" in caption and "95 % t confidence interval" in caption
    ax = next(a for a in fig.axes if a.get_ylabel() == "y")
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 1
    line, _, (segments,) = bars[0].lines
    # y = x² + seed: mean x² + 0.5, half-width t(0.975, 1) · s/√2 with s = √0.5.
    np.testing.assert_allclose(line.get_ydata(), [1.5, 4.5, 9.5])
    half = stats.t.ppf(0.975, 1) * math.sqrt(0.5) / math.sqrt(2)
    np.testing.assert_allclose([seg[1][1] - seg[0][1] for seg in segments.get_segments()], [2 * half] * 3)
    # Every run is drawn too; the y-axis spans the data (with margins), with no offset.
    assert len(ax.collections[0].get_offsets()) == 6
    low, high = ax.get_ylim()
    assert low <= 1.5 - half and high >= 9.5 + half and high - low < 1.5 * (9.5 - 1.5 + 2 * half)
    assert ax.yaxis.get_major_formatter().get_useOffset() is False
    # The report says so and is rendered by hesslens.render.
    files = render_report(STUDY, tmp_path)
    md, page = files.markdown.read_text(), files.html.read_text()
    assert [t for t, _ in files.figures] == [caption] and f"*{caption}*" in md
    assert CSS in page and f"<figcaption>{caption}</figcaption>" in page
    shown = df.drop(columns=["mode", "sleep", "log", "tags"])
    assert table(shown, max_rows=200, blank="—", more="{n} more rows in results.csv") in md
    assert table(shown, "html", max_rows=200, blank="—") in page
    assert md.startswith("# Study `toy`\n") and "<h1>Study <code>toy</code></h1>" in page


def test_one_seed_draws_points_and_the_mean_line(tmp_path):
    run_study(STUDY, {"x": [1.0, 2.0, 3.0]}, tmp_path, progress=False)
    fig, caption = metrics_figure(_frame(tmp_path), STUDY)
    assert caption == "metrics against x"
    assert not any(isinstance(c, ErrorbarContainer) for a in fig.axes for c in a.containers)


def test_preset_note_says_when_a_page_holds_only_smoke_runs():
    from hesslens.studies.reporting import preset_note

    assert preset_note({"smoke": 15}).startswith("SMOKE RUNS ONLY")
    both = preset_note({"smoke": 15, "full": 234})
    assert "SMOKE RUNS ONLY" not in both and "smoke (15 runs)" in both and "full (234 runs)" in both
    assert "none recorded" in preset_note({})
