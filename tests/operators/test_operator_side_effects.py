"""Analysing a model leaves it exactly as found: parameters (values and identity), buffers,
train/eval flags, requires_grad, .grad (identity and values, None stays None) and the global RNG.

Checked after construction and after every kind of call, and on the error paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import nn

import hesslens as hl

DT = torch.float64


def _model(dropout: bool) -> nn.Sequential:
    """Linear → BatchNorm → tanh → Dropout (or Identity) → Linear, with a frozen parameter, a set
    .grad and non-trivial running statistics."""
    torch.manual_seed(40)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Tanh(),
                          nn.Dropout(0.5) if dropout else nn.Identity(), nn.Linear(6, 3)).to(DT)
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
        model[1].num_batches_tracked.fill_(7)
    model[4].bias.requires_grad_(False)
    model[0].weight.grad = torch.full_like(model[0].weight, 0.25)
    return model


def _data():
    g = torch.Generator().manual_seed(41)
    return [(torch.randn(s, 4, generator=g, dtype=DT), torch.randint(0, 3, (s,), generator=g)) for s in (6, 4)]


@dataclass
class Snapshot:
    params: list[tuple[str, Any, torch.Tensor, bool, Any, Any]]
    buffers: list[tuple[str, Any, torch.Tensor]]
    training: list[tuple[str, bool]]
    rng: torch.Tensor

    @classmethod
    def take(cls, model: nn.Module) -> "Snapshot":
        return cls(
            [(n, p, p.detach().clone(), p.requires_grad, p.grad, None if p.grad is None else p.grad.clone())
             for n, p in model.named_parameters()],
            [(n, b, b.clone()) for n, b in model.named_buffers()],
            [(n, m.training) for n, m in model.named_modules()],
            torch.get_rng_state(),
        )

    def assert_unchanged(self, model: nn.Module, when: str) -> None:
        now = Snapshot.take(model)
        assert [p[0] for p in now.params] == [p[0] for p in self.params], when
        for (name, p, value, rg, grad, grad_value), (_, p2, value2, rg2, grad2, _) in zip(self.params, now.params):
            assert p2 is p, f"{when}: parameter {name} replaced"
            assert torch.equal(value2, value), f"{when}: parameter {name} changed"
            assert rg2 == rg, f"{when}: requires_grad of {name} changed"
            assert grad2 is grad, f"{when}: .grad of {name} replaced"
            if grad is not None:
                assert torch.equal(grad2, grad_value), f"{when}: .grad of {name} changed"
        assert [b[0] for b in now.buffers] == [b[0] for b in self.buffers], when
        for (name, b, value), (_, b2, value2) in zip(self.buffers, now.buffers):
            assert b2 is b, f"{when}: buffer {name} replaced"
            assert torch.equal(value2, value), f"{when}: buffer {name} changed"
        assert now.training == self.training, f"{when}: train/eval flags changed"
        assert torch.equal(now.rng, self.rng), f"{when}: global RNG state changed"


def _exercise(model: nn.Module, mode: str, engine: str) -> None:
    snap = Snapshot.take(model)
    op = hl.HessianOperator(model, nn.CrossEntropyLoss(), _data(), mode=mode, engine=engine)
    snap.assert_unchanged(model, "after construction")
    v = torch.randn(op.n, 3, generator=torch.Generator().manual_seed(42), dtype=DT)
    snap = Snapshot.take(model)  # (the line above draws nothing from the global RNG; re-snapshot anyway)
    first = op @ v
    snap.assert_unchanged(model, "after a product")
    op.dense()
    snap.assert_unchanged(model, "after dense()")
    op.gradient()
    snap.assert_unchanged(model, "after gradient()")
    op.to_scipy().matvec(v[:, 0].numpy())
    hl.trace(op, 6)
    snap.assert_unchanged(model, "after to_scipy() and trace()")
    # And nothing the calls did leaked into the operator either: the same product again.
    torch.testing.assert_close(op @ v, first, rtol=0, atol=0)



@pytest.mark.parametrize("engine", [
    "linearize", "double_backward", "streaming"])
def test_eval_mode_on_a_training_model_with_dropout(engine: str) -> None:
    model = _model(dropout=True).train()  # a model caught mid-training
    _exercise(model, "eval", engine)
    assert all(m.training for m in model.modules())


@pytest.mark.parametrize("engine", ["linearize", "double_backward", "streaming"])
def test_train_mode_batch_statistics(engine: str) -> None:
    model = _model(dropout=False).eval()
    _exercise(model, "train", engine)
    assert not any(m.training for m in model.modules())


@pytest.mark.parametrize("engine", ["double_backward", "streaming"])
def test_as_is_with_mixed_flags(engine: str) -> None:
    """as_is keeps the model's own mixed flags: BatchNorm in training, dropout in eval."""
    model = _model(dropout=True).train()
    model[3].eval()
    _exercise(model, "as_is", engine)
    assert model[1].training and not model[3].training


def test_train_mode_with_dropout_refused_without_side_effects() -> None:
    model = _model(dropout=True).eval()
    snap = Snapshot.take(model)
    with pytest.raises(hl.NonDeterministicLossError, match="dropout"):
        hl.HessianOperator(model, nn.CrossEntropyLoss(), _data(), mode="train")
    snap.assert_unchanged(model, "after NonDeterministicLossError")


def test_error_on_late_batch_leaves_no_trace() -> None:
    model = _model(dropout=True).train()
    data = _data() + [(torch.full((2, 4), float("nan"), dtype=DT), torch.zeros(2, dtype=torch.long))]
    snap = Snapshot.take(model)
    with pytest.raises(hl.InvalidInputError, match="batch 2"):
        hl.HessianOperator(model, nn.CrossEntropyLoss(), data)
    snap.assert_unchanged(model, "after InvalidInputError")


def test_operator_uses_a_snapshot_of_the_parameters() -> None:
    """An optimiser step after construction does not change the operator's matrix."""
    model = _model(dropout=False)
    op = hl.HessianOperator(model, nn.CrossEntropyLoss(), _data(), engine="streaming")
    before = op.dense()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    torch.testing.assert_close(op.dense(), before, rtol=0, atol=1e-14)


def test_dataloader_leaves_global_rng_unchanged() -> None:
    model = _model(dropout=False)
    x, y = torch.cat([b[0] for b in _data()]), torch.cat([b[1] for b in _data()])
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    state = torch.get_rng_state()
    hl.HessianOperator(model, nn.CrossEntropyLoss(), loader, engine="streaming")
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("raises", [False, True], ids=["returns", "raises"])
@pytest.mark.parametrize("mode", ["eval", "train", "as_is"])
def test_preserved_state_undoes_every_change_made_inside(mode: str, raises: bool) -> None:
    """The guard itself: whatever the block changes — flags of every module, requires_grad, .grad
    (set, replaced, cleared), buffers, the RNG — is as it was afterwards, also when the block raises."""
    from hesslens.operators.state import preserved_state

    model = _model(dropout=True)
    model[2].train(False)  # mixed flags: the guard must restore each module's own
    snap = Snapshot.take(model)

    def meddle() -> None:
        with preserved_state(model, mode):
            assert all(m.training == (mode == "train") for m in model.modules()) or mode == "as_is"
            model.train(not model.training)
            model[3].eval()
            for p in model.parameters():
                p.requires_grad_(not p.requires_grad)
            model[0].weight.grad = None
            model[0].bias.grad = torch.ones_like(model[0].bias)
            with torch.no_grad():
                model[1].running_mean.add_(1.0)
            torch.rand(3)
            if raises:
                raise RuntimeError("inside")

    if raises:
        with pytest.raises(RuntimeError, match="inside"):
            meddle()
    else:
        meddle()
    snap.assert_unchanged(model, "after the block")
