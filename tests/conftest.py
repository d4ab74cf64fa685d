"""Shared test helpers: exact float64 references computed independently of hesslens.

The reference Hessian is ∇²_θ f(θ) from ``torch.func.hessian`` of a function of the *flat* vector
θ (the selected parameters, flattened and concatenated in ``model.named_parameters()`` order), the
model being evaluated by ``torch.func.functional_call``. Nothing here uses hesslens code, so a test
comparing an operator against it can fail.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable, Sequence

import pytest
import torch
from threadpoolctl import threadpool_limits
from torch import nn
from torch.func import functional_call


@pytest.fixture(autouse=True, scope="session")
def _single_torch_thread():
    """One intra-op thread for torch and NumPy's BLAS in the test process, restored afterwards.

    The test models are tiny: threads only add synchronisation, and on a loaded 2-core machine
    OpenMP's spin-waiting made products up to fifty times slower (measured: 4 ms → 210 ms for a
    10-column product of a 20-32-3 MLP). Spawned study workers are not affected: they set their own
    thread count, which tests/studies checks. HESSLENS_TEST_THREADS=k uses k threads instead.
    """
    threads = int(os.environ.get("HESSLENS_TEST_THREADS", "1"))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        torch.set_num_threads(before)


#: objective(call) -> scalar, where call(*args) runs the model with θ substituted.
Objective = Callable[[Callable[..., Any]], torch.Tensor]


def _flat_function(model: nn.Module, objective: Objective, names: Sequence[str] | None):
    named = dict(model.named_parameters())
    names = list(names) if names is not None else [n for n, p in named.items() if p.requires_grad]
    shapes = [named[n].shape for n in names]
    sizes = [math.prod(s) for s in shapes]
    theta0 = torch.cat([named[n].detach().reshape(-1) for n in names]).to(torch.float64)

    def f(theta: torch.Tensor) -> torch.Tensor:
        pieces = torch.split(theta, sizes)
        values = {n: p.reshape(s) for n, p, s in zip(names, pieces, shapes)}
        return objective(lambda *args, **kwargs: functional_call(model, values, args, kwargs))

    return f, theta0


def reference_hessian(model: nn.Module, objective: Objective, names: Sequence[str] | None = None) -> torch.Tensor:
    """Dense float64 ∇²_θ objective at the model's current parameters (model must be float64).

    ``names`` selects θ (default: every parameter with requires_grad); the others stay fixed.
    """
    f, theta0 = _flat_function(model, objective, names)
    return torch.func.hessian(f)(theta0).detach()


def reference_gradient(model: nn.Module, objective: Objective, names: Sequence[str] | None = None) -> torch.Tensor:
    """Flat float64 ∇_θ objective, by ``torch.func.grad``."""
    f, theta0 = _flat_function(model, objective, names)
    return torch.func.grad(f)(theta0).detach()


def logits_of(outputs: Any) -> torch.Tensor:
    return outputs if isinstance(outputs, torch.Tensor) else outputs.logits


def concatenated_objective(loss_fn: Callable, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> Objective:
    """loss_fn over all samples at once: the mean (or sum) loss over the concatenated data.

    For models without batch-dependent layers this is the Hessian's definition, with no batch
    weights involved at all.
    """
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    return lambda call: loss_fn(logits_of(call(x)), y)


def weighted_objective(batch_objective: Callable[[Callable, Any], torch.Tensor], batches: Sequence[Any],
                       weights: Sequence[float]) -> Objective:
    """Σ_b w_b · batch_objective(call, batch_b): needed when a batch's loss depends on the batch as a
    whole (BatchNorm with batch statistics)."""
    return lambda call: sum(w * batch_objective(call, b) for w, b in zip(weights, batches))


def size_weights(batches: Sequence[Any], size: Callable[[Any], int] = lambda b: len(b[0])) -> list[float]:
    """n_b / N for each batch."""
    sizes = [size(b) for b in batches]
    return [s / sum(sizes) for s in sizes]


def assert_close64(actual: torch.Tensor, expected: torch.Tensor, tol: float = 1e-10) -> None:
    """Entrywise |a − e| ≤ tol · max(1, max|e|): relative to the matrix's scale, absolute near 0."""
    scale = max(1.0, float(expected.abs().max()))
    err = float((actual.to(torch.float64) - expected).abs().max())
    assert err <= tol * scale, f"max abs error {err:.3e} > {tol:.0e} × scale {scale:.3e}"
