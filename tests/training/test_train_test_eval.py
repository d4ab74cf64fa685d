"""``train(test_eval="final")``: the test set evaluated for the final model only, the training unchanged."""

from __future__ import annotations

import math

import pytest
import torch

import hesslens as hl
from hesslens.errors import InvalidInputError
from hesslens.models import mlp


@pytest.fixture(scope="module")
def data():
    return hl.datasets.load("digits")


def _run(data, test_eval, **kw):
    model = mlp(64, (16,), 10, seed=3)
    result = hl.train(model, data, "sgd", batch_size=64, lr=0.1, seed=5, test_eval=test_eval, progress=False, **kw)
    return model, result


@pytest.mark.parametrize("stop", [{"epochs": 4}, {"until_train_acc": 0.5, "max_epochs": 50}])
def test_final_only_trains_the_same_model_and_reports_the_same_final_metrics(data, stop):
    m_every, r_every = _run(data, "every", **stop)
    m_final, r_final = _run(data, "final", **stop)
    for a, b in zip(m_every.parameters(), m_final.parameters()):
        assert torch.equal(a, b)
    assert (r_final.epochs, r_final.steps, r_final.stop_reason) == (r_every.epochs, r_every.steps, r_every.stop_reason)
    assert r_final.test_acc == r_every.test_acc and r_final.test_loss == r_every.test_loss
    assert r_final.train_loss == r_every.train_loss
    h = r_final.history
    assert h["test_acc"].iloc[:-1].isna().all() and not math.isnan(h["test_acc"].iloc[-1])
    assert h["train_acc"].notna().all()
    assert r_every.history["test_acc"].notna().all()


def test_final_only_after_a_callback_stop(data):
    class StopAt2:
        def __call__(self, model, *, epoch, step, metrics):
            if epoch == 2:
                raise hl.training.StopTraining

    _, r_every = _run(data, "every", epochs=5, callbacks=[StopAt2()])
    _, r_final = _run(data, "final", epochs=5, callbacks=[StopAt2()])
    assert r_final.stop_reason == "callback" and r_final.epochs == 2
    assert r_final.test_acc == r_every.test_acc


def test_bad_test_eval_names_the_field(data):
    with pytest.raises(InvalidInputError, match="test_eval"):
        _run(data, "sometimes", epochs=1)
