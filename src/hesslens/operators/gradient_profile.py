"""What one gradient of the first batch saves for backward and which autograd nodes it runs: the
figures the engine choice (:mod:`hesslens.operators.choice`) estimates a linearisation's build time,
cache and blockers from, before building anything."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from . import linearize
from .engines import BatchLoss, Params, _leaf_copies

#: Autograd nodes (``grad_fn`` classes) whose backward, traced by linearize, crashes the interpreter (a
#: segfault, which no ``except`` can catch), so their models never reach the linearize engine.
LINEARIZE_CRASHES = {"MseLossBackward0": "mse_loss backward segfaults under linearize tracing (PyTorch 2.13)"}

#: Seconds a linearisation's build (tracing forward, backward and their tangents) takes per node of the
#: gradient's autograd graph, at least: 16–42 ms were measured on a 2-core machine (the benchmark MLP, CNN
#: and transformer, 10, 14 and 127 nodes: 0.42 s, 0.50 s and 2.1 s); taken lower so that a faster
#: machine still tries a linearisation where it might pay.
LINEARIZE_SECONDS_PER_NODE = 0.01

#: The first linearisation in a process also warms torch's tracing stack: about 0.8 s measured where it
#: imports dynamo too, 0.3 s where ``torch.optim`` had imported dynamo already (the benchmark MLP after its
#: training: 0.61 s for the first build, 0.30 s for the next ones, on a 2-core AMD EPYC).
LINEARIZE_FIRST_USE_SECONDS = 0.5

#: A linearisation's traced constants and its replay's intermediates, as a multiple of the bytes one
#: gradient saves for backward: its growth of the peak RSS over a double-backward operator's, after one
#: product, was 1.3× (benchmark CNN), 11.7× (transformer) and 9.3× (GPT) in ``python -m
#: benchmarks.linearize_cache`` once in-place writes no longer stopped the folding
#: (:func:`~hesslens.operators.linearize_passes.write_out_of_place`: the transformer then holds the forward pass
#: its replay used to recompute; 7.6× before); rounded up from the largest.
LINEARIZE_CACHE_FACTOR = 12


@dataclass(frozen=True)
class GradientProfile:
    """What one gradient of the first batch saves for backward and which autograd nodes it runs."""

    saved_bytes: int
    ops: frozenset[str]  # the grad_fn classes of the loss's autograd graph
    depends: bool = True  # whether the loss depends on the parameters at all
    nodes: int = 0  # nodes of that graph (operations with a backward; parameter leaves not counted)

    def linearize_estimate(self) -> float:
        """Seconds a linearisation of this gradient takes to build, estimated from its graph's size (and
        the first use of torch's tracing stack in this process)."""
        # Not "is torch._dynamo imported": torch.optim imports it, and the first trace still costs more after.
        first = 0.0 if linearize.traces_started else LINEARIZE_FIRST_USE_SECONDS
        return first + LINEARIZE_SECONDS_PER_NODE * self.nodes

    def linearize_cache_estimate(self, batches: int = 1) -> int:
        """Bytes a linearisation of ``batches`` such batches would hold (:data:`LINEARIZE_CACHE_FACTOR`
        times the saved bytes, per batch)."""
        return LINEARIZE_CACHE_FACTOR * self.saved_bytes * batches

    def linearize_blocker(self) -> str | None:
        hits = [LINEARIZE_CRASHES[o] for o in self.ops if o in LINEARIZE_CRASHES]
        return hits[0] if hits else None


def _graph_nodes(root: Any) -> list[str]:
    """The class names of the autograd nodes reachable from ``root`` (each once), parameter leaves left
    out. A walk of the graph, not a dispatch mode: that would import torch's compiler stack (about a
    second in a fresh process)."""
    seen, stack, names = set(), [root], []
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if type(node).__name__ != "AccumulateGrad":
            names.append(type(node).__name__)
        stack.extend(n for n, _ in node.next_functions)
    return names


def profile_gradient(loss: BatchLoss, params: Params, batch: Any) -> GradientProfile:
    """One gradient of ``batch`` with saved-tensor and graph bookkeeping (a cached engine keeps about
    three times the saved bytes per batch)."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    leaves = _leaf_copies(params)
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        value = loss(tuple(leaves), batch)
        if not value.requires_grad:
            return GradientProfile(total, frozenset(), depends=False)
        nodes = _graph_nodes(value.grad_fn)
        torch.autograd.grad(value, leaves, allow_unused=True)
    return GradientProfile(total, frozenset(nodes), nodes=len(nodes))
