"""hesd.png / hl.plot_hesd: log density over a symmetric axis, one curve per item, the type in the legend."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

import hesslens as hl
from hesslens.report.hesd_figure import FLOOR, PAD, SIGMA_FRACTION, hesd_figure, hesd_window, save_hesd_png

from ._summaries import NODES, WEIGHTS

#: Three spectra of different types: mainly positive, mainly negative, and a weakly positive one.
MP = hl.SpectralDensity(NODES, WEIGHTS)
MN = hl.SpectralDensity(-3 * NODES, WEIGHTS)
WEAK = hl.SpectralDensity.from_spectrum([-1.0, -0.5, 0.25, 0.5, 0.875])


def _lines(fig):
    """The density curves (the zero line is the only other line)."""
    ax = fig.axes[0]
    return [line for line in ax.get_lines() if len(line.get_xdata()) > 2]


def _legend(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def _live_nodes(sd):
    return sd.nodes[sd.weights > 0]


def test_symmetric_axis_covers_every_node_and_is_log():
    fig = hesd_figure([MP, MN, WEAK])
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    top = max(np.abs(_live_nodes(sd)).max() for sd in (MP, MN, WEAK))
    assert lo == -hi and hi == pytest.approx((1 + PAD) * top, rel=1e-12)
    for sd in (MP, MN, WEAK):
        assert lo < _live_nodes(sd).min() and _live_nodes(sd).max() < hi
    assert ax.get_yscale() == "log"
    assert [line.get_xdata()[0] for line in ax.get_lines() if len(line.get_xdata()) == 2] == [0.0]  # zero line


def test_one_line_per_item_in_distinct_colours():
    fig = hesd_figure([MP, MN, WEAK])
    lines = _lines(fig)
    assert len(lines) == 3 and len({line.get_color() for line in lines}) == 3
    assert len(_lines(hesd_figure(MP))) == 1


def test_legend_names_the_types_hesd_type_computes():
    items = [MP, MN, WEAK]
    kinds = [hl.hesd_type(sd) for sd in items]
    assert [k.kind for k in kinds] == ["MP", "MN", "MP"] and [k.decisive for k in kinds] == [True, True, False]
    texts = _legend(hesd_figure(items, labels=["a", "b", "c"]))
    assert texts == [f"{name}: {k.kind} ({'decisive' if k.decisive else 'weak'}), C = {k.balance:+.3f}"
                     for name, k in zip("abc", kinds)]


def test_an_assessment_keeps_its_own_type_and_label():
    collapsed = hl.SpectralDensity(1e-3 * NODES, WEIGHTS)
    a = hl.assess(collapsed, reference=MP, label="late")  # QS only against the reference
    assert a.hesd_type.kind == "QS" and hl.hesd_type(collapsed).kind == "MP"
    assert _legend(hesd_figure([MP, a])) == [f"spectrum 1: MP (decisive), C = {hl.hesd_type(MP).balance:+.3f}",
                                             f"late: QS (decisive), C = {a.hesd_type.balance:+.3f}"]


def test_a_spectrum_of_zeros_is_drawn_on_a_unit_window_as_qs():
    zeros = hl.SpectralDensity([[0.0, 0.0]], [[0.5, 0.5]])
    fig = hesd_figure(zeros)
    assert fig.axes[0].get_xlim() == (-(1 + PAD), 1 + PAD)
    assert _legend(fig) == ["HESD: QS (decisive), C undefined (every node is 0)"]


def test_curves_are_the_density_on_the_grid_with_the_common_sigma():
    fig = hesd_figure([MP, MN], num=501)
    b, sigma = hesd_window([MP, MN])
    assert sigma == pytest.approx(SIGMA_FRACTION * 2 * b, rel=1e-12)
    for line, sd in zip(_lines(fig), (MP, MN)):
        x, y = line.get_data()
        np.testing.assert_allclose(x, np.linspace(-b, b, 501), rtol=0, atol=1e-15)
        np.testing.assert_array_equal(y, sd.density(x, sigma))
        assert float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2)) == pytest.approx(1.0, abs=1e-5)  # integrates to 1
    assert f"σ = {sigma:.3g}" in fig.axes[0].get_title()
    peak = max(line.get_ydata().max() for line in _lines(fig))
    assert fig.axes[0].get_ylim()[0] == pytest.approx(FLOOR * peak, rel=1e-12)


def test_a_given_sigma_is_used_and_widens_the_axis_when_needed():
    fig = hesd_figure(MP, sigma=0.5)
    (line,) = _lines(fig)
    x, y = line.get_data()
    np.testing.assert_array_equal(y, MP.density(x, 0.5))
    assert fig.axes[0].get_xlim()[1] == pytest.approx(3.0 + 5 * 0.5)  # max|λ| + 5σ > 1.05 max|λ|


def test_draws_into_a_given_axes_and_saves_a_png(tmp_path):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    host = Figure()
    ax = host.subplots()
    assert hesd_figure(MP, ax=ax, title="mine") is host and ax.get_title() == "mine"
    path = save_hesd_png([MP, MN], tmp_path / "h.png")
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert plt.get_fignums() == before  # pyplot untouched
    assert hl.plot_hesd is hesd_figure


@pytest.mark.parametrize("kwargs, match", [
    ({"items": []}, "items is empty"),
    ({"items": "density"}, "items must be"),
    ({"items": np.array([1.0, 2.0])}, "items must be"),
    ({"items": [MP, 3]}, r"items\[1\]"),
    ({"items": [MP, MN], "labels": ["only one"]}, "labels has 1 entries for 2 items"),
    ({"items": MP, "labels": [3]}, "labels must be"),
    ({"items": MP, "sigma": 0.0}, "sigma must be"),
    ({"items": MP, "sigma": float("nan")}, "sigma must be"),
    ({"items": MP, "num": 1}, "num must be"),
    ({"items": MP, "num": 10.5}, "num must be"),
    ({"items": MP, "ax": "axes"}, "ax must be"),
])
def test_bad_input_is_refused(kwargs, match):
    items = kwargs.pop("items")
    with pytest.raises(hl.InvalidInputError, match=match):
        hesd_figure(items, **kwargs)
