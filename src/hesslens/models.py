"""Small architectures for the studies: MLPs with dropout and VGG-style convolutional nets.

All builders take a ``seed`` and initialise deterministically: the parameters are drawn inside
:func:`torch.random.fork_rng` after ``torch.manual_seed(seed)``, so the same seed gives the same
network and the caller's global random stream is left exactly as it was.

* :func:`mlp` — ``in → hidden[0] → … → out`` with an activation and optional dropout after every
  hidden layer (the MLP of Kaur, Cohen & Lipton 2023 is ``mlp(784, (256, 256), 10, dropout=p)``).
  Inputs of any shape are flattened first, so it accepts MNIST-1D's 1×40 signals or 1×8×8 images.
* :func:`vgg1d` / :func:`vgg2d` — VGG-style stacks: ``[conv3 → (BatchNorm) → activation (ReLU by default)] × per stage`` with
  2× max-pooling between stages, then global average pooling and a linear classifier. With
  ``batchnorm=False`` the convolutions carry biases; with ``batchnorm=True`` they do not (the
  BatchNorm shift plays that role), the usual VGG-BN convention.

Sizes (global average pooling makes them independent of the input length): ``vgg1d(1, 10)`` has
1,962 parameters (2,010 with BatchNorm), ``vgg2d(1, 10)`` 5,130, ``mlp(40, (256, 256), 10)`` 78,858.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from .errors import InvalidInputError

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "elu": nn.ELU, "softplus": nn.Softplus,
}


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise InvalidInputError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


def _seeded(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Build a module with its parameters drawn from ``seed``, leaving the global stream as it was."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer, got {seed!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _positive_ints(name: str, values: Sequence[int], allow_empty: bool) -> tuple[int, ...]:
    values = tuple(values)
    if (not values and not allow_empty) or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise InvalidInputError(f"{name} must be a {'' if allow_empty else 'non-empty '}sequence of positive "
                                f"integers, got {values!r}")
    return values


def _dropout(p: float) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise InvalidInputError(f"dropout must be a probability in [0, 1), got {p!r}")
    return float(p)


def mlp(in_features: int, hidden: Sequence[int] = (256, 256), out: int = 10, *, dropout: float = 0.0,
        activation: str = "relu", seed: int = 0) -> nn.Sequential:
    """A fully connected net: Flatten, then ``Linear → activation → Dropout(p)`` per hidden layer, then Linear.

    ``dropout=0`` adds no Dropout modules at all (so the net has no stochastic layer).
    """
    (in_features,) = _positive_ints("in_features", (in_features,), False)
    (out,) = _positive_ints("out", (out,), False)
    hidden = _positive_ints("hidden", hidden, True)
    p = _dropout(dropout)
    _activation(activation)

    def build() -> nn.Sequential:
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), _activation(activation)]
            if p > 0:
                layers.append(nn.Dropout(p))
            width = h
        layers.append(nn.Linear(width, out))
        return nn.Sequential(*layers)

    return _seeded(build, seed)


def _vgg(dim: int, in_channels: int, out: int, channels: Sequence[int], convs_per_stage: int, batchnorm: bool,
         seed: int, activation: str = "relu") -> nn.Sequential:
    (in_channels,) = _positive_ints("in_channels", (in_channels,), False)
    (out,) = _positive_ints("out", (out,), False)
    channels = _positive_ints("channels", channels, False)
    (convs_per_stage,) = _positive_ints("convs_per_stage", (convs_per_stage,), False)
    _activation(activation)
    conv = nn.Conv1d if dim == 1 else nn.Conv2d
    norm = nn.BatchNorm1d if dim == 1 else nn.BatchNorm2d
    pool = nn.MaxPool1d if dim == 1 else nn.MaxPool2d
    gap = nn.AdaptiveAvgPool1d(1) if dim == 1 else nn.AdaptiveAvgPool2d(1)

    def build() -> nn.Sequential:
        layers: list[nn.Module] = []
        width = in_channels
        for s, c in enumerate(channels):
            if s > 0:
                layers.append(pool(2))  # halve the resolution between stages, as VGG does
            for _ in range(convs_per_stage):
                layers.append(conv(width, c, kernel_size=3, padding=1, bias=not batchnorm))
                if batchnorm:
                    layers.append(norm(c))
                layers.append(_activation(activation))
                width = c
        layers += [gap, nn.Flatten(), nn.Linear(width, out)]
        return nn.Sequential(*layers)

    return _seeded(build, seed)


def vgg1d(in_channels: int = 1, out: int = 10, *, channels: Sequence[int] = (16, 32), convs_per_stage: int = 1,
          batchnorm: bool = False, activation: str = "relu", seed: int = 0) -> nn.Sequential:
    """A VGG-style 1-D convolutional net for signals shaped (C, L), e.g. MNIST-1D's 1×40."""
    return _vgg(1, in_channels, out, channels, convs_per_stage, batchnorm, seed, activation)


def vgg2d(in_channels: int = 1, out: int = 10, *, channels: Sequence[int] = (16, 32), convs_per_stage: int = 1,
          batchnorm: bool = False, activation: str = "relu", seed: int = 0) -> nn.Sequential:
    """A VGG-style 2-D convolutional net for images shaped (C, H, W), e.g. digits' 1×8×8."""
    return _vgg(2, in_channels, out, channels, convs_per_stage, batchnorm, seed, activation)


def conv1d(*args, **kwargs) -> nn.Sequential:
    """Alias of :func:`vgg1d`."""
    return vgg1d(*args, **kwargs)


def conv2d(*args, **kwargs) -> nn.Sequential:
    """Alias of :func:`vgg2d`."""
    return vgg2d(*args, **kwargs)

