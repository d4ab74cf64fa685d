"""hesslens.studies.trained: the train-then-measure skeleton on tiny MNIST-1D runs (seconds each).

Expected values are worked out independently: parameter counts by hand, steps from the batch
arithmetic, the training accuracy and loss from the trained model the measure function receives, the
epoch-0 λ_max from a dense Hessian (torch.autograd) of the freshly initialised net, and the
edge-of-stability columns from the tracked series with NumPy.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch.func import functional_call
from torch.nn import functional as F

from hesslens.errors import InvalidInputError
from hesslens.studies import RunContext, make_config
from hesslens.studies.trained import (
    Trained,
    TrainedNetConfig,
    build_model,
    dataset,
    train_then_measure,
)

TINY = {"dataset": "mnist1d", "n_test": 0, "n_train": 128, "hidden": 16, "lr": 0.2, "until_train_acc": 0.99}
MINI = {**TINY, "batch_size": 32, "max_epochs": 3}
FULL = {**TINY, "batch_size": 128, "max_epochs": 4, "track_every": 1}
TIMING = {"train_seconds", "wall_seconds"}
# MLP 40 → 16 → 16 → 10 (MNIST-1D signals have 40 samples, 10 classes): weights + biases per layer
MLP_PARAMS = (40 * 16 + 16) + (16 * 16 + 16) + (16 * 10 + 10)


def config(**kw) -> TrainedNetConfig:
    return make_config(TrainedNetConfig, kw)


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


# --- validation ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("values,field", [
    ({"rho": 0.05}, "rho"),
    ({"optimizer": "sgd", "rho": 0.1}, "rho"),
    ({"optimizer": "sam"}, "rho"),
    ({"optimizer": "sam", "rho": 0.0}, "rho"),
    ({"arch": "vgg1d", "dropout": 0.1}, "dropout"),
    ({"batchnorm": True}, "batchnorm"),
    ({"arch": "mlp", "batchnorm": True}, "batchnorm"),
    ({"track_every": 1, "dropout": 0.1}, "track_every"),
    ({"track_every": 2, "arch": "vgg1d", "batchnorm": True}, "track_every"),
    ({"lr": 0.0}, "lr"),
    ({"lr": -0.1}, "lr"),
    ({"until_train_acc": 1.01}, "until_train_acc"),
    ({"until_train_acc": 0.0}, "until_train_acc"),
    ({"arch": "resnet"}, "arch"),
    ({"dropout": 1.0}, "dropout"),
    ({"max_epochs": 0}, "max_epochs"),
])
def test_invalid_configs_name_the_field(values, field):
    with pytest.raises(InvalidInputError, match=rf"\b{field}\b"):
        config(**values)


@pytest.mark.parametrize("values", [
    {},
    {"optimizer": "sam", "rho": 0.05},
    {"arch": "vgg1d", "batchnorm": True},
    {"dropout": 0.5},
    {"track_every": 1},
    {"until_train_acc": 1.0},
])
def test_valid_configs(values):
    c = config(**values)
    for k, v in values.items():
        assert getattr(c, k) == v


# --- dataset and model ---------------------------------------------------------------------------------

def test_dataset_takes_the_first_n_train_examples_and_is_cached():
    full = dataset("mnist1d", 0, 0)
    part = dataset("mnist1d", 0, 128)
    assert len(part.x_train) == 128 and len(part.y_train) == 128
    assert torch.equal(part.x_train, full.x_train[:128]) and torch.equal(part.y_train, full.y_train[:128])
    assert torch.equal(part.x_test, full.x_test)
    assert part.info == full.info
    assert dataset("mnist1d", 0, 128) is part                      # loaded once per process
    beyond = dataset("mnist1d", 0, len(full.x_train) + 5)           # n_train beyond the set: all of it
    assert len(beyond.x_train) == len(full.x_train) and torch.equal(beyond.x_train, full.x_train)


def test_build_model_is_seeded():
    info = dataset("mnist1d", 0, 128).info
    a = build_model(config(hidden=16, seed=3), info)
    b = build_model(config(hidden=16, seed=3), info)
    c = build_model(config(hidden=16, seed=4), info)
    pa, pb, pc = ([p.detach() for p in m.parameters()] for m in (a, b, c))
    assert sum(p.numel() for p in pa) == MLP_PARAMS
    assert all(torch.equal(x, y) for x, y in zip(pa, pb))
    assert not all(torch.equal(x, y) for x, y in zip(pa, pc))


def test_build_model_vgg_follows_the_config():
    info = dataset("mnist1d", 0, 128).info
    net = build_model(config(arch="vgg1d", channels=4, batchnorm=True), info)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv1d)]
    assert [(m.in_channels, m.out_channels) for m in convs] == [(1, 4), (4, 8)]
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in net.modules()) == 2
    plain = build_model(config(arch="vgg1d", channels=4), info)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in plain.modules())
    drop = build_model(config(dropout=0.3), info)
    assert [m.p for m in drop.modules() if isinstance(m, torch.nn.Dropout)] == [0.3, 0.3]


# --- a mini-batch run ----------------------------------------------------------------------------------

def _measured(expected_batch_size):
    """A trivial measure that checks what it receives and keeps its own evaluation of the trained net."""
    seen: dict = {}

    def measure(cfg, trained):
        assert isinstance(trained, Trained)
        assert isinstance(cfg, TrainedNetConfig)
        assert trained.batch_size == expected_batch_size
        seen["threads"] = torch.get_num_threads()
        model, data = trained.model, trained.data
        model.eval()
        with torch.no_grad():
            logits = model(data.x_train)
            seen["acc"] = (logits.argmax(1) == data.y_train).double().mean().item()
            seen["loss"] = F.cross_entropy(logits, data.y_train).item()
        seen["n_params"] = sum(p.numel() for p in model.parameters())
        seen["n_train"] = len(data.x_train)
        seen["result"] = trained.result
        return {"m": 1.0}

    return measure, seen


@pytest.fixture(scope="module")
def mini_runs():
    out = {}
    for key, seed in (("a", 0), ("b", 0), ("other", 1)):
        measure, seen = _measured(32)
        record, series = train_then_measure(config(**MINI, seed=seed), measure)
        out[key] = (record, series, seen)
    return out


def test_mini_batch_run_record(mini_runs):
    record, series, seen = mini_runs["a"]
    for key in ("train_acc", "test_acc", "train_loss", "test_loss", "epochs", "steps", "capped", "reached_target",
                "diverged", "stop_reason", "full_batch", "n_train", "n_test", "two_over_lr", "n_params",
                "train_seconds", "wall_seconds", "m"):
        assert key in record, key
    assert not any(k.startswith("eos_") for k in record)    # nothing tracked
    assert series == []
    assert record["m"] == 1.0
    # 3 epochs at 0.2 on 128 examples cannot reach 99 %: stopped at the cap
    assert record["stop_reason"] == "max_epochs"
    assert record["capped"] is True and record["reached_target"] is False and record["diverged"] is False
    assert record["epochs"] == 3 and record["steps"] == 3 * (128 // 32)
    assert record["full_batch"] is False
    assert record["n_train"] == 128 == seen["n_train"]
    assert record["n_test"] == len(dataset("mnist1d", 0, 128).x_test)
    assert record["n_params"] == MLP_PARAMS == seen["n_params"]
    assert record["two_over_lr"] == pytest.approx(2 / 0.2)
    assert record["train_acc"] < 0.99
    # the record's training metrics are those of the network handed to measure (eval mode, full set)
    assert record["train_acc"] == pytest.approx(seen["acc"], abs=1e-9)
    assert record["train_loss"] == pytest.approx(seen["loss"], rel=1e-5)
    assert seen["result"].epochs == record["epochs"]
    assert 0 < record["train_seconds"] <= record["wall_seconds"]


def test_mini_batch_run_is_reproducible(mini_runs):
    a, sa, _ = mini_runs["a"]
    b, sb, _ = mini_runs["b"]
    other, _, _ = mini_runs["other"]
    assert a.keys() == b.keys()
    assert {k: v for k, v in a.items() if k not in TIMING} == {k: v for k, v in b.items() if k not in TIMING}
    assert sa == sb
    assert other["train_loss"] != a["train_loss"]


def test_measure_runs_single_threaded_and_threads_are_restored(mini_runs):
    assert mini_runs["a"][2]["threads"] == 1
    torch.set_num_threads(3)
    measure, seen = _measured(32)
    train_then_measure(config(**{**MINI, "max_epochs": 1}), measure)
    assert seen["threads"] == 1
    assert torch.get_num_threads() == 3


def test_measure_errors_propagate_and_threads_are_restored():
    torch.set_num_threads(3)

    def bad(cfg, trained):
        raise ZeroDivisionError("measurement failed")

    with pytest.raises(ZeroDivisionError, match="measurement failed"):
        train_then_measure(config(**{**MINI, "max_epochs": 1}), bad)
    assert torch.get_num_threads() == 3


def test_diverged_run_is_not_measured():
    def never(cfg, trained):
        raise AssertionError("a diverged run was measured")

    record, _ = train_then_measure(config(**{**TINY, "batch_size": 128, "max_epochs": 3, "lr": 1e6}), never)
    assert record["diverged"] is True and record["stop_reason"] == "diverged"
    assert record["capped"] is False and record["reached_target"] is False
    assert "m" not in record and "wall_seconds" in record


# --- a full-batch run with λ_max tracked ---------------------------------------------------------------

@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    ctx = RunContext(study="t", run_key="k", attempt=1, out=tmp_path_factory.mktemp("study"), seed=0)
    measure, seen = _measured(None)
    record, series = train_then_measure(config(**FULL), measure, ctx)
    return record, series, seen, ctx


def _lambda(series):
    pts = [(e, v) for e, name, v in series if name == "lambda_max"]
    return np.array([e for e, _ in pts], dtype=float), np.array([v for _, v in pts], dtype=float)


def test_full_batch_run_tracks_lambda_max(full_run):
    record, series, _, _ = full_run
    assert record["full_batch"] is True
    assert record["steps"] == record["epochs"] == 4          # one GD step per epoch
    assert record["capped"] is True and record["stop_reason"] == "max_epochs"
    assert record["m"] == 1.0
    assert all(len(entry) == 3 for entry in series)
    epochs, lam = _lambda(series)
    assert list(epochs) == [0.0, 1.0, 2.0, 3.0, 4.0]          # every epoch, and the initial net
    assert np.all(np.isfinite(lam)) and np.all(lam > 0)
    losses = [v for _, name, v in series if name == "train_loss"]
    assert losses[-1] == pytest.approx(record["train_loss"], rel=1e-5)
    for key in ("eos_reached", "eos_first_step", "eos_ratio_median", "eos_ratio_q25", "eos_ratio_q75",
                "eos_ratio_max", "eos_ratio_peak"):
        assert key in record, key
    assert record["eos_ratio_peak"] == pytest.approx(lam.max() * 0.2 / 2, rel=1e-12)
    # far below 2/η = 10 here: not reached, and the summaries after reaching it are undefined
    assert lam.max() * 0.2 / 2 < 1
    assert record["eos_reached"] is False
    assert math.isnan(record["eos_first_step"]) and math.isnan(record["eos_ratio_median"])


def test_tracked_lambda_at_epoch_0_is_the_top_hessian_eigenvalue(full_run):
    # Dense Hessian of the mean cross-entropy over the 128 training examples at initialisation.
    _, series, _, _ = full_run
    cfg = config(**FULL)
    ds = dataset(cfg.dataset, cfg.n_test, cfg.n_train)
    model = build_model(cfg, ds.info).double().eval()
    names, shapes = zip(*[(n, p.shape) for n, p in model.named_parameters()])
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    x, y = ds.x_train.double(), ds.y_train

    def loss(v):
        params, i = {}, 0
        for n, s in zip(names, shapes):
            k = math.prod(s)
            params[n] = v[i:i + k].reshape(s)
            i += k
        return F.cross_entropy(functional_call(model, params, (x,)), y)

    hessian = torch.autograd.functional.hessian(loss, flat, vectorize=True)
    top = torch.linalg.eigvalsh(hessian)[-1].item()
    _, lam = _lambda(series)
    assert lam[0] == pytest.approx(top, rel=2e-3)


def test_full_batch_run_saves_the_trajectory(full_run):
    _, series, _, ctx = full_run
    saved = {a.name: a for a in ctx.saved_artifacts()}
    assert set(saved) == {"lambda_max_trajectory"}
    art = saved["lambda_max_trajectory"]
    assert art.kind == "json"
    data = json.loads(art.data)
    epochs, lam = _lambda(series)
    assert data["epoch"] == epochs.tolist()
    np.testing.assert_allclose(data["lambda_max"], lam, rtol=1e-12)


def test_track_every_and_a_duck_typed_ctx():
    class Recorder:
        def __init__(self):
            self.names = []

        def save_artifact(self, name, obj):
            self.names.append(name)

    rec = Recorder()
    record, series = train_then_measure(config(**{**FULL, "max_epochs": 2, "track_every": 2}), lambda c, t: {}, rec)
    epochs, _ = _lambda(series)
    assert list(epochs) == [0.0, 2.0]                         # every 2nd epoch
    assert rec.names == ["lambda_max_trajectory"]
    record2, series2 = train_then_measure(config(**{**FULL, "max_epochs": 2, "track_every": 2}), lambda c, t: {})
    assert series2 == series and record2["eos_ratio_peak"] == record["eos_ratio_peak"]


def test_edge_of_stability_columns_when_reached():
    # η = 6: 2/η ≈ 0.33 is within reach of this net's λ_max (≈ 0.31 at initialisation).
    lr = 6.0
    record, series = train_then_measure(config(**{**FULL, "lr": lr}), lambda c, t: {"m": 2.0})
    assert record["diverged"] is False and record["m"] == 2.0
    epochs, lam = _lambda(series)
    ratio = lam * lr / 2
    hits = np.flatnonzero(ratio >= 1)
    assert hits.size > 0                                       # the planted design: 2/η is reached
    after = ratio[hits[0]:]
    assert record["eos_reached"] is True
    assert record["eos_first_step"] == epochs[hits[0]]
    assert record["eos_ratio_median"] == pytest.approx(np.median(after), rel=1e-12)
    assert record["eos_ratio_q25"] == pytest.approx(np.quantile(after, 0.25), rel=1e-12)
    assert record["eos_ratio_max"] == pytest.approx(after.max(), rel=1e-12)
    assert record["eos_ratio_peak"] == pytest.approx(ratio.max(), rel=1e-12)
    assert record["two_over_lr"] == pytest.approx(2 / lr)


# --- the hooks a study's subclass overrides --------------------------------------------------------------

def test_optimizer_names_are_those_of_train():
    from hesslens.studies.trained import OPTIMIZER_NAMES
    from hesslens.training.optimizers import OPTIMIZERS

    assert OPTIMIZER_NAMES == OPTIMIZERS


def test_a_subclass_hooks_build_train_and_start():
    import dataclasses
    import types

    @dataclasses.dataclass(frozen=True)
    class Hooked(TrainedNetConfig):
        def model_options(self):
            return {"activation": "tanh"}

        def train_options(self):
            return {"epochs": 2, "until_train_acc": None, "clip_norm": 1e-3}

        def start(self, model, data):  # train on the first 64 examples only
            return model, types.SimpleNamespace(x_train=data.x_train[:64], y_train=data.y_train[:64],
                                                x_test=data.x_test, y_test=data.y_test, info=data.info)

    seen = {}

    def measure(c, t):
        seen["model"], seen["data"], seen["result"] = t.model, t.data, t.result
        return {}

    record, _ = train_then_measure(make_config(Hooked, {**MINI, "max_epochs": 50}), measure)
    assert isinstance(seen["model"][2], torch.nn.Tanh)
    assert len(seen["data"].x_train) == 64 and record["n_train"] == 64
    assert record["epochs"] == 2 and record["stop_reason"] == "epochs" and not record["capped"]
    assert record["steps"] == 2 * math.ceil(64 / MINI["batch_size"])
