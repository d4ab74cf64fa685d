"""Products whose autograd result is the tangent itself (identity Hessian paths) must not alias or mutate it.

Autograd passes a gradient through identity paths as is, so for L = ½‖θ‖² the product H v = v may come
back as the very tangent tensor. The engines sum batch products into their first part only where nothing
follows, and the operator copies every product into its result.
"""

from __future__ import annotations

import pytest
import torch

import hesslens as hl


class Quadratic(torch.nn.Module):
    def __init__(self, n: int):
        super().__init__()
        self.theta = torch.nn.Parameter(torch.linspace(-1, 1, n, dtype=torch.float64))

    def forward(self, x):
        return x * 0 + self.theta  # one row per sample, each the parameters


def half_square(out, target):  # sum over samples of ½‖θ‖²: H = (samples) · I
    return 0.5 * (out ** 2).sum()


@pytest.mark.parametrize("engine", ["double_backward+loop", "double_backward+vmap", "streaming+loop"])
@pytest.mark.parametrize("batches", [1, 3])
def test_identity_products_leave_the_tangent_alone(engine, batches):
    n = 5
    model = Quadratic(n)
    x = torch.zeros(2, n, dtype=torch.float64)
    data = [(x, x)] * batches
    op = hl.HessianOperator(model, half_square, data, reduction="sum", engine=engine, check_determinism=False)
    for k in (1, 3):
        v = torch.randn(n, k, dtype=torch.float64, generator=torch.Generator().manual_seed(k))
        kept = v.clone()
        hv = op.torch_matmat(v)
        assert torch.equal(v, kept)  # the caller's block is untouched
        torch.testing.assert_close(hv, 2 * batches * kept, rtol=1e-12, atol=0)
        hv.add_(1.0)  # the result is the caller's to change: it does not alias the block
        assert torch.equal(v, kept)
        torch.testing.assert_close(op.torch_matmat(v), 2 * batches * kept, rtol=1e-12, atol=0)


def test_sums_over_batches_copy_their_first_part():
    """The helper every engine sums batch products with: it may keep the first part only when nothing is
    added to it (one batch of weight 1); otherwise a product that is its tangent would be changed."""
    from hesslens.operators.engines import _accumulate

    part = (torch.ones(3),)
    total = _accumulate(None, part, 1.0)
    _accumulate(total, (torch.ones(3),), 1.0)
    assert torch.equal(part[0], torch.ones(3)) and torch.equal(total[0], 2 * torch.ones(3))
    assert _accumulate(None, part, 1.0, only=True)[0] is part[0]
    scaled = _accumulate(None, part, 0.5, only=True)
    assert torch.equal(scaled[0], 0.5 * torch.ones(3)) and torch.equal(part[0], torch.ones(3))
