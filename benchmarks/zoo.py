"""The benchmark zoo: four models with fixed data, built identically in every process.

Each builder returns a :class:`Case`: the model (float32, eval mode), the criterion and one
``(inputs, targets)`` batch holding the whole analysis set. Every library is handed exactly this
batch, so all of them compute products of the same Hessian

    H = ∇²_θ (1/N) Σ_i ℓ(f_θ(x_i), y_i)        (cross-entropy, mean reduction, N samples).

Everything is seeded: a model built in one subprocess equals, bit for bit, the one built in
another, which is what lets each (library, model) measurement run in a fresh process.

* ``mlp``: 64-64-64-10 tanh MLP on scikit-learn's digits (1,797 samples, standardised features),
  trained briefly (full-batch Adam) so the Hessian is that of a fitted model, not of the init.
* ``cnn``: two 3×3 conv layers (8, 16 channels, ReLU, 2×2 max-pool) and a 32-unit head on
  CIFAR-shaped Gaussian inputs (3×32×32) with random labels.
* ``resnet18``: ResNet-18 (basic blocks [2, 2, 2, 2], widths 64–512, BatchNorm, ImageNet stem:
  7×7/2 conv and 3×3/2 max-pool, as ``torchvision.models.resnet18(num_classes=10)``), written
  here because torchvision does not load with this torch. BatchNorm running statistics are
  calibrated on the inputs (cumulative average over train-mode passes), then the model is in
  eval mode: the Hessian is that of the eval-mode network.
* ``transformer``: token embedding + learned positions, ``nn.TransformerEncoder`` (2 post-norm
  layers, d_model 64, 4 heads, feed-forward 128, dropout 0), mean pooling, linear head; random
  token sequences (vocabulary 100, length 16) whose label is a function of the tokens.
* ``gpt``: a GPT-style decoder (4 pre-norm causal blocks, d_model 256, 4 heads, GELU MLP 4×,
  vocabulary 512, context 64; 3.4 million parameters), next-token cross-entropy over 32 sequences of
  a sparse random Markov chain (2,048 predicted tokens).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

SEED = 0


@dataclass
class Case:
    name: str
    model: nn.Module
    loss_fn: nn.Module
    inputs: torch.Tensor
    targets: torch.Tensor
    description: str
    notes: list[str] = field(default_factory=list)

    @property
    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inputs, self.targets

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    @property
    def num_samples(self) -> int:
        return int(self.inputs.shape[0])


# ---------------------------------------------------------------------------------------------
# MLP on digits
# ---------------------------------------------------------------------------------------------
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X)  # constant pixels keep scale 1, so stay at 0
    return torch.tensor(X, dtype=torch.float32), torch.tensor(y, dtype=torch.long)


def mlp(samples: int | None = None, train_steps: int = 150) -> Case:
    X, y = _digits()
    if samples is not None:
        X, y = X[:samples], y[:samples]
    torch.manual_seed(SEED)
    model = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 10))
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(train_steps):  # full batch: deterministic, a second or so
        opt.zero_grad()
        loss_fn(model(X), y).backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    model.eval()
    return Case("mlp", model, loss_fn, X, y,
                f"MLP 64-64-64-10 (tanh), digits, {len(X)} samples, Adam {train_steps} full-batch steps")


# ---------------------------------------------------------------------------------------------
# Small CNN on CIFAR-shaped random data
# ---------------------------------------------------------------------------------------------
def _cifar_shaped(samples: int, classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(SEED + 1)
    X = torch.randn(samples, 3, 32, 32, generator=gen)
    y = torch.randint(0, classes, (samples,), generator=gen)
    return X, y


def cnn(samples: int = 256) -> Case:
    X, y = _cifar_shaped(samples)
    torch.manual_seed(SEED)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 8 * 8, 32), nn.ReLU(), nn.Linear(32, 10),
    ).eval()
    return Case("cnn", model, nn.CrossEntropyLoss(), X, y,
                f"CNN conv8-conv16-fc32-10, {samples} CIFAR-shaped random inputs")


# ---------------------------------------------------------------------------------------------
# ResNet-18
# ---------------------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers with an identity (or 1×1 conv-BN projection) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 (He et al. 2016) with the ImageNet stem, as torchvision's ``resnet18``."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        layers, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


def _calibrate_batchnorm(model: nn.Module, X: torch.Tensor, chunk: int = 64) -> None:
    """Running statistics = cumulative average of batch statistics over X (momentum=None)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for start in range(0, len(X), chunk):
            model(X[start:start + chunk])
    for m in bns:
        m.momentum = 0.1
    model.eval()


def resnet18(samples: int = 256) -> Case:
    X, y = _cifar_shaped(samples)
    torch.manual_seed(SEED)
    model = ResNet18(10)
    _calibrate_batchnorm(model, X)
    return Case("resnet18", model, nn.CrossEntropyLoss(), X, y,
                f"ResNet-18 (ImageNet stem, eval-mode BatchNorm), {samples} CIFAR-shaped random inputs")


# ---------------------------------------------------------------------------------------------
# Transformer encoder
# ---------------------------------------------------------------------------------------------
class TokenClassifier(nn.Module):
    def __init__(self, vocab: int = 100, length: int = 16, d_model: int = 64, heads: int = 4,
                 layers: int = 2, ff: int = 128, classes: int = 10):
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.pos = nn.Parameter(0.02 * torch.randn(length, d_model))
        layer = nn.TransformerEncoderLayer(d_model, heads, ff, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        # The CPU flash-attention kernel that scaled_dot_product_attention picks by default has
        # neither a forward-mode derivative nor a double-backward formula (PyTorch 2.13), so no
        # Hessian-vector product of any library goes through it; the math backend has both.
        with sdpa_kernel(SDPBackend.MATH):
            h = self.encoder(self.embed(tokens) + self.pos)
        return self.head(h.mean(dim=1))


def transformer(samples: int = 256, length: int = 16, vocab: int = 100) -> Case:
    gen = torch.Generator().manual_seed(SEED + 2)
    tokens = torch.randint(0, vocab, (samples, length), generator=gen)
    labels = tokens[:, :4].sum(dim=1) % 10  # a learnable rule; the Hessian is taken at init anyway
    torch.manual_seed(SEED)
    model = TokenClassifier(vocab, length).eval()
    return Case("transformer", model, nn.CrossEntropyLoss(), tokens, labels,
                f"Transformer encoder (2 layers, d_model 64, 4 heads), {samples} sequences of {length} tokens")


class DecoderBlock(nn.Module):
    """Pre-norm GPT block: causal multi-head self-attention and a 4× GELU MLP, each with a residual."""

    def __init__(self, d_model: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv, self.proj = nn.Linear(d_model, 3 * d_model), nn.Linear(d_model, d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, t, d = h.shape
        q, k, v = self.qkv(self.ln1(h)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        with sdpa_kernel(SDPBackend.MATH):  # the fused kernels have no double-backward formula
            a = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        h = h + self.proj(a.transpose(1, 2).reshape(b, t, d))
        return h + self.mlp(self.ln2(h))


class GPT(nn.Module):
    """A GPT-style decoder: token and learned position embeddings, causal blocks, a final LayerNorm and
    an untied output head; returns next-token logits as (batch, vocab, time) for ``nn.CrossEntropyLoss``."""

    def __init__(self, vocab: int = 512, context: int = 64, d_model: int = 256, heads: int = 4, layers: int = 4):
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.pos = nn.Parameter(0.02 * torch.randn(context, d_model))
        self.blocks = nn.Sequential(*[DecoderBlock(d_model, heads) for _ in range(layers)])
        self.ln = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.embed(tokens) + self.pos[: tokens.shape[1]])
        return self.head(self.ln(h)).transpose(1, 2)


def gpt(samples: int = 32, context: int = 64, vocab: int = 512) -> Case:
    """Next-token prediction on sequences of a random sparse Markov chain (each token has 4 likely
    successors): a learnable language; the Hessian is taken at init."""
    gen = torch.Generator().manual_seed(SEED + 3)
    successors = torch.randint(0, vocab, (vocab, 4), generator=gen)
    seq = torch.empty(samples, context + 1, dtype=torch.int64)
    seq[:, 0] = torch.randint(0, vocab, (samples,), generator=gen)
    for t in range(context):
        seq[:, t + 1] = successors[seq[:, t], torch.randint(0, 4, (samples,), generator=gen)]
    torch.manual_seed(SEED)
    model = GPT(vocab, context).eval()
    return Case("gpt", model, nn.CrossEntropyLoss(), seq[:, :-1], seq[:, 1:],
                f"GPT-style decoder (4 causal blocks, d_model 256, 4 heads, context {context}), "
                f"{samples} sequences of {context} tokens")


BUILDERS: dict[str, Callable[..., Case]] = {"mlp": mlp, "cnn": cnn, "resnet18": resnet18, "transformer": transformer,
                                            "gpt": gpt}


def build(name: str, **kwargs) -> Case:
    if name not in BUILDERS:
        raise KeyError(f"unknown model {name!r}; choose from {sorted(BUILDERS)}")
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    return BUILDERS[name](**kwargs)


def gradient_seconds(case: Case, repeats: int = 7) -> tuple[float, list[float]]:
    """Median wall time of one full gradient ∇_θ L over the analysis batch (forward + backward)."""
    import time

    params = [p for p in case.model.parameters() if p.requires_grad]
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        loss = case.loss_fn(case.model(case.inputs), case.targets)
        torch.autograd.grad(loss, params)
        if i:  # the first call warms up allocators
            times.append(time.perf_counter() - t0)
    return float(np.median(times)), times
