"""What ``hesslens analyze`` reads from its options, checked before any work: the user's model,
checkpoint and data (``--model``, ``--checkpoint``, ``--data``), the memory budget, and the parameter
selection with ``--k``/``--which`` (``--params PATTERN…``). Every refusal is a usage error naming the
option (exit status 2)."""

from __future__ import annotations

import os
from typing import Any

import click

from . import loading
from .errors import HesslensError


# -- loading the user's objects -------------------------------------------------------------------
def load_object(spec: str, option: str) -> Any:
    """Resolve ``module:attribute`` (attribute may be dotted) with :func:`hesslens.loading.load_object`;
    its errors become usage errors of ``option``."""
    try:
        return loading.load_object(spec)
    except loading.ObjectLoadError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from exc


def _call(obj: Any, spec: str, option: str) -> Any:
    try:
        return obj()
    except HesslensError:
        raise
    except Exception as exc:
        raise click.ClickException(f"{option} {spec}: calling it failed: {type(exc).__name__}: {exc}") from exc


def load_model(spec: str, checkpoint: str | None):
    """The user's model from ``--model`` and, if given, its weights from ``--checkpoint``."""
    import torch
    from torch import nn

    obj = load_object(spec, "--model")
    model = obj if isinstance(obj, nn.Module) else _call(obj, spec, "--model") if callable(obj) else obj
    if not isinstance(model, nn.Module):
        raise click.BadParameter(f"{spec!r} gave a {type(model).__name__}, not a torch.nn.Module", param_hint="--model")
    if checkpoint is not None:
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise click.BadParameter(f"cannot read {checkpoint!r} with torch.load: {type(exc).__name__}: {exc}",
                                     param_hint="--checkpoint") from exc
        if isinstance(state, dict):
            for key in ("state_dict", "model_state_dict", "model"):
                if isinstance(state.get(key), dict):
                    state = state[key]
                    break
        if not isinstance(state, dict):
            raise click.BadParameter(f"{checkpoint!r} holds a {type(state).__name__}, not a state_dict",
                                     param_hint="--checkpoint")
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise click.BadParameter(f"{checkpoint!r} does not fit the model from {spec!r}: "
                                     + " ".join(str(exc).split()), param_hint="--checkpoint") from exc
    return model


def load_data(spec: str) -> Any:
    obj = load_object(spec, "--data")
    return _call(obj, spec, "--data") if callable(obj) else obj


def _memory_budget(value: str | None) -> None:
    """Validate --memory-budget and make it the process's budget (the variable every algorithm reads)."""
    if value is None:
        return
    from . import memory
    from .errors import InvalidInputError

    try:
        memory.parse_bytes(value, "--memory-budget")
    except InvalidInputError as exc:
        raise click.BadParameter(str(exc), param_hint="'--memory-budget'") from None
    os.environ[memory.ENV_VAR] = value


# -- --params, --k and --which --------------------------------------------------------------------
class _AnalyzeCommand(click.Command):
    """``analyze``, whose ``--params`` takes one or more patterns: ``--params a b`` is read as
    ``--params a --params b`` (click options take one value each; the command has no positional
    arguments, so every word up to the next option is a pattern)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, spread_params(args))


def spread_params(args: list[str]) -> list[str]:
    """``args`` with the words after ``--params VALUE`` (up to the next option or ``--``) repeated as
    ``--params WORD``."""
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return out + args[i:]
        out.append(arg)
        i += 1
        if arg == "--params" or arg.startswith("--params="):
            if arg == "--params" and i < len(args):
                out.append(args[i])  # its first value, taken as click takes it
                i += 1
            while i < len(args) and not args[i].startswith("-"):
                out += ["--params", args[i]]
                i += 1
    return out


def _parameter_list(named: list[tuple[str, Any]], limit: int = 40) -> str:
    shown = [f"{name} {tuple(p.shape)}" for name, p in named[:limit]]
    more = f", … ({len(named) - limit} more)" if len(named) > limit else ""
    return ", ".join(shown) + more


def check_selection(model: Any, patterns: tuple[str, ...], k: int, which: str) -> list[str]:
    """The names ``--params`` selects (by :func:`hesslens.operators.params.select_parameters`, the rule
    of ``HessianOperator(params=)``), after checking that every pattern matches and that ``--k`` fits
    the selected dimension n as :func:`hesslens.eigenvalues` requires (k < n; 2k ≤ n for "both").
    Refusals are usage errors of the option (exit status 2)."""
    from .errors import InvalidInputError
    from .operators.params import select_parameters

    ctx = click.get_current_context(silent=True)
    named = list(model.named_parameters())
    for pattern in patterns:  # one at a time, so that the error names the pattern that matches nothing
        try:
            select_parameters(model, [pattern])
        except InvalidInputError:
            raise click.BadParameter(
                f"{pattern!r} matches no parameter of the model. Patterns are fnmatch globs on the names of "
                f"model.named_parameters() (quote them in the shell); the names are: {_parameter_list(named)}",
                ctx=ctx, param_hint="'--params'") from None
    names = select_parameters(model, list(patterns) or None)
    sizes = {name: p.numel() for name, p in named}
    n = sum(sizes[name] for name in names)
    what = (f"the {len(names)} selected parameter tensors ({', '.join(names)})" if patterns and len(names) <= 8
            else f"the {len(names)} selected parameter tensors" if patterns else "the model's trainable parameters")
    if which == "both" and 2 * k > n:
        raise click.BadParameter(
            f"{k} is too large: --which both returns the {k} smallest and the {k} largest of the n={n:,} "
            f"eigenvalues of {what}, and they must not overlap; use --k {n // 2} or less",
            ctx=ctx, param_hint="'--k'")
    if k >= n:
        raise click.BadParameter(
            f"{k} is too large: {what} span n={n:,} dimensions and hesslens.eigenvalues needs k < n; "
            f"use --k {n - 1} or less (hesslens.exact_spectrum gives all eigenvalues)",
            ctx=ctx, param_hint="'--k'")
    return names
