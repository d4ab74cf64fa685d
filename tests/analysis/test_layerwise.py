"""hl.layerwise: the per-block table against dense float64 references — the dense Hessian sliced into its
diagonal blocks, each diagonalised, every metric recomputed with NumPy — for exactly formed blocks (to
round-off) and for SLQ blocks with steps ≥ the block size (Lanczos is then exact: nodes are the
eigenvalues, weights the probe's squared projections); "auto" blocks of an MLP, a CNN with BatchNorm and
a tiny transformer layer; user groups; one operator; no side effects; refusals; figures."""

from __future__ import annotations

import functools
import importlib
import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

import hesslens as hl
from hesslens.errors import InvalidInputError
from hesslens.linalg.random import generator, rademacher, rademacher_columns, rademacher_signs
from hesslens.operators.blocks import BlockView
from hesslens.operators.hessian import HessianOperator
from hesslens.report.layerwise_figures import block_label

from _block_models import DT, block_model

CE = nn.CrossEntropyLoss()
# the module (hesslens.analysis.layerwise, the attribute, is the function)
layerwise_module = importlib.import_module("hesslens.analysis.layerwise")


@functools.lru_cache(maxsize=None)
def case(name: str):
    """(model, data, dense float64 Hessian) of a tiny model; the tests only read them."""
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model, data = block_model(name, g)
    dense = HessianOperator(model, CE, data, engine="double_backward").dense().numpy()
    return model, data, dense


AUTO = {
    "mlp": (("0", "Linear", 30), ("2", "Linear", 21)),
    "cnn-bn": (("0", "Conv2d", 20), ("1", "BatchNorm2d", 4), ("4", "Linear", 99)),
    "transformer": (("layer.self_attn", "MultiheadAttention", 60), ("layer.self_attn.out_proj", "Linear", 20),
                    ("layer.linear1", "Linear", 30), ("layer.linear2", "Linear", 28), ("layer.norm1", "LayerNorm", 8),
                    ("layer.norm2", "LayerNorm", 8), ("head", "Linear", 10)),
}


def indices(view: BlockView, block: str) -> np.ndarray:
    return np.concatenate([np.arange(s.start, s.stop) for s in view.slices(block)])


def reference(nodes: np.ndarray, weights: np.ndarray, n: int) -> dict[str, float]:
    """Every metric of one quadrature rule (nodes, weights) of an n×n block, in plain NumPy."""
    a = np.abs(nodes)
    p, q = (nodes * weights)[nodes > 0].sum(), (a * weights)[nodes < 0].sum()
    m1 = (a * weights).sum()
    mass = a * weights / m1
    keep = mass > 0
    entropy = math.log(n) - float((mass[keep] * np.log(mass[keep] / weights[keep])).sum())
    pos, neg = nodes > 0, nodes < 0
    return {"neg_mass": q / (p + q), "condition": a.max() / a[a > 1e-3 * a.max()].min(),
            "stable_rank": n * (weights * nodes).sum() / nodes.max(), "stable_rank_abs": n * m1 / a.max(),
            "effective_rank": math.exp(entropy), "spectral_entropy": entropy / math.log(n),
            "kh": ((a * weights)[neg] ** 0.5).sum() / ((a * weights)[pos] ** 0.5).sum(),
            "re": abs(nodes.min() / nodes.max()), "balance": (p - q) / (p + q)}


TOLERANCES = {"neg_mass": 1e-10, "kh": 1e-6, "re": 1e-10, "balance": 1e-10}  # absolute; round-off zeros enter these


def assert_metrics(row, expected: dict[str, float], rel: float = 1e-9) -> None:
    for key, value in expected.items():
        assert row[key] == pytest.approx(value, rel=rel, abs=TOLERANCES.get(key, 0.0)), key


@pytest.mark.parametrize("name", list(AUTO))
def test_exact_blocks_match_the_dense_reference(name):
    model, data, h = case(name)
    lw = hl.layerwise(model, CE, data, engine="double_backward")
    t = lw.table
    assert list(t.columns) == list(layerwise_module.COLUMNS)
    assert [tuple(r) for r in t[["block", "type", "n_params"]].itertuples(index=False)] == list(AUTO[name])
    assert t["exact"].all() and (t["trace_stderr"] == 0).all() and (t["lambda_max_residual"] == 0).all()
    for row in t.to_dict("records"):
        idx = indices(lw.blocks, row["block"])
        eig = np.linalg.eigvalsh(h[np.ix_(idx, idx)])
        n = len(eig)
        scale = np.abs(eig).max()
        assert row["lambda_max"] == pytest.approx(eig[-1], abs=1e-12 * scale)
        assert row["lambda_min"] == pytest.approx(eig[0], abs=1e-12 * scale)
        assert row["trace"] == pytest.approx(np.trace(h[np.ix_(idx, idx)]), abs=1e-12 * scale * n)
        assert_metrics(row, reference(eig, np.full(n, 1 / n), n))
        assert row["hesd_type"] == ("QS" if scale < 1e-4 else "MP" if row["balance"] >= 0 else "MN")
        assert lw.densities[row["block"]].nodes[0] == pytest.approx(eig, abs=1e-12 * scale)
        assert row["parameters"] == ", ".join(lw.blocks.params[lw.blocks.index(row["block"])])


@pytest.mark.parametrize("name", ["mlp", "transformer"])
def test_slq_blocks_with_enough_steps_match_the_dense_reference(name):
    """exact_below=0: every block by SLQ with steps ≥ its size. Each block's probe r is the rows I_i of the
    whole operator's r-th Rademacher probe (seed 0); Lanczos with full reorthogonalisation then returns the
    block's eigenvalues as nodes and the squared projections (q_jᵀ v̂)² as weights, so every metric equals
    the NumPy formula on that exact quadrature rule. The trace is Hutchinson through the whole operator."""
    model, data, h = case(name)
    steps, probes, m = max(s for _, _, s in AUTO[name]), 3, 12
    lw = hl.layerwise(model, CE, data, exact_below=0, steps=steps, probes=probes, trace_matvecs=m, tol=1e-10,
                      engine="double_backward", progress=False)
    assert not lw.table["exact"].any()
    signs = rademacher_columns(rademacher_signs(h.shape[0], probes, generator(0))).numpy()
    z = rademacher(h.shape[0], m, generator(0)).numpy()
    hz = h @ z
    for row in lw.table.to_dict("records"):
        idx = indices(lw.blocks, row["block"])
        eig, vectors = np.linalg.eigh(h[np.ix_(idx, idx)])
        n, scale = len(eig), np.abs(eig).max()
        assert row["lambda_max"] == pytest.approx(eig[-1], abs=1e-8 * scale)
        assert row["lambda_min"] == pytest.approx(eig[0], abs=1e-8 * scale)
        runs = []
        for r in range(probes):
            v = signs[idx, r] / math.sqrt(n)
            runs.append(reference(eig, (vectors.T @ v) ** 2, n))
        expected = {key: float(np.mean([run[key] for run in runs])) for key in runs[0]}
        assert_metrics(row, expected, rel=1e-7)
        assert row["condition"] == pytest.approx(reference(eig, np.full(n, 1 / n), n)["condition"], rel=1e-7)
        forms = (z[idx] * hz[idx]).sum(0)  # z_iᵀ (H z)_i
        assert row["trace"] == pytest.approx(forms.mean(), rel=1e-9, abs=1e-12 * scale)
        assert row["trace_stderr"] == pytest.approx(forms.std(ddof=1) / math.sqrt(m), rel=1e-9)
        assert abs(row["trace"] - eig.sum()) <= 5 * row["trace_stderr"] + 1e-12
        assert row["neg_mass_stderr"] == pytest.approx(np.std([x["neg_mass"] for x in runs], ddof=1) / math.sqrt(3),
                                                       rel=1e-6, abs=1e-10)
        assert "SLQ steps exceed block size" in row["warnings"]


def test_mixed_blocks_and_user_groups():
    """User groups by glob, module and parameter; a group spanning two modules joins their types. Blocks up
    to exact_below are exact, the others SLQ; the exact ones still match the dense reference."""
    model, data, h = case("cnn-bn")
    groups = {"features": ["0.*", model[1]], "head": [model[4].weight, "4.bias"]}
    lw = hl.layerwise(model, CE, data, blocks=groups, exact_below=30, steps=40, probes=2, engine="double_backward")
    t = lw.table.set_index("block")
    assert list(t.index) == ["features", "head"] and list(t["type"]) == ["Conv2d+BatchNorm2d", "Linear"]
    assert list(t["n_params"]) == [24, 99] and list(t["exact"]) == [True, False]
    assert t.loc["features", "module_type"] == "torch.nn.modules.conv.Conv2d+torch.nn.modules.batchnorm.BatchNorm2d"
    idx = indices(lw.blocks, "features")
    eig = np.linalg.eigvalsh(h[np.ix_(idx, idx)])
    assert_metrics(t.loc["features"], reference(eig, np.full(24, 1 / 24), 24))
    idx = indices(lw.blocks, "head")
    eig = np.linalg.eigvalsh(h[np.ix_(idx, idx)])
    assert t.loc["head", "lambda_max"] == pytest.approx(eig[-1], rel=1e-5)
    assert lw.densities["head"].probes == 2 and lw.densities["features"].probes == 1
    assert t.loc["head", "parameters"] == "4.weight, 4.bias"


def test_one_operator_one_product_per_step(monkeypatch):
    """One HessianOperator for the whole model; the exact blocks' identity columns go through it in ONE
    block product (each block's columns pruned to its own parameters); every column is counted in matvecs."""
    model, data, _ = case("mlp")
    built = []
    original = HessianOperator.__init__

    def counting(self, *args, **kwargs):
        built.append(kwargs.get("expected_matvecs"))
        original(self, *args, **kwargs)

    monkeypatch.setattr(HessianOperator, "__init__", counting)
    lw = hl.layerwise(model, CE, data, exact_below=25, steps=10, probes=2, trace_matvecs=4, engine="double_backward")
    assert len(built) == 1 and list(lw.table["exact"]) == [False, True]
    op = lw.blocks.operator.source
    assert isinstance(op, HessianOperator) and lw.engine == op.engine and op.matvecs == lw.matvecs
    calls = []
    monkeypatch.setattr(op, "block_torch_matmat", lambda groups, vs, inner=op.block_torch_matmat:
                        (calls.append([v.shape[1] for v in vs]), inner(groups, vs))[1])
    exact_only = hl.layerwise(op)
    assert len(built) == 1 and calls == [[30, 21]] and exact_only.matvecs == 51  # 30 + 21 identity columns, one call


def test_inputs_an_operator_or_a_view_give_the_same_table():
    model, data, _ = case("mlp")
    op = HessianOperator(model, CE, data, engine="double_backward")
    direct = hl.layerwise(model, CE, data, engine="double_backward").table
    numeric = [c for c in layerwise_module.METRICS]
    for other in (hl.layerwise(op).table, hl.layerwise(hl.blocks(op)).table):
        assert list(other["block"]) == list(direct["block"])
        np.testing.assert_allclose(other[numeric].to_numpy(float), direct[numeric].to_numpy(float), rtol=1e-12,
                                   atol=1e-15)
    per_parameter = hl.layerwise(op, blocks="parameters").table
    assert list(per_parameter["block"]) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert list(per_parameter["type"]) == ["Linear"] * 4


def test_planted_block_spectra_of_a_dense_matrix():
    """A BlockView of a dense matrix with planted diagonal blocks (and a coupling that the local Hessians
    ignore): uniform, indefinite, negative-only and zero blocks, with their exact metrics and warnings."""
    rng = np.random.default_rng(0)
    planted = {"flat": np.full(4, 2.0), "mixed": np.array([3.0, 1.0, -0.5]), "negative": np.array([-1.0, -2.0]),
               "zero": np.zeros(3)}
    sizes = [len(v) for v in planted.values()]
    a = rng.standard_normal((sum(sizes), sum(sizes))) * 0.1
    a = a + a.T
    slices, start = {}, 0
    for name, values in planted.items():
        q, _ = np.linalg.qr(rng.standard_normal((len(values), len(values))))
        a[start:start + len(values), start:start + len(values)] = q @ np.diag(values) @ q.T
        slices[name], start = slice(start, start + len(values)), start + len(values)
    lw = hl.layerwise(BlockView.from_slices(a, slices))
    t = lw.table.set_index("block")
    assert (t["type"] == "").all() and t["exact"].all() and lw.engine is None
    flat, mixed, neg, zero = (t.loc[k] for k in planted)
    assert flat["condition"] == pytest.approx(1.0) and flat["effective_rank"] == pytest.approx(4.0)
    assert flat["stable_rank"] == pytest.approx(4.0) and flat["neg_mass"] == pytest.approx(0.0, abs=1e-14)
    assert mixed["neg_mass"] == pytest.approx(0.5 / 4.5) and mixed["condition"] == pytest.approx(6.0)
    assert mixed["trace"] == pytest.approx(3.5) and mixed["lambda_min"] == pytest.approx(-0.5)
    assert neg["hesd_type"] == "MN" and math.isnan(neg["stable_rank"]) and math.isnan(neg["kh"])
    for text in ("criteria not applicable: MN", "criteria undefined: no positive node", "stable_rank undefined"):
        assert text in neg["warnings"]
    assert zero["hesd_type"] == "QS" and "quasi-singular" in zero["warnings"] and math.isnan(zero["effective_rank"])
    assert flat["warnings"] == ""


def test_public_names():
    from hesslens.analysis.layerwise import Layerwise, layerwise
    from hesslens.report import layerwise_figures

    assert hl.layerwise is layerwise and hl.Layerwise is Layerwise
    assert hl.plot_layerwise is layerwise_figures.plot_layerwise
    assert hl.layerwise_heatmap is layerwise_figures.layerwise_heatmap
    assert hl.analysis.layerwise is layerwise and hl.analysis.Layerwise is Layerwise


def test_warnings_are_numerical_and_there_is_no_diagnosis():
    model, data, _ = case("mlp")
    lw = hl.layerwise(model, CE, data, engine="double_backward")
    # the evidence-based rules apply to three-Linear-block MLPs only (tests/analysis/test_layer_rules.py)
    assert len(lw.table) != 3 and lw.diagnostics == ()
    assert not [c for c in lw.table.columns if "diagnos" in c or "overfit" in c]
    words = ("parameteris", "overfit", "underfit", "expressiv", "generaliz")
    assert not any(w in text for text in lw.table["warnings"] for w in words)


def test_the_model_is_left_exactly_as_it_was():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.Tanh(), nn.Flatten(),
                          nn.Linear(32, 3)).to(DT)
    model.train()
    model[0].bias.requires_grad_(False)
    x, y = torch.randn(8, 1, 4, 4, dtype=DT), torch.randint(0, 3, (8,))
    CE(model(x), y).backward()
    model[1].running_mean.add_(0.3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads = {n: (p.grad, None if p.grad is None else p.grad.clone()) for n, p in model.named_parameters()}
    flags = [(m.training, [p.requires_grad for p in m.parameters(recurse=False)]) for m in model.modules()]
    rng = torch.random.get_rng_state()
    lw = hl.layerwise(model, CE, (x, y), mode="train", exact_below=25, steps=8, probes=2)
    assert "0.bias" not in lw.table["parameters"].iloc[0]  # not trainable: not in H
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    for n, p in model.named_parameters():
        assert p.grad is grads[n][0] and (p.grad is None or torch.equal(p.grad, grads[n][1]))
    assert flags == [(m.training, [p.requires_grad for p in m.parameters(recurse=False)]) for m in model.modules()]
    assert torch.equal(rng, torch.random.get_rng_state())


def test_detached_results_keep_the_blocks_and_refuse_products():
    model, data, _ = case("mlp")
    lw = hl.layerwise(model, CE, data, engine="double_backward")
    kept = lw.detached()
    assert kept.table is lw.table and kept.blocks.names == lw.blocks.names and kept.blocks.ranges == lw.blocks.ranges
    assert kept.blocks.operator.source is None and "2 blocks: 2 exact, 0 SLQ" in repr(kept)
    with pytest.raises(InvalidInputError, match="detached"):
        kept.blocks.matmat([torch.ones(30, 1, dtype=DT), None])


@pytest.mark.parametrize("kwargs, match", [
    ({"steps": 0}, "steps"), ({"probes": True}, "probes"), ({"trace_matvecs": 1}, "trace_matvecs"),
    ({"exact_below": -1}, "exact_below"), ({"rel_tol": 1.0}, "rel_tol"), ({"tol": 0.0}, "tol"),
    ({"hesd_options": {"reference": 1.0}}, "unknown keys"), ({"hesd_options": {"margin": 2.0}}, "hesd_options: margin"),
    ({"blocks": ["nothing.*"]}, "matches no parameter"), ({"blocks": 3}, "spec must be"),
])
def test_bad_arguments_are_refused(kwargs, match):
    model, data, _ = case("mlp")
    with pytest.raises(InvalidInputError, match=match):
        hl.layerwise(model, CE, data, engine="double_backward", **kwargs)


def test_bad_inputs_are_refused():
    model, data, _ = case("mlp")
    with pytest.raises(InvalidInputError, match="needs an nn.Module"):
        hl.layerwise(np.eye(3))
    with pytest.raises(InvalidInputError, match="needs loss_fn"):
        hl.layerwise(model, CE)
    op = HessianOperator(model, CE, data, engine="double_backward")
    with pytest.raises(InvalidInputError, match="drop loss_fn, data"):
        hl.layerwise(op, CE, data)
    with pytest.raises(InvalidInputError, match="drop mode, engine"):
        hl.layerwise(op, mode="train", engine="linearize")
    with pytest.raises(InvalidInputError, match="drop blocks"):
        hl.layerwise(hl.blocks(op), blocks="parameters")


class LongNames(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder_with_a_rather_long_name = nn.Sequential(nn.Linear(3, 3), nn.Tanh())
        self.projection_head_of_the_model_that_is_very_long_indeed = nn.Linear(3, 2)

    def forward(self, x):
        return self.projection_head_of_the_model_that_is_very_long_indeed(self.encoder_with_a_rather_long_name(x))


def test_figures():
    torch.manual_seed(0)
    model = LongNames().to(DT)
    x, y = torch.randn(10, 3, dtype=DT), torch.randint(0, 2, (10,))
    first = hl.layerwise(model, CE, (x, y), engine="double_backward")
    with torch.no_grad():
        model.projection_head_of_the_model_that_is_very_long_indeed.weight.mul_(3)
    second = hl.layerwise(model, CE, (x, y), engine="double_backward")
    fig = first.plot()
    assert isinstance(fig, Figure) and getattr(fig.canvas, "manager", None) is None  # bare Figure, no pyplot
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
    assert len(panels) == 2
    for ax, name in zip(panels, first.names):
        head, info = ax.get_title().rsplit("\n", 1)
        assert all(len(line) <= 28 for line in head.split("\n")) and len(head.split("\n")) <= 2
        assert "Linear" in info and "params" in info and first.table.set_index("block").loc[name, "hesd_type"] in info
        assert ax.get_yscale() == "log" and ax.get_xlim()[0] == pytest.approx(-ax.get_xlim()[1])
    assert block_label("a.b") == "a.b" and block_label("x" * 80).startswith("x" * 28)
    assert block_label("encoder.layers.0.self_attn.out_proj", 32, lines=1) == "encoder.la….0.self_attn.out_proj"
    assert hl.plot_layerwise(first).axes[0].get_title() == panels[0].get_title()
    heat = hl.layerwise_heatmap([first, second], "lambda_max", labels=["before", "after"])
    image = heat.axes[0].images[0]
    assert image.get_array().shape == (2, 2)
    assert [t.get_text() for t in heat.axes[0].get_xticklabels()] == ["before", "after"]
    assert image.get_array()[1, 1] == pytest.approx(second.table["lambda_max"].iloc[1])
    log = hl.layerwise_heatmap([(5, first), (9, second)], "condition", scale="log")
    assert type(log.axes[0].images[0].norm).__name__ == "LogNorm"
    assert [t.get_text() for t in log.axes[0].get_xticklabels()] == ["5", "9"]
    sym = hl.layerwise_heatmap([first, second], "lambda_min", scale="symlog")
    assert type(sym.axes[0].images[0].norm).__name__ == "SymLogNorm"
    with pytest.raises(InvalidInputError, match="metric must be a numeric column"):
        hl.layerwise_heatmap([first], "hesd_type")
    with pytest.raises(InvalidInputError, match="labels must be"):
        hl.layerwise_heatmap([first, second], "trace", labels=["one"])
    if (first.table["lambda_min"] <= 0).any():
        with pytest.raises(InvalidInputError, match="scale='log' needs"):
            hl.layerwise_heatmap([first], "lambda_min", scale="log")
    with pytest.raises(InvalidInputError, match="results must be"):
        hl.layerwise_heatmap([], "trace")
