"""Data augmentation for ``hl.train(..., augment=...)``: built-in transforms of a training mini-batch.

``augment`` is applied to the inputs of every training mini-batch just before its forward pass(es)
— never to the evaluation passes, which always see the stored data. It is either

* a callable ``augment(x, generator) -> x'`` returning a tensor of the same shape, dtype and
  device as the batch ``x`` (it must not modify ``x`` in place: for full-batch training ``x`` is
  the stored training set itself); ``generator`` is the run's augmentation stream (below), which
  it should use for every random draw; or
* a string naming built-ins, several joined by ``+`` and applied left to right
  (``"shift2+noise0.1"``):

  ``"noise<σ>"``  additive Gaussian noise, x' = x + σ ξ with ξ ~ N(0, I), in the units of the
                  (standardised) inputs, e.g. ``"noise0.1"`` (σ > 0);
  ``"shift<k>"``  a random circular shift of every sample by an integer drawn uniformly from
                  {−k, …, k} (k ≥ 1), independently per sample: x'[…, j] = x[…, (j − s) mod L]
                  (``torch.roll`` by s). A sample of shape (L,) (flat features) or (C, L) (1-D
                  signals, MNIST-1D's 1×40) is shifted along its last axis; a (C, H, W) image
                  along both spatial axes, with independent offsets (s_H, s_W), the same for every
                  channel. Translation augmentation as usual for signals and images, made circular
                  so that nothing is filled in (cf. the random translations of MNIST-1D's own
                  generator, Greydanus & Kobak 2024, and the random crops of Krizhevsky et al. 2012).

Randomness: ``hl.train`` gives the augmentation its own ``torch.Generator`` on the CPU, seeded from
the run's ``seed`` (stream 4 of :func:`hesslens.training.loop._derived_seed`), so augmented runs are
reproducible and independent of the data-order, dropout, AdaHessian and gradient-noise streams.
Every draw is made on the CPU from that generator and then moved to the batch's device: ``noise``
draws ``torch.randn(x.shape, generator=g, dtype=x.dtype)``; ``shift`` draws
``torch.randint(-k, k + 1, (n,), generator=g)`` per shifted axis (H before W). The noise is added
as ``x + (σ ξ)``.
"""

from __future__ import annotations

import math
import re
from typing import Callable, Sequence

import torch

from ..errors import InvalidInputError

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]

#: Templates of the built-in augmentations, for error messages and documentation.
BUILTINS = ("noise<σ>", "shift<k>")

_NOISE = re.compile(r"^noise(?P<v>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)$")
_SHIFT = re.compile(r"^shift(?P<v>\d+)$")


def _fail(message: str) -> InvalidInputError:
    return InvalidInputError(f"augment: {message}")


def gaussian_noise(sigma: float) -> Augment:
    """The built-in ``"noise<σ>"``: x ↦ x + σ ξ, ξ ~ N(0, I) drawn from ``generator`` on the CPU."""
    sigma = float(sigma)

    def noise(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        xi = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        return x + xi.mul_(sigma).to(x.device)

    noise.__name__ = f"noise{sigma:g}"
    return noise


def _roll_rows(x: torch.Tensor, shifts: torch.Tensor, dim: int) -> torch.Tensor:
    """Sample i of ``x`` rolled by ``shifts[i]`` along ``dim``:
    out[i, …, j, …] = x[i, …, (j − s_i) mod L, …]."""
    size = x.shape[dim]
    along = [1] * x.dim()
    along[dim] = size
    per_sample = [len(x)] + [1] * (x.dim() - 1)
    index = torch.arange(size, device=x.device).view(along) - shifts.to(x.device).view(per_sample)
    return torch.gather(x, dim, index.remainder(size).expand_as(x))


def random_shift(k: int) -> Augment:
    """The built-in ``"shift<k>"``: a circular shift by s ~ U{−k, …, k} per sample (see the module docstring)."""
    k = int(k)

    def shift(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        dims = spatial_dims(x.dim() - 1)
        for dim in dims:
            x = _roll_rows(x, torch.randint(-k, k + 1, (len(x),), generator=generator), dim)
        return x

    shift.__name__ = f"shift{k}"
    return shift


def spatial_dims(sample_dims: int) -> tuple[int, ...]:
    """Batch-tensor axes that ``"shift<k>"`` rolls for samples with ``sample_dims`` axes."""
    if sample_dims in (1, 2):
        return (sample_dims,)
    if sample_dims == 3:
        return (2, 3)
    raise _fail(f"shift needs samples of shape (L,), (C, L) or (C, H, W), got {sample_dims} sample axes")


def _parse_one(part: str) -> tuple[Augment, str | None]:
    m = _NOISE.match(part)
    if m is not None:
        sigma = float(m.group("v"))
        if not math.isfinite(sigma) or sigma <= 0:
            raise _fail(f"the noise standard deviation must be a finite number > 0, got {part!r}")
        return gaussian_noise(sigma), None
    m = _SHIFT.match(part)
    if m is not None:
        k = int(m.group("v"))
        if k < 1:
            raise _fail(f"the maximal shift must be an integer >= 1, got {part!r}")
        return random_shift(k), "shift"
    raise _fail(f"unknown augmentation {part!r}; built-ins are {', '.join(BUILTINS)} (joined by '+'), "
                f"or pass a callable augment(x, generator) -> x")


def compose(parts: Sequence[Augment]) -> Augment:
    """Apply ``parts`` left to right, each with the same generator."""
    def composed(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for f in parts:
            x = f(x, generator)
        return x
    return composed


def resolve(spec: str | Augment | None, sample_shape: Sequence[int] | None = None) -> Augment | None:
    """The augmentation callable named by ``spec`` (None stays None), validated.

    ``sample_shape`` (the shape of one training input) lets ``"shift<k>"`` refuse inputs it cannot
    shift before training starts. Errors are :class:`InvalidInputError` naming ``augment``.

    >>> f = resolve("shift1+noise0.5")
    >>> tuple(f(torch.zeros(4, 1, 5), torch.Generator().manual_seed(0)).shape)
    (4, 1, 5)
    """
    if spec is None:
        return None
    if callable(spec):
        return spec
    if not isinstance(spec, str):
        raise _fail(f"must be None, a string naming built-ins ({', '.join(BUILTINS)}) or a callable "
                    f"augment(x, generator) -> x, got {spec!r}")
    parts = [_parse_one(part.strip()) for part in spec.split("+")]
    if sample_shape is not None and any(kind == "shift" for _, kind in parts):
        spatial_dims(len(sample_shape))
    return parts[0][0] if len(parts) == 1 else compose([f for f, _ in parts])


def apply(augment: Augment, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``augment(x, generator)``, checked to be a tensor of ``x``'s shape, dtype and device."""
    out = augment(x, generator)
    if not isinstance(out, torch.Tensor) or out.shape != x.shape or out.dtype != x.dtype or out.device != x.device:
        got = (f"shape {tuple(out.shape)}, dtype {out.dtype}, device {out.device}" if isinstance(out, torch.Tensor)
               else type(out).__name__)
        raise _fail(f"must return a tensor of the batch's shape {tuple(x.shape)}, dtype {x.dtype} and device "
                    f"{x.device}, got {got}")
    return out


def probe(augment: Augment, x: torch.Tensor, seed: int) -> None:
    """Try a user's ``augment`` once on ``x`` (a few training samples) with a throwaway generator
    seeded by ``seed``, so that a failure or a wrong output is reported before training starts."""
    try:
        apply(augment, x, torch.Generator().manual_seed(seed))
    except InvalidInputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of the user's function is a bad input
        raise _fail(f"failed on {len(x)} training samples ({type(exc).__name__}: {exc})") from exc
