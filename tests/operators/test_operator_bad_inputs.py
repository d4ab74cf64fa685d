"""Bad inputs are refused with an error that names the problem (and the batch at fault)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hesslens as hl
from hesslens import InvalidInputError, MemoryBudgetError, NonDeterministicLossError

DT = torch.float64


def _model() -> nn.Module:
    torch.manual_seed(50)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).to(DT)


def _batches(sizes=(4, 3, 5)):
    g = torch.Generator().manual_seed(51)
    return [(torch.randn(s, 3, generator=g, dtype=DT), torch.randint(0, 2, (s,), generator=g)) for s in sizes]


CE = nn.CrossEntropyLoss()


@pytest.mark.parametrize("value, kind", [(float("nan"), "NaN"), (float("inf"), "Inf")])
def test_non_finite_inputs_name_the_batch(value: float, kind: str) -> None:
    data = _batches()
    data[1][0][2, 1] = value
    with pytest.raises(InvalidInputError, match=rf"batch 1\b.*{kind}"):
        hl.HessianOperator(_model(), CE, data)


def test_infinite_loss_names_the_batch() -> None:
    """Finite inputs, but the loss overflows to Inf on batch 2 of 3 (index 2)."""
    data = [(x, torch.randn(len(x), 2, dtype=DT)) for x, _ in _batches()]
    data[2][1][0, 0] = 1e200  # (output − 1e200)² overflows float64

    def squared(m, b):
        return ((m(b[0]) - b[1]) ** 2).mean()

    with pytest.raises(InvalidInputError, match=r"not finite.*batch 2\b"):
        hl.HessianOperator(_model(), batch_loss=squared, data=data)


def test_empty_data() -> None:
    with pytest.raises(InvalidInputError, match="empty"):
        hl.HessianOperator(_model(), CE, [])


def test_data_none() -> None:
    with pytest.raises(InvalidInputError, match="data"):
        hl.HessianOperator(_model(), CE, None)


def test_no_trainable_parameters() -> None:
    model = _model().requires_grad_(False)
    with pytest.raises(InvalidInputError, match="no trainable parameters"):
        hl.HessianOperator(model, CE, _batches())


def test_non_scalar_loss() -> None:
    with pytest.raises(InvalidInputError, match="scalar"):
        hl.HessianOperator(_model(), nn.CrossEntropyLoss(reduction="none"), _batches())


@pytest.mark.parametrize("params", ["nothing.*", ["0.weight", "9.bias"], nn.Linear(3, 4),
                                    nn.Parameter(torch.zeros(2))], ids=["glob", "name", "foreign-module", "foreign-tensor"])
def test_selection_matching_nothing(params) -> None:
    with pytest.raises(InvalidInputError, match="matches no parameter"):
        hl.HessianOperator(_model(), CE, _batches(), params=params)


def test_empty_selection() -> None:
    with pytest.raises(InvalidInputError, match="param"):
        hl.HessianOperator(_model(), CE, _batches(), params=[])


def test_bad_selection_entry_type() -> None:
    with pytest.raises(InvalidInputError, match="params entries"):
        hl.HessianOperator(_model(), CE, _batches(), params=[3])


def test_dense_too_large_gives_estimate() -> None:
    op = hl.HessianOperator(_model(), CE, _batches(), engine="double_backward")
    n = op.n
    need_gib = 2 * 8 * n * n / 2**30  # the matrix and one working copy, float64
    with pytest.raises(MemoryBudgetError, match=rf"{n}×{n}.*{need_gib:.2f} GiB"):
        op.dense(max_bytes=1000)
    with pytest.raises(MemoryBudgetError, match="GiB"):
        hl.exact_spectrum(op, max_bytes=1000)
    assert op.dense(max_bytes=2 * 8 * n * n).shape == (n, n)  # exactly at the budget is allowed


def test_dropout_in_train_mode() -> None:
    model = nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.5), nn.Linear(8, 2)).to(DT)
    with pytest.raises(NonDeterministicLossError, match="dropout"):
        hl.HessianOperator(model, CE, _batches(), mode="train")
    hl.HessianOperator(model, CE, _batches(), mode="eval")  # eval mode is deterministic


def test_random_augmentation_in_batch_loss() -> None:
    def noisy(m, b):
        return CE(m(b[0] + 0.1 * torch.randn_like(b[0])), b[1])

    with pytest.raises(NonDeterministicLossError, match="changed between two evaluations"):
        hl.HessianOperator(_model(), batch_loss=noisy, data=_batches())


def _shuffling_loader(batch_size: int = 4):
    g = torch.Generator().manual_seed(52)
    x, y = torch.randn(40, 3, generator=g, dtype=DT), torch.randint(0, 2, (40,), generator=g)
    dataset = torch.utils.data.TensorDataset(x, y)
    return (torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True,
                                        generator=torch.Generator().manual_seed(53)), (x, y))


def test_shuffling_loader_accepted_where_order_does_not_matter() -> None:
    """Eval mode, no batch-dependent layer: the mean Hessian is that of all 40 samples whatever the order."""
    loader, whole = _shuffling_loader()
    op = hl.HessianOperator(_model(), CE, loader, engine="double_backward")
    assert op.data_order.startswith("shuffled")
    reference = hl.HessianOperator(_model(), CE, whole, engine="double_backward").dense()
    assert torch.allclose(op.dense(), reference, rtol=0, atol=1e-12)


def test_shuffling_loader_refused_with_batch_statistics() -> None:
    """BatchNorm in train mode: each batch's loss depends on which samples share it."""
    loader, _ = _shuffling_loader()
    torch.manual_seed(54)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 2)).to(DT)
    with pytest.raises(NonDeterministicLossError, match="shuffling.*BatchNorm in train mode") as err:
        hl.HessianOperator(model, CE, loader, mode="train")
    assert "mode='eval'" not in str(err.value)


def test_bogus_engine() -> None:
    with pytest.raises(InvalidInputError, match="engine.*'bogus'"):
        hl.HessianOperator(_model(), CE, _batches(), engine="bogus")


def test_bogus_mode() -> None:
    with pytest.raises(ValueError, match="mode.*'bogus'"):
        hl.HessianOperator(_model(), CE, _batches(), mode="bogus")


def test_both_loss_fn_and_batch_loss() -> None:
    with pytest.raises(InvalidInputError, match="exactly one of loss_fn"):
        hl.HessianOperator(_model(), CE, _batches(), batch_loss=lambda m, b: CE(m(b[0]), b[1]))


def test_neither_loss_fn_nor_batch_loss() -> None:
    with pytest.raises(InvalidInputError, match="exactly one of loss_fn"):
        hl.HessianOperator(_model(), data=_batches())


def test_not_a_module() -> None:
    with pytest.raises(InvalidInputError, match="torch.nn.Module"):
        hl.HessianOperator(lambda x: x, CE, _batches())


def test_batch_not_a_pair_with_loss_fn() -> None:
    with pytest.raises(InvalidInputError, match=r"\(inputs, targets\) pair"):
        hl.HessianOperator(_model(), CE, [{"x": torch.zeros(2, 3, dtype=DT)}] * 3)


@pytest.mark.parametrize("make", [lambda n: torch.ones(n + 1, dtype=DT), lambda n: torch.ones(n - 1, 2, dtype=DT),
                                  lambda n: torch.ones(2, n, dtype=DT), lambda n: torch.ones(n, 2, 1, dtype=DT),
                                  lambda n: [1.0] * n], ids=["n+1", "(n-1,2)", "(2,n)", "3-D", "list"])
def test_vector_of_wrong_shape(make) -> None:
    op = hl.HessianOperator(_model(), CE, _batches(), engine="double_backward")
    with pytest.raises(InvalidInputError, match=rf"expected a vector of shape \({op.n},\)"):
        op @ make(op.n)


def test_k_at_least_dimension() -> None:
    op = hl.HessianOperator(_model(), CE, _batches(), engine="double_backward")
    with pytest.raises(InvalidInputError, match="k"):
        hl.eigenvalues(op, k=op.n)
