"""The Lightning callback records the same λ_max as the tracker stepped by hand, and under a DDP strategy
launched by torchrun every rank records one process's numbers while rank 0 alone logs."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import hesslens as hl
from hesslens.training.tracker import Tracker

pl = pytest.importorskip("lightning.pytorch")
from hesslens.training.lightning import HessianCallback  # noqa: E402

import _lightning_ddp_worker as w  # noqa: E402


def test_callback_tracks_every_epoch(tmp_path):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 4, generator=g), torch.randint(0, 3, (64,), generator=g)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64)
    module = w.Module(lr=0.1)
    tracker = Tracker(nn.CrossEntropyLoss(), (x, y), tol=1e-8)
    trainer = pl.Trainer(max_epochs=3, callbacks=[HessianCallback(tracker)], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                         accelerator="cpu")
    trainer.fit(module, loader)
    df = tracker.history
    assert list(df["epoch"]) == [0, 1, 2] and "train_loss" in df
    exact = hl.exact_spectrum(hl.HessianOperator(module, nn.CrossEntropyLoss(), (x, y)))
    assert df["lambda_max"].iloc[-1] == pytest.approx(exact[-1], rel=1e-6)


def test_callback_records_the_hesd_type_and_logs_numbers_only(tmp_path):
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 4, generator=g), torch.randint(0, 3, (64,), generator=g)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64)
    seen = []

    class Logger:
        def log(self, metrics, step):
            seen.append((step, metrics))

        def close(self):
            pass

    module = w.Module(lr=0.1)
    tracker = Tracker(nn.CrossEntropyLoss(), (x, y), measure=("hesd",), slq_steps=12, slq_probes=2, loggers=[Logger()])
    trainer = pl.Trainer(max_epochs=2, callbacks=[HessianCallback(tracker)], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                         accelerator="cpu")
    trainer.fit(module, loader)
    df = tracker.history
    assert list(df["epoch"]) == [0, 1] and len(tracker.densities) == 2
    for (_, row), (_, sd) in zip(df.iterrows(), tracker.densities):
        kind = hl.hesd_type(sd, reference=tracker.densities[0][1])
        assert row["hesd_type"] == kind.kind and row["hesd_balance"] == kind.balance
    assert [step for step, _ in seen] == list(df["step"])
    for _, metrics in seen:
        assert "hesd_type" not in metrics and all(type(v) is float for v in metrics.values())
        assert {"hesd_balance", "hesd_scale", "hesd_decisive", "re", "kh", "train_loss"} <= set(metrics)


def test_under_a_ddp_strategy_every_rank_tracks_the_whole_set_and_rank_0_logs(tmp_path):
    """Two ranks under torchrun, Lightning's "ddp" strategy on the CPU: each rank's tracker measures its shard
    of the analysis set; every rank's rows must be one process's over the whole set at the trained model."""
    worker = Path(w.__file__)
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    done = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", str(worker), str(tmp_path)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    x, y = w.data()
    module = w.Module(lr=0.5)
    assert len(ranks[0]["states"]) == 2
    for epoch, state in enumerate(ranks[0]["states"]):
        module.load_state_dict(state)
        op = hl.HessianOperator(module, nn.CrossEntropyLoss(), (x, y))
        want = [hl.eigenvalues(op, k=1, which="largest", tol=1e-6, seed=0).values[0],
                hl.trace(op, num_matvecs=12, seed=0).estimate]
        for got in ranks:
            np.testing.assert_allclose(got["rows"][epoch], want, rtol=1e-5)
    assert all(torch.equal(ranks[1]["states"][-1][k], v) for k, v in ranks[0]["states"][-1].items())
    assert len(ranks[0]["logged"]) == 2 and ranks[1]["logged"] == []
