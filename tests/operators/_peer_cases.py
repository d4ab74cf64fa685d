"""Peer cases for ``hl.HessianOperator``: models, losses and data shapes after curvlinops' test suite.

Cases after curvlinops' test suite (github.com/f-dangel/curvlinops, ``test/cases.py``: MLPs
with cross-entropy, multi-output BCEWithLogits "to test the reduction factor" and MSE, each with
reduction mean and sum; CNNs with pooling; losses over an extra sequence dimension; dict inputs;
batches of unequal sizes). Only the cases carry over, the code is our own, and the models are small
(≤ ~150 parameters) so that a dense reference is cheap.

The reference is :func:`double_backward_hessian`: reverse-over-reverse autograd of the flat float64
parameter vector, one row per backward pass. It shares no code with hesslens, and unlike
``torch.func.hessian`` (forward-over-reverse) it is correct through LayerNorm and training-mode
BatchNorm in torch 2.13 (see tests/conftest.py and docs/benchmarks.md).

Cases are built once per process; operators once per (case, engine). Construction outcomes,
including refusals, are cached too, so every test sees the same operator.
"""

from __future__ import annotations

import copy
import functools
import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from _operator_cases import Case
from conftest import Objective, size_weights, weighted_objective

DT = torch.float64
SIZES = (5, 3)  # unequal batches: n_b/N ≠ 1/num_batches

#: the engines every case is run on ("auto" must always agree; the others agree or refuse)
ENGINES = ("auto", "double_backward+vmap", "double_backward+loop", "linearize+vmap", "linearize+loop",
           "streaming+vmap", "streaming+loop")


# -- the reference ------------------------------------------------------------------------------


def double_backward_hessian(model: nn.Module, objective: Objective, names: Sequence[str] | None = None) -> torch.Tensor:
    """Dense float64 ∇²_θ objective by double backward, one row per backward pass.

    θ is the flat vector of the parameters ``names`` (default: every parameter with requires_grad)
    in ``model.named_parameters()`` order; the other parameters and the buffers stay fixed.
    ``objective(call)`` returns the scalar loss, ``call(*args)`` running the model with θ
    substituted. The model must be float64. Attention runs with the math kernel (the fused CPU
    kernels have no double-backward formula); nothing is symmetrised.
    """
    named = dict(model.named_parameters())
    names = list(names) if names is not None else [n for n, p in named.items() if p.requires_grad]
    for n in names:
        assert named[n].dtype == torch.float64, f"the reference needs a float64 model ({n} is {named[n].dtype})"
    shapes = [named[n].shape for n in names]
    sizes = [math.prod(s) for s in shapes]
    theta = torch.cat([named[n].detach().reshape(-1) for n in names]).clone().requires_grad_(True)
    with torch.enable_grad(), sdpa_kernel(SDPBackend.MATH):
        values = {n: p.reshape(s) for n, p, s in zip(names, torch.split(theta, sizes), shapes)}
        value = objective(lambda *args, **kwargs: functional_call(model, values, args, kwargs))
        (g,) = torch.autograd.grad(value, theta, create_graph=True)
        rows = []
        for i in range(theta.numel()):
            if not g.requires_grad:  # the objective is at most linear in θ
                rows.append(torch.zeros_like(theta))
                continue
            (row,) = torch.autograd.grad(g[i], theta, retain_graph=True, allow_unused=True)
            rows.append(torch.zeros_like(theta) if row is None else row)
    return torch.stack(rows).detach()


def concat_objective(loss_fn: Callable, batches: Sequence[tuple[Any, torch.Tensor]], cat_dim: int = 0,
                     cat_inputs: Callable[[list[Any]], Any] | None = None) -> Objective:
    """``loss_fn`` over all samples at once (the Hessian's definition for sample-wise losses)."""
    xs = [b[0] for b in batches]
    x = cat_inputs(xs) if cat_inputs is not None else torch.cat(xs, dim=cat_dim)
    y = torch.cat([b[1] for b in batches], dim=cat_dim)
    return lambda call: loss_fn(call(x), y)


# -- cases --------------------------------------------------------------------------------------


@dataclass
class PeerCase(Case):
    """A case of the operator tests' table (model, kwargs, θ names, float64 reference) with the
    tolerance it is compared at and the reduction the operator must report."""

    tol: float = 1e-10
    reduction: str = "mean"  # what op.reduction must say


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _x(g, *shape):
    return torch.randn(*shape, generator=g, dtype=DT)


def _labels(g, classes, *shape):
    return torch.randint(0, classes, shape, generator=g)


def _bits(g, *shape):  # binary targets as floats, like curvlinops' binary_classification_targets
    return torch.randint(0, 2, shape, generator=g).to(DT)


def _mlp(act: type[nn.Module], d=4, hidden=5, out=3, seed=0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, hidden), act(), nn.Linear(hidden, out)).to(DT)


def _trainable(model: nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]


def _samplewise(model, loss_fn, batches, names=None, **kwargs) -> PeerCase:
    """Loss depends on samples independently: reference = loss over the concatenated data."""
    names = names if names is not None else _trainable(model)
    h = double_backward_hessian(model.eval(), concat_objective(loss_fn, batches), names)
    reduction = kwargs.get("reduction", getattr(loss_fn, "reduction", "mean"))
    return PeerCase(model, dict(loss_fn=loss_fn, data=batches, **kwargs), names, h,
                    uses_mse=isinstance(loss_fn, nn.MSELoss), reduction=reduction)


def least_squares() -> PeerCase:
    """nn.Linear(3, 1) + MSE(mean): H = (2/N) X̃ᵀX̃ with X̃ = [X, 1] (the closed form the reference is checked on)."""
    g = _gen(1)
    batches = [(_x(g, s, 3), _x(g, s, 1)) for s in SIZES]
    torch.manual_seed(1)
    case = _samplewise(nn.Linear(3, 1).to(DT), nn.MSELoss(), batches)
    x = torch.cat([b[0] for b in batches])
    xt = torch.cat([x, torch.ones(len(x), 1, dtype=DT)], dim=1)
    case.extra["closed_form"] = 2.0 / len(x) * xt.T @ xt
    return case


def mlp(act: str, loss: str, reduction: str) -> PeerCase:
    model = _mlp(nn.Tanh if act == "tanh" else nn.ReLU, out=2 if loss == "bce" else 3, seed=2)
    g = _gen(2)
    if loss == "ce":
        fn, batches = nn.CrossEntropyLoss(reduction=reduction), [(_x(g, s, 4), _labels(g, 3, s)) for s in SIZES]
    elif loss == "bce":  # two outputs per sample: the mean divides by 2N (curvlinops: "tests the reduction factor")
        fn, batches = nn.BCEWithLogitsLoss(reduction=reduction), [(_x(g, s, 4), _bits(g, s, 2)) for s in SIZES]
    else:
        fn, batches = nn.MSELoss(reduction=reduction), [(_x(g, s, 4), _x(g, s, 3)) for s in SIZES]
    return _samplewise(model, fn, batches)


def cnn() -> PeerCase:
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.Tanh(), nn.MaxPool2d(2),  # (3, 3, 3)
        nn.Conv2d(3, 2, 2), nn.ReLU(), nn.AvgPool2d(2),  # (2, 1, 1)
        nn.Flatten(), nn.Linear(2, 3),
    ).to(DT)
    g = _gen(3)
    return _samplewise(model, nn.CrossEntropyLoss(), [(_x(g, s, 1, 6, 6), _labels(g, 3, s)) for s in SIZES])


class Transposed(nn.Module):
    """(N, T, C) → (N, C, T), the layout cross-entropy wants for a sequence."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2)


def sequence_ce(reduction: str) -> PeerCase:
    """An MLP applied per time step, outputs (N, C, T), targets (N, T): CE averages over N·T."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3), Transposed()).to(DT)
    g = _gen(4)
    batches = [(_x(g, s, 4, 3), _labels(g, 3, s, 4)) for s in SIZES]
    return _samplewise(model, nn.CrossEntropyLoss(reduction=reduction), batches)


def _bn_model() -> nn.Module:
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 3)).to(DT)
    with torch.no_grad():  # running statistics far from any batch's: eval ≠ train
        model[1].running_mean.copy_(torch.linspace(-1.0, 1.0, 4, dtype=DT))
        model[1].running_var.copy_(torch.linspace(0.5, 2.0, 4, dtype=DT))
        model[1].weight.copy_(torch.linspace(0.5, 1.5, 4, dtype=DT))
        model[1].bias.copy_(torch.linspace(-0.2, 0.2, 4, dtype=DT))
    return model


def _bn_batches():
    g = _gen(5)
    return [(_x(g, s, 3), _labels(g, 3, s)) for s in SIZES]


def batchnorm(mode: str) -> PeerCase:
    """mode='eval': running statistics. mode='train': H = Σ_b (n_b/N) ∇²L_b, every batch normalised
    by its own statistics (the reference runs a copy of the model in train mode; the running
    statistics it updates do not enter a train-mode forward)."""
    model, batches, ce = _bn_model(), _bn_batches(), nn.CrossEntropyLoss()
    names = _trainable(model)
    if mode == "eval":
        h = double_backward_hessian(model.eval(), concat_objective(ce, batches), names)
        return PeerCase(model, dict(loss_fn=ce, data=batches, mode="eval"), names, h)
    twin = copy.deepcopy(model).train()
    per_batch = weighted_objective(lambda call, b: ce(call(b[0]), b[1]), batches, size_weights(batches))
    h = double_backward_hessian(twin, per_batch, names)
    pooled = double_backward_hessian(twin, concat_objective(ce, batches), names)  # one batch of 8: another matrix
    return PeerCase(model, dict(loss_fn=ce, data=batches, mode="train"), names, h,
                    extra={"pooled": pooled, "objective": per_batch})


def layernorm() -> PeerCase:
    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(4, 5), nn.LayerNorm(5), nn.Tanh(), nn.Linear(5, 3)).to(DT)
    with torch.no_grad():
        model[1].weight.copy_(torch.linspace(0.6, 1.4, 5, dtype=DT))
        model[1].bias.copy_(torch.linspace(-0.3, 0.3, 5, dtype=DT))
    g = _gen(6)
    return _samplewise(model, nn.CrossEntropyLoss(), [(_x(g, s, 4), _labels(g, 3, s)) for s in SIZES])


class Tagger(nn.Module):
    """A recurrent tagger: (N, T, 2) → (N, 2, T) (batch_first) or (T, N, 2) → (T, N, 2) (time-major)."""

    def __init__(self, cell: type[nn.Module], batch_first: bool = True, scaled: bool = False):
        super().__init__()
        self.rnn = cell(2, 3, batch_first=batch_first)
        self.out = nn.Linear(3, 2)
        self.batch_first, self.scaled = batch_first, scaled

    def forward(self, inputs: Any) -> torch.Tensor:
        if self.scaled:  # inputs = (x, s): s of shape (2,) multiplies every step, shared by all sequences
            x, s = inputs
            inputs = x * s
        h, _ = self.rnn(inputs)
        out = self.out(h)
        return out.transpose(1, 2) if self.batch_first else out


def recurrent(cell: str) -> PeerCase:
    """GRU: 2 sequences of length 3 in one batch (the case that was silently wrong); LSTM: 3
    sequences. One batch each: a recurrence is slow to linearise (unequal batches are tested elsewhere)."""
    torch.manual_seed(7)
    model = Tagger(nn.GRU if cell == "gru" else nn.LSTM).to(DT)
    g = _gen(7)
    n = 2 if cell == "gru" else 3
    batch = (_x(g, n, 3, 2), _labels(g, 2, n, 3))
    case = _samplewise(model, nn.CrossEntropyLoss(), [batch])
    case.kwargs["data"] = batch  # one (inputs, targets) batch, not a list
    return case


def time_major_ce(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """CE of time-major outputs (T, N, C) and targets (T, N); mean over T·N (a plain function)."""
    return F.cross_entropy(outputs.permute(1, 2, 0), targets.T)


def gru_time_major(batch_dim_kind: str) -> PeerCase:
    """nn.GRU(2, 3) with batch_first=False: inputs (T, N, F), batches of 1 and 5 sequences, batch
    dimension 1; H is the mean over all 6 sequences (weights 1/6 and 5/6, not by the leading T=3)."""
    torch.manual_seed(8)
    scaled = batch_dim_kind == "nested"
    model = Tagger(nn.GRU, batch_first=False, scaled=scaled).to(DT)
    g = _gen(8)
    s = torch.tensor([0.7, 1.3], dtype=DT)
    batches = []
    for n in (1, 5):
        x, y = _x(g, 3, n, 2), _labels(g, 2, 3, n)
        batches.append(((x, s), y) if scaled else (x, y))
    batch_dim = {"int": 1, "pair": (1, 1), "nested": ((1, None), 1)}[batch_dim_kind]
    cat_inputs = (lambda xs: (torch.cat([x for x, _ in xs], dim=1), s)) if scaled else None
    names = _trainable(model)
    h = double_backward_hessian(model.eval(), concat_objective(time_major_ce, batches, cat_dim=1, cat_inputs=cat_inputs), names)
    return PeerCase(model, dict(loss_fn=time_major_ce, data=batches, batch_dim=batch_dim), names, h)


class TiedEncoder(nn.Module):
    """Token embedding → one post-norm encoder layer → logits through the same embedding matrix."""

    def __init__(self, vocab: int = 5, d: int = 4):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.encoder = nn.TransformerEncoderLayer(d, 2, 2, dropout=0.0, batch_first=True)
        self.out = nn.Linear(d, vocab, bias=False)
        self.out.weight = self.embed.weight  # tied: one parameter, named "embed.weight"

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.out(self.encoder(self.embed(tokens))).transpose(1, 2)  # (N, vocab, T)


def transformer() -> PeerCase:
    torch.manual_seed(9)
    model = TiedEncoder().to(DT)
    g = _gen(9)
    batch = (_labels(g, 5, 4, 3), _labels(g, 5, 4, 3))  # one batch of 4 sequences of 3 tokens
    case = _samplewise(model, nn.CrossEntropyLoss(), [batch])
    case.kwargs["data"] = batch
    assert "out.weight" not in case.names and case.names[0] == "embed.weight"
    return case


def dict_batches() -> PeerCase:
    """Dict batches {"x", "y"} with batch_loss=."""
    model = _mlp(nn.Tanh, seed=10)
    g = _gen(10)
    pairs = [(_x(g, s, 4), _labels(g, 3, s)) for s in SIZES]
    names = _trainable(model)
    h = double_backward_hessian(model.eval(), concat_objective(nn.CrossEntropyLoss(), pairs), names)
    return PeerCase(model, dict(batch_loss=lambda m, b: F.cross_entropy(m(b["x"]), b["y"]),
                                data=[{"x": x, "y": y} for x, y in pairs]), names, h)


class DictInput(nn.Module):
    """curvlinops' ModelWithDictInput: the input is a mapping holding the features under "x"."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2))

    def forward(self, data: dict) -> torch.Tensor:
        return self.net(data["x"])


def dict_inputs() -> PeerCase:
    """(dict inputs, targets) pairs with loss_fn=: BCEWithLogits over two outputs."""
    torch.manual_seed(11)
    model = DictInput().to(DT)
    g = _gen(11)
    pairs = [(_x(g, s, 4), _bits(g, s, 2)) for s in SIZES]
    bce = nn.BCEWithLogitsLoss()
    names = _trainable(model)
    h = double_backward_hessian(model.eval(), concat_objective(bce, pairs, cat_inputs=lambda xs: {"x": torch.cat(xs)}), names)
    return PeerCase(model, dict(loss_fn=bce, data=[({"x": x}, y) for x, y in pairs]), names, h)


class TwoTower(nn.Module):
    """forward((x1, x2)): the inputs are a tuple."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.head = nn.Linear(3, 4), nn.Linear(2, 4, bias=False), nn.Linear(4, 3)

    def forward(self, inputs: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x1, x2 = inputs
        return self.head(torch.tanh(self.a(x1) + self.b(x2)))


def tuple_inputs() -> PeerCase:
    """One batch ((x1, x2), y): a single batch, not a list of two."""
    torch.manual_seed(12)
    model = TwoTower().to(DT)
    g = _gen(12)
    x1, x2, y = _x(g, 6, 3), _x(g, 6, 2), _labels(g, 3, 6)
    ce = nn.CrossEntropyLoss()
    names = _trainable(model)
    h = double_backward_hessian(model.eval(), lambda call: ce(call((x1, x2)), y), names)
    return PeerCase(model, dict(loss_fn=ce, data=((x1, x2), y)), names, h)


def plain_function(kind: str) -> PeerCase:
    """A plain-function loss: declared reduction=, or probed (undeclared). A sum is the Hessian of the
    total sum over all samples (batches weighted 1), a mean that of the mean over all N."""
    model = _mlp(nn.Tanh, seed=13)
    g = _gen(13)
    cls = [(_x(g, s, 4), _labels(g, 3, s)) for s in SIZES]
    reg = [(_x(g, s, 4), _x(g, s, 3)) for s in SIZES]

    def ce_sum(o, y):
        return F.cross_entropy(o, y, reduction="sum")

    fn, batches, kwargs = {
        "ce-sum-declared": (ce_sum, cls, dict(reduction="sum")),
        "ce-sum-probed": (lambda o, y: F.cross_entropy(o, y, reduction="sum"), cls, {}),
        "ce-mean-probed": (lambda o, y: F.cross_entropy(o, y), cls, {}),
        "mse-sum-probed": (lambda o, y: ((o - y) ** 2).sum(), reg, {}),
        "mse-mean-declared": (lambda o, y: F.mse_loss(o, y), reg, dict(reduction="mean")),
    }[kind]
    case = _samplewise(model, fn, batches, **kwargs)
    case.reduction = "sum" if "sum" in kind else "mean"
    case.uses_mse = kind == "mse-mean-declared"
    return case


def selection(kind: str) -> PeerCase:
    model = _mlp(nn.Tanh, seed=14)
    g = _gen(14)
    batches = [(_x(g, s, 4), _labels(g, 3, s)) for s in SIZES]
    params, names = {
        "glob": ("0.*", ["0.weight", "0.bias"]),
        "module": (model[2], ["2.weight", "2.bias"]),
        "tensor": (model[0].bias, ["0.bias"]),
    }[kind]
    return _samplewise(model, nn.CrossEntropyLoss(), batches, names=names, params=params)


def frozen() -> PeerCase:
    """requires_grad=False parameters are excluded by default."""
    model = _mlp(nn.Tanh, seed=15)
    model[0].weight.requires_grad_(False)
    model[2].bias.requires_grad_(False)
    g = _gen(15)
    case = _samplewise(model, nn.CrossEntropyLoss(), [(_x(g, s, 4), _labels(g, 3, s)) for s in SIZES])
    assert case.names == ["0.bias", "2.weight"]
    return case


class WithUnusedLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(4, 4)
        self.unused = nn.Linear(3, 2)  # registered between the used layers, never called
        self.last = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(torch.tanh(self.first(x)))


def unused() -> PeerCase:
    torch.manual_seed(16)
    model = WithUnusedLinear().to(DT)
    g = _gen(16)
    case = _samplewise(model, nn.CrossEntropyLoss(), [(_x(g, s, 4), _labels(g, 3, s)) for s in SIZES])
    assert case.names == ["first.weight", "first.bias", "unused.weight", "unused.bias", "last.weight", "last.bias"]
    case.extra["unused"] = slice(20, 28)
    return case


def float32_model() -> PeerCase:
    """A float32 model; the reference is the same model converted to float64, on the same data."""
    model32 = _mlp(nn.Tanh, seed=17).float()
    g = _gen(17)
    batches64 = [(_x(g, s, 4), _labels(g, 3, s)) for s in SIZES]
    ce = nn.CrossEntropyLoss()
    names = _trainable(model32)
    h = double_backward_hessian(copy.deepcopy(model32).double().eval(), concat_objective(ce, batches64), names)
    batches32 = [(x.float(), y) for x, y in batches64]
    return PeerCase(model32, dict(loss_fn=ce, data=batches32), names, h, tol=2e-5)


class SinWithWrongJvp(torch.autograd.Function):
    """sin with a correct (differentiable) backward and a forward-mode derivative twice too large.

    Double backward only uses ``backward``, so it is right; forward-over-reverse (linearize, streaming
    by jvp) pushes tangents through ``jvp`` and is wrong by O(1). A product engine that is not checked
    against double backward returns a wrong Hessian here without any error.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(inputs[0])
        ctx.save_for_forward(inputs[0])

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad_out * torch.cos(x)

    @staticmethod
    def jvp(ctx, tangent: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return 2.0 * torch.cos(x) * tangent  # wrong on purpose


class WrongJvpActivation(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return SinWithWrongJvp.apply(x)


def wrong_jvp() -> PeerCase:
    """An activation whose forward-mode derivative is wrong: engines must agree or be refused."""
    model = nn.Sequential(nn.Linear(4, 5), WrongJvpActivation(), nn.Linear(5, 3)).to(DT)
    torch.manual_seed(18)
    for p in model.parameters():
        nn.init.normal_(p, std=0.7)
    g = _gen(18)
    return _samplewise(model, nn.CrossEntropyLoss(), [(_x(g, s, 4), _labels(g, 3, s)) for s in SIZES])


BUILDERS: dict[str, Callable[[], PeerCase]] = {
    "lstsq": least_squares,
    "mlp-tanh-ce-mean": lambda: mlp("tanh", "ce", "mean"),
    "mlp-relu-ce-sum": lambda: mlp("relu", "ce", "sum"),
    "mlp-tanh-bce-mean": lambda: mlp("tanh", "bce", "mean"),
    "mlp-relu-bce-sum": lambda: mlp("relu", "bce", "sum"),
    "mlp-relu-mse-mean": lambda: mlp("relu", "mse", "mean"),
    "mlp-tanh-mse-sum": lambda: mlp("tanh", "mse", "sum"),
    "cnn": cnn,
    "seq-ce-mean": lambda: sequence_ce("mean"),
    "seq-ce-sum": lambda: sequence_ce("sum"),
    "bn-eval": lambda: batchnorm("eval"),
    "bn-train": lambda: batchnorm("train"),
    "layernorm": layernorm,
    "gru-tagger": lambda: recurrent("gru"),
    "lstm-tagger": lambda: recurrent("lstm"),
    "transformer-tied": transformer,
    "dict-batch_loss": dict_batches,
    "dict-inputs-bce": dict_inputs,
    "params-glob": lambda: selection("glob"),
    "params-module": lambda: selection("module"),
    "params-tensor": lambda: selection("tensor"),
    "frozen": frozen,
    "unused-linear": unused,
    "float32": float32_model,
    "wrong-jvp": wrong_jvp,
    # plain-function losses (reduction probed or declared), batch_dim, tuple inputs
    "fn-ce-sum-declared": lambda: plain_function("ce-sum-declared"),
    "fn-ce-sum-probed": lambda: plain_function("ce-sum-probed"),
    "fn-ce-mean-probed": lambda: plain_function("ce-mean-probed"),
    "fn-mse-sum-probed": lambda: plain_function("mse-sum-probed"),
    "fn-mse-mean-declared": lambda: plain_function("mse-mean-declared"),
    "gru-time-major-int": lambda: gru_time_major("int"),
    "gru-time-major-pair": lambda: gru_time_major("pair"),
    "gru-time-major-nested": lambda: gru_time_major("nested"),
    "tuple-inputs": tuple_inputs,
}


#: Engines per case, to keep the file well under a minute on one thread: building a linearisation
#: costs 0.3-2 s per batch and "auto" builds one too (and checks it on the first batch). Every engine
#: runs on the cases where linearize has been wrong or is most fragile (BCE, train-mode BatchNorm,
#: the GRU tagger, the planted forward-mode defect) and on the MSE cases (linearize refused at once);
#: linearize+vmap on LayerNorm, attention with tied embeddings, unused parameters and plain CE;
#: the other cases leave linearize to auto's check, and variants that differ only in
#: engine-independent code (parameter selection, reductions, batch structure) mostly skip auto too.
#: Every case runs on double_backward and streaming, vmap and loop.
_NO_LINEARIZE_LOOP = tuple(e for e in ENGINES if e != "linearize+loop")
_NO_LINEARIZE = tuple(e for e in ENGINES if not e.startswith("linearize"))
_CHEAP = tuple(e for e in _NO_LINEARIZE if e != "auto")
CASE_ENGINES: dict[str, tuple[str, ...]] = {name: ENGINES for name in BUILDERS}
CASE_ENGINES.update({name: _NO_LINEARIZE_LOOP for name in (
    "mlp-tanh-ce-mean", "transformer-tied", "layernorm", "unused-linear")})
CASE_ENGINES.update({name: _NO_LINEARIZE for name in (
    "cnn", "lstm-tagger", "seq-ce-mean", "float32", "tuple-inputs", "gru-time-major-int", "fn-ce-sum-declared",
    "fn-ce-sum-probed", "fn-mse-sum-probed")})
CASE_ENGINES.update({name: _CHEAP for name in (
    "mlp-relu-ce-sum", "mlp-relu-bce-sum", "seq-ce-sum", "bn-eval", "dict-batch_loss", "dict-inputs-bce", "params-glob",
    "params-module", "params-tensor", "frozen", "fn-ce-mean-probed", "gru-time-major-pair", "gru-time-major-nested")})


@functools.lru_cache(maxsize=None)
def get_case(name: str) -> PeerCase:
    return BUILDERS[name]()


@dataclass
class Built:
    """The outcome of ``HessianOperator(case.model, engine=engine, **case.kwargs)``: an operator or the error."""

    op: Any = None
    error: BaseException | None = None
    seconds: float = 0.0


@functools.lru_cache(maxsize=None)
def build(case_name: str, engine: str) -> Built:
    import time

    import hesslens as hl

    case = get_case(case_name)
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # auto on an MSE model warns that linearize is unavailable
            # auto for a long analysis: every engine is built and must prove itself on these tricky models
            # (with few products a linearisation is not even built; tests/operators/test_engine_choice.py)
            more = {"expected_matvecs": 10**7} if engine == "auto" else {}
            op = hl.HessianOperator(case.model, engine=engine, **case.kwargs, **more)
    except Exception as err:  # noqa: BLE001 - the test decides which errors are acceptable
        return Built(error=err, seconds=time.perf_counter() - t0)
    return Built(op=op, seconds=time.perf_counter() - t0)
