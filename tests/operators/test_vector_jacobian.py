"""The double-backward product's backward pass: the autograd engine call that ``torch.autograd.grad``
makes, without the argument check that imports sympy (:func:`hesslens.operators.engines.vector_jacobian`)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from hesslens.operators.engines import vector_jacobian

DT = torch.float64


def _kept_gradient():
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).to(DT)
    unused = torch.zeros(4, dtype=DT, requires_grad=True)  # the loss does not read it: its product is None
    leaves = [p.detach().requires_grad_(True) for p in model.parameters()] + [unused]
    x, y = torch.randn(7, 3, generator=g, dtype=DT), torch.randint(0, 2, (7,), generator=g)
    out = torch.func.functional_call(model, dict(zip([n for n, _ in model.named_parameters()], leaves)), (x,))
    loss = nn.functional.cross_entropy(out, y)
    grads = torch.autograd.grad(loss, leaves[:-1], create_graph=True)
    tangents = [torch.randn(p.shape, generator=g, dtype=DT) for p in grads]
    return grads, leaves, tangents


def test_it_is_autograd_grad_to_the_bit_and_replays():
    grads, leaves, tangents = _kept_gradient()
    expected = torch.autograd.grad(grads, leaves, tangents, retain_graph=True, allow_unused=True)
    for _ in range(2):  # the graph is kept: a second product through it is the same
        got = vector_jacobian(grads, leaves, tangents)
        assert got[-1] is None and expected[-1] is None
        for a, b in zip(got[:-1], expected[:-1]):
            assert torch.equal(a, b)


def test_without_the_engine_call_it_is_autograd_grad(monkeypatch):
    grads, leaves, tangents = _kept_gradient()
    expected = torch.autograd.grad(grads, leaves, tangents, retain_graph=True, allow_unused=True)
    monkeypatch.delattr(torch.autograd.graph, "_engine_run_backward")
    got = vector_jacobian(grads, leaves, tangents)
    assert all(torch.equal(a, b) for a, b in zip(got[:-1], expected[:-1]))


def test_a_tangent_of_the_wrong_shape_gets_autograds_error():
    grads, leaves, tangents = _kept_gradient()
    tangents[0] = tangents[0].reshape(-1)
    with pytest.raises(RuntimeError, match="Mismatch in shape"):
        vector_jacobian(grads, leaves, tangents)


def test_a_first_analysis_in_a_fresh_process_does_not_import_sympy():
    """``torch.autograd.grad`` with ``grad_outputs`` imports sympy (0.2 s); the operator's own products do not."""
    code = textwrap.dedent("""
        import sys, torch, hesslens as hl
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        data = (torch.randn(32, 4), torch.randint(0, 3, (32,)))
        op = hl.HessianOperator(model, torch.nn.CrossEntropyLoss(), data)
        hl.eigenvalues(op, k=1, which="largest", progress=False)
        print("sympy" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-1] == "False", out.stderr
