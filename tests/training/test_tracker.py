"""Tracker: curvature along training, checked against exact spectra at every checkpoint."""

import copy

import matplotlib
import numpy as np
import pytest
import torch
from torch import nn

import hesslens as hl
from hesslens.training.tracker import Tracker, evenly_spaced

matplotlib.use("Agg")


def _problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(120, 5, generator=g, dtype=torch.float64)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 2)).double()
    return model, x, y


def _gd(model, x, y, lr, epochs, callback):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    snapshots = []
    for epoch in range(epochs):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        snapshots.append(copy.deepcopy(model))
        callback(model, epoch=epoch, step=epoch + 1, metrics={"note": "x", "train_loss": 0.0})
    return snapshots


def test_tracked_extremes_match_exact_spectra_at_every_checkpoint():
    model, x, y = _problem()
    tracker = Tracker(nn.CrossEntropyLoss(), (x, y), measure=("lambda_max", "lambda_min", "trace"), tol=1e-9, lr=0.5,
                      trace_matvecs=60)
    snapshots = _gd(model, x, y, 0.5, 6, tracker)
    df = tracker.history
    assert len(df) == 6 and list(df["epoch"]) == list(range(6))
    for (_, row), snap in zip(df.iterrows(), snapshots):
        exact = hl.exact_spectrum(hl.HessianOperator(snap, nn.CrossEntropyLoss(), (x, y)))
        assert row["lambda_max"] == pytest.approx(exact[-1], rel=1e-6)
        assert row["lambda_min"] == pytest.approx(exact[0], rel=1e-6, abs=1e-9)
        assert abs(row["trace"] - exact.sum()) <= 4 * row["trace_stderr"] + 1e-9
    assert df["note"].eq("x").all() and df["train_loss"].eq(0.0).all() and df["lr"].eq(0.5).all()


def test_warm_start_saves_products():
    model, x, y = _problem(1)
    warm = Tracker(nn.CrossEntropyLoss(), (x, y), tol=1e-8)
    cold = Tracker(nn.CrossEntropyLoss(), (x, y), tol=1e-8, warm_start=False)
    _gd(model, x, y, 0.05, 8, lambda m, **kw: (warm(m, **kw), cold(m, **kw)))
    w, c = warm.history, cold.history
    np.testing.assert_allclose(w["lambda_max"], c["lambda_max"], rtol=1e-7)
    assert w["lambda_max_matvecs"].iloc[1:].sum() < c["lambda_max_matvecs"].iloc[1:].sum()


def test_schedule_probes_and_figures():
    model, x, y = _problem(2)
    tracker = Tracker(nn.CrossEntropyLoss(), (x, y), every=2, measure=("lambda_max", "trace", "density"), lr=0.1,
                      slq_steps=10, slq_probes=3)
    for epoch in range(5):
        tracker.step(model, epoch=epoch)
    assert list(tracker.history["epoch"]) == [0, 2, 4]
    assert len(tracker.densities) == 3 and tracker.densities[0][1].nodes.shape == (3, 10)
    # fixed probes: the unchanged model gives identical estimates at every checkpoint
    assert tracker.history["trace"].nunique() == 1
    assert tracker.plot_lambda_max().axes and tracker.plot_density_heatmap().axes


def test_loggers_and_context_manager():
    model, x, y = _problem(3)
    seen = []

    class Logger:
        closed = False

        def log(self, metrics, step):
            seen.append((step, metrics))

        def close(self):
            Logger.closed = True

    with Tracker(nn.CrossEntropyLoss(), (x, y), unit="step", loggers=[Logger()]) as tracker:
        assert tracker.every_step
        tracker.step(model, epoch=0, step=7)
    assert Logger.closed and seen[0][0] == 7 and "lambda_max" in seen[0][1]


def test_bad_configuration():
    x, y = torch.randn(4, 2), torch.zeros(4, dtype=torch.long)
    with pytest.raises(hl.InvalidInputError, match="measure"):
        Tracker(nn.CrossEntropyLoss(), (x, y), measure=("curvature",))
    with pytest.raises(hl.InvalidInputError, match="unit"):
        Tracker(nn.CrossEntropyLoss(), (x, y), unit="minute")
    with pytest.raises(hl.InvalidInputError, match="data"):
        Tracker(nn.CrossEntropyLoss())
    with pytest.raises(hl.InvalidInputError, match="loggers"):
        Tracker(nn.CrossEntropyLoss(), (x, y), loggers=[3])
    with pytest.raises(hl.InvalidInputError, match="distributed must be None"):
        Tracker(nn.CrossEntropyLoss(), (x, y), distributed="yes")


def test_evenly_spaced_subset():
    x, y = torch.arange(5000.0)[:, None], torch.arange(5000)
    xs, ys = evenly_spaced(x, y, 1000)
    assert len(xs) == 1000 and xs[0, 0] == 0 and xs[-1, 0] == 4999 and torch.equal(xs[:, 0].long(), ys)


def test_tensorboard_logger_writes_events(tmp_path):
    pytest.importorskip("tensorboard")
    model, x, y = _problem(4)
    with Tracker(nn.CrossEntropyLoss(), (x, y), loggers=["tensorboard"], log_dir=str(tmp_path)) as tracker:
        tracker.step(model, epoch=0)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path))
    events.Reload()
    scalars = events.Scalars("hesslens/lambda_max")
    assert scalars[0].value == pytest.approx(tracker.history["lambda_max"].iloc[0], rel=1e-6)


# -- the measurement "hesd": type and criteria of each checkpoint's density ---------------------------------
HESD_OPTIONS = {"n": 0.7, "margin": 0.1}


def _kind_and_criteria(sd, reference, **options):
    kind = hl.hesd_type(sd, reference=reference, **{k: v for k, v in options.items() if k != "n"})
    crit = hl.hesd_criteria(sd, **{k: v for k, v in options.items() if k == "n"})
    return kind, crit


def _assert_row_is(row, kind, crit):
    assert row["hesd_type"] == kind.kind and row["hesd_decisive"] == kind.decisive
    assert row["hesd_balance"] == kind.balance and row["hesd_balance_stderr"] == kind.balance_stderr
    assert row["hesd_scale"] == kind.scale
    if kind.reference_scale is None:
        assert np.isnan(row["hesd_reference_scale"])
    else:
        assert row["hesd_reference_scale"] == kind.reference_scale
    if kind.kind == "MN":  # the criteria do not apply
        assert np.isnan(row["re"]) and np.isnan(row["kh"])
    else:
        assert row["re"] == crit.re and row["kh"] == crit.kh


def test_hesd_columns_are_type_and_criteria_of_the_recorded_density():
    model, x, y = _problem(5)
    both = Tracker(nn.CrossEntropyLoss(), (x, y), measure=("hesd", "density"), slq_steps=15, slq_probes=3,
                   hesd_options=HESD_OPTIONS)
    alone = Tracker(nn.CrossEntropyLoss(), (x, y), measure=("density",), slq_steps=15, slq_probes=3)
    _gd(model, x, y, 0.5, 4, lambda m, **kw: (both(m, **kw), alone(m, **kw)))
    df = both.history
    assert len(both.densities) == len(df) == 4 and [i for i, _ in both.densities] == [0, 1, 2, 3]
    first = both.densities[0][1]
    for (_, row), (_, sd) in zip(df.iterrows(), both.densities):
        _assert_row_is(row, *_kind_and_criteria(sd, first, **HESD_OPTIONS))
    assert (df["hesd_reference_scale"] == df["hesd_scale"].iloc[0]).all()  # the first checkpoint is the reference
    # one SLQ run serves both measurements: the same products and the same density as "density" alone
    assert (df["matvecs"] == 15 * 3).all() and (df["matvecs"] == alone.history["matvecs"]).all()
    for (_, a), (_, b) in zip(both.densities, alone.densities):
        np.testing.assert_array_equal(a.nodes, b.nodes)


def test_mn_checkpoints_have_no_criteria():
    """The negated loss has the negated Hessian: after some training (a mainly positive spectrum) a mainly
    negative one, where re and Kh do not apply."""
    model, x, y = _problem(6)
    _gd(model, x, y, 0.5, 10, lambda m, **kw: None)
    tracker = Tracker(lambda out, target: -nn.functional.cross_entropy(out, target), (x, y), measure=("hesd",),
                      slq_steps=15, slq_probes=3, hesd_reference=None)
    tracker.step(model, epoch=0)
    row = tracker.history.iloc[0]
    sd = tracker.densities[0][1]
    kind, crit = _kind_and_criteria(sd, None)
    assert kind.kind == "MN" and kind.decisive and crit.defined  # defined, but not applicable
    _assert_row_is(row, kind, crit)


def _collapse(reference, **options):
    """Two checkpoints of H over the first layer; between them the last layer is scaled by 2e-3, so every
    block of that Hessian (linear or quadratic in the last layer's weights) shrinks by ≥ 500×."""
    model, x, y = _problem(0)
    tracker = Tracker(nn.CrossEntropyLoss(), (x, y), measure=("hesd",), params="0.*", slq_steps=20, slq_probes=3,
                      hesd_reference=reference, hesd_options={"qs_floor": 1e-6, **options})
    tracker.step(model, epoch=0)
    with torch.no_grad():
        model[2].weight.mul_(2e-3)
    tracker.step(model, epoch=1)
    return tracker


def test_a_planted_collapse_is_qs_against_the_first_checkpoint_only():
    first, none = _collapse("first"), _collapse(None)
    early, late = (sd for _, sd in first.densities)
    h = first.history
    assert h["hesd_scale"].iloc[0] > 100 * h["hesd_scale"].iloc[1]  # the scale dropped more than 100×
    assert list(h["hesd_type"]) == ["MP", "QS"]
    _assert_row_is(h.iloc[1], *_kind_and_criteria(late, early, qs_floor=1e-6))
    assert h["hesd_reference_scale"].iloc[1] == h["hesd_scale"].iloc[0]
    assert np.isfinite(h["re"].iloc[1]) and np.isfinite(h["kh"].iloc[1])  # QS keeps the (unreliable) criteria
    # without a reference only the absolute floor applies, which the collapsed spectrum is above
    n = none.history
    assert n["hesd_type"].iloc[1] != "QS" and n["hesd_reference_scale"].isna().all()
    _assert_row_is(n.iloc[1], *_kind_and_criteria(late, None, qs_floor=1e-6))
    # a given reference scale: the same as the first checkpoint's when it is that scale
    given = _collapse(float(h["hesd_scale"].iloc[0]))
    assert list(given.history["hesd_type"]) == ["MP", "QS"]
    assert (given.history["hesd_reference_scale"] == h["hesd_scale"].iloc[0]).all()
    fig = first.plot_hesd()
    qs_marks = [line for ax in fig.axes for line in ax.get_lines() if line.get_label() == "QS"]
    assert len(qs_marks) == 1 and list(qs_marks[0].get_xdata()) == [1]
    assert list(qs_marks[0].get_ydata()) == [h["hesd_scale"].iloc[1]]


def test_loggers_get_numbers_only_not_the_type_string():
    model, x, y = _problem(7)
    seen = []

    class Logger:
        def log(self, metrics, step):
            seen.append(metrics)

        def close(self):
            pass

    tracker = Tracker(nn.CrossEntropyLoss(), (x, y), measure=("lambda_max", "hesd"), slq_steps=10, slq_probes=2,
                      loggers=[Logger()])
    tracker.step(model, epoch=0, metrics={"note": "text", "count": np.int64(3)})
    (metrics,) = seen
    row = tracker.history.iloc[0]
    assert "hesd_type" not in metrics and "note" not in metrics and isinstance(row["hesd_type"], str)
    assert all(type(v) is float for v in metrics.values())
    assert metrics["hesd_decisive"] == float(row["hesd_decisive"]) and metrics["count"] == 3.0
    for key in ("hesd_balance", "hesd_scale", "re", "kh", "lambda_max"):
        assert metrics[key] == row[key]


@pytest.mark.parametrize("kwargs, match", [
    ({"hesd_reference": "last"}, "hesd_reference must be"),
    ({"hesd_reference": 0.0}, "hesd_reference must be"),
    ({"hesd_reference": float("inf")}, "hesd_reference must be"),
    ({"hesd_reference": True}, "hesd_reference must be"),
    ({"hesd_options": [("margin", 0.1)]}, "hesd_options must be a dict"),
    ({"hesd_options": {"reference": 1.0}}, r"hesd_options has unknown keys \['reference'\]"),
    ({"hesd_options": {"margin": 2.0}}, r"hesd_options: margin must be in \[0, 1\]"),
    ({"hesd_options": {"qs_floor": -1.0}}, "hesd_options: qs_floor must be"),
    ({"hesd_options": {"n": 0}}, "hesd_options: n must be"),
])
def test_bad_hesd_configuration(kwargs, match):
    x, y = torch.randn(4, 2), torch.zeros(4, dtype=torch.long)
    with pytest.raises(hl.InvalidInputError, match=match):
        Tracker(nn.CrossEntropyLoss(), (x, y), measure=("hesd",), **kwargs)


def test_plot_hesd_needs_the_measurement():
    model, x, y = _problem(8)
    tracker = Tracker(nn.CrossEntropyLoss(), (x, y))
    tracker.step(model, epoch=0)
    with pytest.raises(hl.InvalidInputError, match="add 'hesd' to measure"):
        tracker.plot_hesd()


# -- the measurement "layerwise": per-block local Hessians at every checkpoint ---------------------------------

LAYERWISE = dict(measure=("layerwise",), slq_steps=12, slq_probes=2, trace_matvecs=8,
                 layerwise_options={"exact_below": 20})  # block "0" (48 parameters) by SLQ, "2" (18) exact


def _same_table(recorded, direct):
    """The recorded rows of one checkpoint equal a direct hl.layerwise table (numbers to round-off)."""
    from hesslens.analysis.layerwise import COLUMNS, METRICS

    recorded = recorded.reset_index(drop=True)
    assert list(recorded.columns[3:]) == list(COLUMNS)
    np.testing.assert_allclose(recorded[list(METRICS)].to_numpy(float), direct[list(METRICS)].to_numpy(float),
                               rtol=1e-9, atol=1e-13)
    other = [c for c in COLUMNS if c not in METRICS]
    assert recorded[other].equals(direct[other])


def test_layerwise_history_equals_a_direct_call_at_every_checkpoint():
    model, x, y = _problem(9)
    tracker = Tracker(nn.CrossEntropyLoss(), (x, y), **LAYERWISE)
    snapshots = _gd(model, x, y, lr=0.5, epochs=2, callback=tracker)
    h = tracker.layerwise_history
    assert list(h.columns[:4]) == ["checkpoint", "epoch", "step", "block"] and len(h) == 4
    assert list(h["checkpoint"]) == [0, 0, 1, 1] and list(h["epoch"]) == [0, 0, 1, 1] and list(h["step"]) == [1, 1, 2, 2]
    assert [i for i, _ in tracker.layerwise] == [0, 1] and list(h["exact"]) == [False, True] * 2
    for (index, result), snapshot in zip(tracker.layerwise, snapshots):
        direct = hl.layerwise(snapshot, nn.CrossEntropyLoss(), (x, y), steps=12, probes=2, trace_matvecs=8,
                              tol=tracker.tol, seed=tracker.seed, exact_below=20, engine=result.engine)
        _same_table(h[h["checkpoint"] == index], direct.table)
        assert result.blocks.operator.source is None  # kept detached: no operator, model or data held
    assert tracker.history["matvecs"].iloc[0] == tracker.layerwise[0][1].matvecs  # one operator per checkpoint
    fig = hl.layerwise_heatmap(tracker.layerwise, "trace", labels=list(tracker.history["epoch"]))
    assert fig.axes[0].images[0].get_array().shape == (2, 2)
    assert hl.layerwise_heatmap(h, "lambda_max").axes[0].images[0].get_array().shape == (2, 2)


def test_layerwise_scalars_go_to_the_loggers():
    model, x, y = _problem(10)
    seen = []

    class Logger:
        def log(self, metrics, step):
            seen.append(metrics)

        def close(self):
            pass

    from hesslens.analysis.layerwise import METRICS

    tracker = Tracker(nn.CrossEntropyLoss(), (x, y), loggers=[Logger()], **LAYERWISE)
    tracker.step(model, epoch=0)
    (metrics,) = seen
    keys = {k for k in metrics if k.startswith("layerwise/")}
    assert keys == {f"layerwise/{b}/{m}" for b in ("0", "2") for m in METRICS}
    assert all(type(v) is float for v in metrics.values())
    table = tracker.layerwise[0][1].table.set_index("block")
    for block in ("0", "2"):
        for m in ("lambda_max", "trace", "neg_mass", "condition", "effective_rank"):
            assert metrics[f"layerwise/{block}/{m}"] == table.loc[block, m]


def test_layerwise_configuration():
    x, y = torch.randn(4, 2), torch.zeros(4, dtype=torch.long)
    with pytest.raises(hl.InvalidInputError, match=r"layerwise_options has unknown keys \['steps'\]"):
        Tracker(nn.CrossEntropyLoss(), (x, y), measure=("layerwise",), layerwise_options={"steps": 3})
    with pytest.raises(hl.InvalidInputError, match="layerwise_options must be a dict"):
        Tracker(nn.CrossEntropyLoss(), (x, y), measure=("layerwise",), layerwise_options=["blocks"])
    model, x, y = _problem(11)
    tracker = Tracker(nn.CrossEntropyLoss(), (x, y))
    tracker.step(model, epoch=0)
    empty = tracker.layerwise_history
    assert len(empty) == 0 and list(empty.columns[:4]) == ["checkpoint", "epoch", "step", "block"]
    grouped = Tracker(nn.CrossEntropyLoss(), (x, y), measure=("layerwise",), slq_steps=8, slq_probes=2,
                      layerwise_options={"blocks": {"all": "*"}})
    grouped.step(model, epoch=0)
    assert list(grouped.layerwise_history["block"]) == ["all"]


def test_layerwise_through_the_lightning_callback(tmp_path):
    pl = pytest.importorskip("lightning.pytorch")
    from hesslens.training.lightning import HessianCallback

    from _lightning_ddp_worker import Module

    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(32, 4, generator=g), torch.randint(0, 3, (32,), generator=g)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)
    module = Module(lr=0.1)
    tracker = Tracker(nn.CrossEntropyLoss(), (x, y), measure=("layerwise",), slq_steps=8, slq_probes=2,
                      trace_matvecs=6, layerwise_options={"exact_below": 25})
    trainer = pl.Trainer(max_epochs=2, callbacks=[HessianCallback(tracker)], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                         accelerator="cpu")
    trainer.fit(module, loader)
    h = tracker.layerwise_history
    assert list(h["epoch"]) == [0, 0, 1, 1] and list(h["block"]) == ["net.0", "net.2"] * 2
    result = tracker.layerwise[-1][1]
    direct = hl.layerwise(module, nn.CrossEntropyLoss(), (x, y), steps=8, probes=2, trace_matvecs=6, tol=tracker.tol,
                          exact_below=25, engine=result.engine)
    _same_table(h[h["checkpoint"] == 1], direct.table)
