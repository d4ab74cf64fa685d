"""Parameter groups of a model: which of an operator's parameters each block of :func:`blocks` holds.

:func:`resolve_groups` turns a ``spec`` of :func:`hesslens.blocks` ("auto", "parameters", a list or a
dict of groups of names, glob patterns, modules and parameters) into named lists of the operator's
parameter names, refusing (with an :class:`~hesslens.errors.InvalidInputError` naming them) groups
that select nothing, parameters in two groups and parameters in none.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..errors import InvalidInputError

#: Name of the block of parameters the model's root module owns directly (its qualified name is "").
ROOT = "(root)"

GroupItem = str | nn.Module | torch.Tensor
Group = GroupItem | Sequence[GroupItem]


def resolve_groups(model: nn.Module, names: Sequence[str], spec: Any) -> list[tuple[str, list[str]]]:
    """``[(block name, parameter names), …]`` for ``spec`` over the operator's parameters ``names``
    (see :func:`hesslens.blocks`); every one of ``names`` falls in exactly one group."""
    named = dict(model.named_parameters())
    selected = {id(named[n]): n for n in names}
    if isinstance(spec, str) and spec == "auto":
        groups = _auto_groups(model, selected)
    elif isinstance(spec, str) and spec == "parameters":
        groups = [(n, [n]) for n in names]
    elif isinstance(spec, Mapping):
        groups = [(_group_name(k), _resolve(k, g, model, named, selected)) for k, g in spec.items()]
    elif isinstance(spec, Sequence) and not isinstance(spec, str):
        groups = []
        for g in spec:
            label = _label(g, model)
            groups.append((label, _resolve(label, g, model, named, selected)))
    else:
        raise InvalidInputError(f"spec must be 'auto', 'parameters', a list of groups or a dict of named groups, got {spec!r}")
    if not groups:
        raise InvalidInputError("spec gives no group: pass 'auto', or at least one group of parameters")
    owner: dict[str, str] = {}
    for label, members in groups:
        for p in members:
            if p in owner:
                raise InvalidInputError(f"parameter {p!r} is in two blocks, {owner[p]!r} and {label!r}: every parameter "
                                        "must fall in exactly one block")
            owner[p] = label
    missing = [n for n in names if n not in owner]
    if missing:
        raise InvalidInputError(f"parameter{'s' if len(missing) > 1 else ''} {_shown(missing)} of the operator "
                                f"{'are' if len(missing) > 1 else 'is'} in no block: add a group for "
                                f"{'them' if len(missing) > 1 else 'it'}, or restrict the operator with params=")
    return groups


def _shown(names: Sequence[str], limit: int = 8) -> str:
    head = ", ".join(repr(x) for x in list(names)[:limit])
    return head + (f", … ({len(names)} in all)" if len(names) > limit else "")


def _auto_groups(model: nn.Module, selected: dict[int, str]) -> list[tuple[str, list[str]]]:
    groups, taken = [], set()
    for qualified, module in model.named_modules():
        own = []
        for _, p in module.named_parameters(recurse=False):
            if id(p) in selected and id(p) not in taken:
                taken.add(id(p))
                own.append(selected[id(p)])
        if own:
            groups.append((qualified or ROOT, own))
    return groups


def _group_name(key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise InvalidInputError(f"block names must be non-empty strings, got {key!r}")
    return key


def _label(group: Any, model: nn.Module) -> str:
    """The name of a listed group: a string itself, a module's qualified name, a parameter's name."""
    if isinstance(group, str):
        return group
    if isinstance(group, nn.Module):  # its first qualified name; a module outside the model is refused later
        found = next((q for q, m in model.named_modules() if m is group), None)
        return type(group).__name__ if found is None else (found or ROOT)
    if isinstance(group, torch.Tensor):
        return next((q for q, p in model.named_parameters() if p is group), "tensor")
    if isinstance(group, Sequence) and group:
        return "+".join(_label(g, model) for g in group)
    return repr(group)


def _resolve(label: str, group: Any, model: nn.Module, named: dict[str, torch.Tensor],
             selected: dict[int, str]) -> list[str]:
    """The operator's parameter names a group selects, refusing items that select none."""
    items = group if isinstance(group, Sequence) and not isinstance(group, str) else [group]
    if not items:
        raise InvalidInputError(f"block {label!r} is empty: a group needs a parameter name, a pattern, a module or a "
                                f"parameter (or a list of them), got {group!r}")
    wanted = set(selected.values())
    hits: list[str] = []
    for item in items:
        if isinstance(item, str):
            matched = [n for n in named if fnmatch.fnmatchcase(n, item)]
            what = f"{item!r}"
        elif isinstance(item, nn.Module):
            if not any(m is item for m in model.modules()):
                raise InvalidInputError(f"block {label!r}: the {type(item).__name__} given is not a module of the model")
            ids = {id(p) for p in item.parameters()}
            matched = [n for n, p in named.items() if id(p) in ids]
            what = f"module {_label(item, model)!r}"
        elif isinstance(item, torch.Tensor):
            matched = [n for n, p in named.items() if p is item]
            if not matched:
                raise InvalidInputError(f"block {label!r}: the tensor given is not a parameter of the model")
            what = f"parameter {matched[0]!r}"
        else:
            raise InvalidInputError(f"block {label!r}: groups are made of parameter names, patterns, modules or "
                                    f"parameters, got {type(item).__name__}")
        inside = [n for n in matched if n in wanted]
        if not inside:
            why = ("matches no parameter of the model" if not matched else
                   f"matches only parameters outside the operator's params= ({_shown(matched, 4)})")
            raise InvalidInputError(f"block {label!r}: {what} {why}")
        hits.extend(n for n in inside if n not in hits)
    return hits
