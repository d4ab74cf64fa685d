"""Which parameters θ spans: names, glob patterns, modules or tensors, in the model's own order."""

from __future__ import annotations

import fnmatch
from typing import Iterable

import torch
from torch import nn

from ..errors import InvalidInputError

ParamSelection = Iterable[str | nn.Module | torch.Tensor] | str | nn.Module | None


def select_parameters(model: nn.Module, params: ParamSelection) -> list[str]:
    """Names of the selected parameters, in ``model.named_parameters()`` order.

    ``params`` is None (all parameters with ``requires_grad``), or one or several of: a name or
    glob pattern (``"0.*"``, ``"*.bias"``), a sub-module, a parameter tensor.
    """
    named = list(model.named_parameters())
    if params is None:
        names = [n for n, p in named if p.requires_grad]
        if not names:
            raise InvalidInputError("the model has no trainable parameters (none has requires_grad=True)")
        return names
    items = [params] if isinstance(params, (str, nn.Module, torch.Tensor)) else list(params)
    if not items:
        raise InvalidInputError("params is empty: it selects no parameter (pass None for all trainable ones)")
    chosen: set[str] = set()
    for item in items:
        if isinstance(item, str):
            hits = {n for n, _ in named if fnmatch.fnmatchcase(n, item)}
        elif isinstance(item, nn.Module):
            ids = {id(p) for p in item.parameters()}
            hits = {n for n, p in named if id(p) in ids}
        elif isinstance(item, torch.Tensor):
            hits = {n for n, p in named if p is item}
        else:
            raise InvalidInputError(f"params entries must be names, patterns, modules or tensors, got {type(item).__name__}")
        if not hits:
            raise InvalidInputError(f"params entry {item if isinstance(item, str) else type(item).__name__!r} matches no parameter of the model")
        chosen |= hits
    return [n for n, _ in named if n in chosen]
