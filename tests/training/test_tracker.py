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
