"""The loss as a function of the parameters and a batch, and what is checked about it once.

* :class:`LossModule` evaluates ``loss_fn(model(inputs), targets)`` or ``batch_loss(model, batch)``
  so that ``functional_call`` can substitute the parameters.
* :func:`probe_reduction` decides whether a loss whose reduction cannot be read is a mean or a sum
  over the batch's samples, from the loss of the batch B and of B with every sample twice (B ⊕ B):

      mean:  L(B ⊕ B) = L(B)          sum:  L(B ⊕ B) = 2·L(B)

  Doubling rather than halving keeps batch statistics (BatchNorm in train mode normalises B ⊕ B
  exactly as B) and works on a batch of one sample. It matters for the batch weights: a mean is
  weighted n_b/N, a sum 1, so that H is the Hessian of the mean, respectively of the sum, over all
  N samples.
* :func:`check_losses` evaluates every batch once (finite scalars) and :func:`check_determinism` refuses
  a loss that changes between two evaluations (dropout, a shuffling loader whose pass total changes);
* :func:`explain_failure` turns the raw torch errors of common mistakes (dtype mismatch, a model
  returning a tuple or dict given to ``loss_fn``) into errors that name the mistake.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._pytree import tree_leaves

from ..errors import InvalidInputError, NonDeterministicLossError
from .data import AnalysisData, doubled_batch, first_non_finite_leaf

REDUCTIONS = ("mean", "sum")


def outputs_tensor(outputs: Any) -> Any:
    # Hugging Face style outputs carry the predictions in .logits.
    if not isinstance(outputs, torch.Tensor) and hasattr(outputs, "logits"):
        return outputs.logits
    return outputs


class LossModule(nn.Module):
    """Wraps model and loss so that ``functional_call`` can substitute parameters in either form."""

    def __init__(self, model: nn.Module, loss_fn: Callable | None, batch_loss: Callable | None):
        super().__init__()
        self.model = model
        self._loss_fn, self._batch_loss = loss_fn, batch_loss

    def forward(self, batch: Any) -> torch.Tensor:
        # PyTorch's fused attention kernels (flash, memory-efficient) have neither a forward-mode
        # derivative nor a double-backward formula; the reference "math" kernel computes the same
        # function with differentiable operations. The choice is restored on exit.
        with sdpa_kernel(SDPBackend.MATH):
            return self._evaluate(batch)

    def _evaluate(self, batch: Any) -> torch.Tensor:
        if self._batch_loss is not None:
            return self._batch_loss(self.model, batch)
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise InvalidInputError(
                f"with loss_fn, every batch must be an (inputs, targets) pair, got {type(batch).__name__}; "
                "pass batch_loss=fn(model, batch) for other batch structures"
            )
        inputs, targets = batch
        outputs = outputs_tensor(self.model(inputs))
        try:
            return self._loss_fn(outputs, targets)
        except Exception as err:
            if isinstance(outputs, torch.Tensor):
                raise
            raise InvalidInputError(
                f"the model returns a {type(outputs).__name__}, not a tensor, and loss_fn failed on it ({err}); "
                "pass batch_loss=lambda model, batch: ... to compute the loss from the model's outputs"
            ) from err


def declared_reduction(loss_fn: Callable | None, reduction: str | None) -> str | None:
    """The reduction given by the user or readable from ``loss_fn.reduction``; None if unknown."""
    readable = getattr(loss_fn, "reduction", None) if loss_fn is not None else None
    if reduction is not None:
        if reduction not in REDUCTIONS:
            raise InvalidInputError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        if readable in REDUCTIONS and readable != reduction:
            raise InvalidInputError(f"reduction={reduction!r} contradicts the loss's own reduction={readable!r}")
        return reduction
    if readable is None:
        return None
    if readable not in REDUCTIONS:
        raise InvalidInputError(f"the loss has reduction={readable!r}; the Hessian needs a scalar loss: use "
                                "reduction='mean' (H of the mean over samples) or 'sum' (H of the sum)")
    return readable


def probe_reduction(evaluate: Callable[[Any], torch.Tensor], data: AnalysisData, tolerance: float) -> str | None:
    """'mean' or 'sum' from the loss of a batch and of the batch doubled; None if undecidable.

    Raises where the loss is neither (it is normalised some other way, e.g. by a fixed constant
    or squared), since the batch weights then cannot be chosen.
    """
    if data.batch_size is not None:
        return None  # a custom batch structure: no way to double it
    for batch in data:
        with torch.no_grad():
            once = float(evaluate(batch))
            try:
                twice = float(evaluate(doubled_batch(batch, data.batch_dim)))
            except (RuntimeError, ValueError, TypeError, IndexError) as err:  # e.g. a hard-coded batch size
                raise InvalidInputError(
                    f"cannot probe the loss's reduction: it fails on the batch with every sample twice ({err}); "
                    "pass reduction='mean' or reduction='sum'") from err
        if once == 0.0:
            continue  # mean and sum agree on a zero loss: try the next batch
        if math.isclose(twice, once, rel_tol=tolerance):
            return "mean"
        if math.isclose(twice, 2 * once, rel_tol=tolerance):
            return "sum"
        raise InvalidInputError(
            f"cannot tell whether the loss is a mean or a sum over samples: it is {once:.6g} on a batch and "
            f"{twice:.6g} on the same batch with every sample twice (a mean would stay, a sum would double). "
            "Pass reduction='mean' or reduction='sum' to say how batches combine"
        )
    return None


def settled_reduction(probed: str | None, batches: int, data: AnalysisData) -> tuple[str, str]:
    """(reduction, how it was known) for a loss whose reduction was not declared: the probed one; for one
    batch in all (over every rank) ``"as_given"``, since any reduction weighs it 1; else an error."""
    if probed is not None:
        return probed, "probed (loss of a batch against the batch doubled)"
    if batches == 1:
        return "as_given", "one batch (its weight is 1 for any reduction)"
    raise InvalidInputError(
        "cannot read the loss's reduction (a plain function or batch_loss) and could not probe it "
        f"({'batch_size= hides how to double a batch' if data.batch_size else 'the loss is zero on every batch'}); "
        "pass reduction='mean' (H of the mean over all samples) or reduction='sum' (H of the sum)")


def explain_failure(err: Exception, batch: Any, dtype: torch.dtype, index: int) -> InvalidInputError:
    """An error naming the likely mistake behind a raw failure of the loss on batch ``index``."""
    floats = [(i, leaf.dtype) for i, leaf in enumerate(tree_leaves(batch))
              if isinstance(leaf, torch.Tensor) and leaf.is_floating_point() and leaf.dtype != dtype]
    hint = ""
    if floats:
        i, other = floats[0]
        hint = (f": the model's parameters are {str(dtype).removeprefix('torch.')} but tensor {i} of the batch is "
                f"{str(other).removeprefix('torch.')}; convert one to the other (e.g. x.to({dtype}))")
    return InvalidInputError(f"evaluating the loss on batch {index} failed ({type(err).__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else ''}){hint}")


def check_losses(evaluate: Callable[[Any], torch.Tensor], data: AnalysisData, dtype: torch.dtype) -> tuple[list[float], Any]:
    """The loss of every batch (finite scalars, else an error naming the batch) and the first batch."""
    losses, first = [], None
    with torch.no_grad():
        for i, batch in enumerate(data):
            bad = first_non_finite_leaf(batch)
            if bad:
                raise InvalidInputError(f"batch {i} of {len(data)}: {bad}")
            try:
                value = evaluate(batch)
            except (RuntimeError, TypeError) as err:
                raise explain_failure(err, batch, dtype, i) from err
            if not isinstance(value, torch.Tensor) or value.numel() != 1:
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise InvalidInputError(f"the loss must be a scalar, got {shape} on batch {i}; reduce it with mean or sum")
            v = float(value)
            if not math.isfinite(v):
                raise InvalidInputError(f"the loss is not finite ({v}) on batch {i} of {len(data)}")
            losses.append(v)
            first = batch if first is None else first
    return losses, first


def check_determinism(evaluate: Callable[[Any], torch.Tensor], data: AnalysisData, losses: list[float], first_batch: Any,
                      reduction: str | None, mode: str, tolerance: float) -> str | None:
    """Refuse a loss that changes between two evaluations of batch 0 (:class:`NonDeterministicLossError`,
    saying why). Returns the data order to record where the data are shuffled but the loss over a whole
    pass does not depend on it (checked), else None."""
    batch = next(iter(data))
    with torch.no_grad():
        again = float(evaluate(batch))
    # Two evaluations of the same batch are bitwise equal on a deterministic model; 1e-6 absorbs
    # nondeterministic reductions of some kernels, far below what dropout or augmentation change.
    if math.isclose(again, losses[0], rel_tol=1e-6, abs_tol=1e-9):
        return None
    same_inputs = all(
        a is b or (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b))
        for a, b in zip(tree_leaves(first_batch), tree_leaves(batch))
    )
    if not same_inputs and _order_independent(evaluate, data, losses, reduction, tolerance):
        return "shuffled; the loss over a pass does not depend on it (checked)"
    if same_inputs:
        cause = {"train": "the model is stochastic in train mode (dropout?); use mode='eval'",
                 "eval": "the model is stochastic even in eval mode (a layer samples at every call)",
                 "as_is": "the model is stochastic as it is (dropout active?); use mode='eval'"}[mode]
    else:
        cause = ("the data yields different batches on each pass (shuffling loader or random augmentation) and the "
                 "loss over a whole pass changes with them"
                 + (" (batch-dependent layers such as BatchNorm in train mode)" if mode != "eval" else ""))
    raise NonDeterministicLossError(
        f"the loss on batch 0 changed between two evaluations ({losses[0]!r} then {again!r}): {cause}. "
        "The Hessian would differ from product to product; use a fixed subset or a loader without shuffling, "
        "or pass check_determinism=False if this is intended"
    )


def _order_independent(evaluate: Callable[[Any], torch.Tensor], data: AnalysisData, losses: list[float],
                       reduction: str | None, tolerance: float) -> bool:
    """Whether a second pass over the data gives the same total loss as the first."""
    weights = data.weights(reduction)  # None (not probed yet) weighs as a mean
    with torch.no_grad():
        again = [float(evaluate(b)) for b in data]
    first = sum(w * l for w, l in zip(weights, losses))
    second = sum(w * l for w, l in zip(weights, again))
    return len(again) == len(losses) and math.isclose(first, second, rel_tol=tolerance, abs_tol=1e-12)
