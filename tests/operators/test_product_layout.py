"""How ``HessianOperator.torch_matmat`` hands columns to its engine and lays out the result.

Columns travel as the rows of Vᵀ: a column-major V (how hesslens's algorithms hold their bases) reaches
the engine as views, a row-major one is transposed once, and H V comes back column-major. A cached
engine that loops is handed one column per call (its products go straight into the result); vmap and
the streaming engine, which recomputes per call, get up to ``max_columns``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hesslens as hl

DT = torch.float64


def _operator(**kwargs):
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).to(DT)
    data = (torch.randn(40, 4, generator=g, dtype=DT), torch.randint(0, 3, (40,), generator=g))
    return hl.HessianOperator(model, nn.CrossEntropyLoss(), data, **kwargs)


@pytest.mark.parametrize("engine", ["double_backward+loop", "double_backward+vmap", "linearize+loop", "streaming+vmap"])
def test_either_layout_gives_the_dense_product_column_major(engine):
    op = _operator(engine=engine, max_columns=3)
    dense = op.dense()
    v = torch.randn(op.n, 7, generator=torch.Generator().manual_seed(1), dtype=DT)
    row_major, column_major = v.contiguous(), v.T.contiguous().T
    out_rows, out_cols = op.torch_matmat(row_major), op.torch_matmat(column_major)
    assert out_cols.T.is_contiguous() and out_rows.T.is_contiguous()
    torch.testing.assert_close(out_rows, dense @ v, rtol=1e-10, atol=1e-12)
    assert torch.equal(out_rows, out_cols)
    one = op.torch_matmat(v[:, 2:3])  # a strided single column of a row-major block
    assert one.is_contiguous()
    if engine.endswith("+loop"):  # the very computation of that column in the wide product
        assert torch.equal(one, out_rows[:, 2:3])
    else:  # vmap over 1 column and over 3 may take different kernels (seen on an AMD EPYC): round-off apart
        torch.testing.assert_close(one, out_rows[:, 2:3], rtol=1e-13, atol=1e-15)


def test_a_column_major_block_reaches_the_engine_as_views(monkeypatch):
    op = _operator(engine="double_backward+loop")
    v = torch.randn(op.n, 4, generator=torch.Generator().manual_seed(2), dtype=DT).T.contiguous().T
    seen = []
    hvp = op._engine.hvp
    monkeypatch.setattr(op._engine, "hvp", lambda tangents: seen.append(tangents) or hvp(tangents))
    op.torch_matmat(v)
    base = v.untyped_storage().data_ptr()
    for tangents in seen:
        assert all(t.untyped_storage().data_ptr() == base for t in tangents)  # views of V, not copies


@pytest.mark.parametrize("engine, widths", [("double_backward+loop", [1] * 7), ("linearize+loop", [1] * 7),
                                            ("double_backward+vmap", [3, 3, 1]), ("streaming+loop", [3, 3, 1])])
def test_a_looping_cached_engine_is_handed_one_column_per_call(monkeypatch, engine, widths):
    op = _operator(engine=engine, max_columns=3)
    seen = []
    hvp = op._engine.hvp
    monkeypatch.setattr(op._engine, "hvp", lambda tangents: seen.append(tangents[0].shape[0]) or hvp(tangents))
    v = torch.randn(op.n, 7, generator=torch.Generator().manual_seed(3), dtype=DT)
    out = op.torch_matmat(v)
    assert seen == widths and op.matvecs >= 7
    torch.testing.assert_close(out, op.dense() @ v, rtol=1e-10, atol=1e-12)
