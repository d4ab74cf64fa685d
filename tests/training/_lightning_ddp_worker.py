"""One rank of a Lightning DDP run with a HessianCallback: ``torchrun ... _lightning_ddp_worker.py OUT_DIR``.

Launched by ``tests/training/test_lightning.py`` under ``torchrun`` (Lightning takes the processes torchrun
made). Every rank tracks λ_max and the trace on its shard of a fixed analysis set; the rank writes its
tracker's rows, the steps its logger saw and (rank 0) the model's parameters at each checkpoint to
``OUT_DIR/rank<r>.pt``.
"""

from __future__ import annotations

import os
import sys

import lightning.pytorch as pl
import torch
from torch import nn

import hesslens as hl
from hesslens.training.lightning import HessianCallback


def data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(96, 4, generator=g), torch.randint(0, 3, (96,), generator=g)


class Module(pl.LightningModule):
    """The tiny classifier (4 → 6 → 3, tanh) of every Lightning test here; logs ``train_loss`` at each step."""

    def __init__(self, lr: float):
        super().__init__()
        self.lr = lr
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, _):
        loss = nn.functional.cross_entropy(self(batch[0]), batch[1])
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


class Recorder:
    def __init__(self):
        self.steps = []

    def log(self, metrics, step):
        self.steps.append(step)

    def close(self):
        pass


class Snapshots(pl.Callback):
    """The model's parameters at each epoch's end, before the tracker measures them."""

    def __init__(self):
        self.states = []

    def on_train_epoch_end(self, trainer, module):
        self.states.append({k: v.detach().clone() for k, v in module.state_dict().items()})


def main() -> None:
    out = sys.argv[1]
    x, y = data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    recorder = Recorder()
    tracker = hl.Tracker(nn.CrossEntropyLoss(), hl.shard((x, y), int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])),
                         measure=("lambda_max", "trace"), tol=1e-6, warm_start=False, trace_matvecs=12,
                         loggers=[recorder])
    snapshots = Snapshots()
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", devices=2, strategy="ddp",
                         callbacks=[snapshots, HessianCallback(tracker)], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=out)
    trainer.fit(Module(lr=0.5), loader)
    rank = trainer.global_rank
    torch.save({"rows": tracker.history[["lambda_max", "trace"]].values.tolist(), "logged": recorder.steps,
                "states": snapshots.states}, os.path.join(out, f"rank{rank}.pt"))


if __name__ == "__main__":
    main()
