"""A guard that leaves a model exactly as it found it.

Analysing a model must not change its parameters, buffers (BatchNorm running statistics),
train/eval flags, ``requires_grad`` flags, ``.grad`` tensors or the global random stream.
:func:`preserved_state` snapshots all of these, puts the model into the requested mode for the
duration of a computation, and restores everything on exit, also when the computation raises.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

MODES = ("eval", "train", "as_is")


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return mode


@contextlib.contextmanager
def preserved_state(model: nn.Module, mode: str = "as_is") -> Iterator[nn.Module]:
    """Run a block with ``model`` in ``mode``, then restore every piece of state.

    In training mode BatchNorm layers normalise with batch statistics. Their running-statistics
    update is switched off for the duration (``track_running_stats=False``) rather than undone
    afterwards, because an in-place buffer update inside ``vmap`` or a traced linearisation is
    either an error or a silent mutation of a captured constant.
    """
    check_mode(mode)
    # Only what differs is written back, below: a module's attribute assignment, a requires_grad_ and
    # a .grad assignment each cost Python-level dispatch, paid on every product of a small model.
    modules = list(model.modules())
    params = list(model.parameters())
    training = [m.training for m in modules]
    requires_grad = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    rng = torch.random.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    tracking = {}
    try:
        if mode != "as_is" and any(flag != (mode == "train") for flag in training):
            model.train(mode == "train")
        for m in modules:
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training:
                tracking[m] = m.track_running_stats
                m.track_running_stats = False
        yield model
    finally:
        for m, flag in tracking.items():
            m.track_running_stats = flag
        for m, flag in zip(modules, training):
            if m.training != flag:
                m.training = flag
        for p, flag, g in zip(params, requires_grad, grads):
            if p.requires_grad != flag:
                p.requires_grad_(flag)
            if p.grad is not g:
                p.grad = g
        with torch.no_grad():
            for name, b in model.named_buffers():
                # Write back only what changed: a copy bumps the buffer's version counter, which
                # would invalidate any autograd graph that saved it (a kept double-backward graph).
                saved = buffers.get(name)
                if saved is not None and b.shape == saved.shape and not torch.equal(b, saved):
                    b.copy_(saved)
        torch.random.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
