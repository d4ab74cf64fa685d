"""A table of small float64 models with exact reference Hessians, shared by the operator tests.

Every case builds a model (n ≤ ~100 parameters), its analysis data (several batches of unequal
sizes unless said otherwise), the keyword arguments for ``hl.HessianOperator`` and the reference
Hessian, computed independently of hesslens: a closed form, or ``torch.func.hessian`` of the flat
parameter vector (see ``tests/conftest.py``). Cases are built once per process and cached; the
operator tests never mutate the models (that they don't is itself tested).
"""

from __future__ import annotations

import copy
import functools
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from conftest import concatenated_objective, reference_hessian, size_weights, weighted_objective

DT = torch.float64
SIZES = (5, 3)  # unequal batch sizes: n_b/N differs from 1/num_batches


@dataclass
class Case:
    model: nn.Module
    kwargs: dict[str, Any]  # for HessianOperator besides the model
    names: list[str]  # expected θ, in named_parameters() order
    hessian: torch.Tensor
    uses_mse: bool = False  # linearize is refused for aten.mse_loss (segfault in torch 2.13)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.hessian.shape[0]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _classification(sizes=SIZES, d=4, classes=3, seed=0):
    g = _gen(seed)
    return [(torch.randn(s, d, generator=g, dtype=DT), torch.randint(0, classes, (s,), generator=g)) for s in sizes]


def _regression(sizes=SIZES, d=4, out=2, seed=0):
    g = _gen(seed)
    return [(torch.randn(s, d, generator=g, dtype=DT), torch.randn(s, out, generator=g, dtype=DT)) for s in sizes]


def _mlp(act: type[nn.Module], d=4, hidden=6, out=3, seed=0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, hidden), act(), nn.Linear(hidden, out)).to(DT)


def _plain(model, loss_fn, batches, names=None, **kwargs) -> Case:
    """A case whose loss depends on samples independently: reference = loss over the concatenated data."""
    names = names if names is not None else [n for n, p in model.named_parameters() if p.requires_grad]
    h = reference_hessian(model.eval(), concatenated_objective(loss_fn, batches), names)
    return Case(model, dict(loss_fn=loss_fn, data=batches, **kwargs), names, h,
                uses_mse=isinstance(loss_fn, nn.MSELoss))


# -- the cases ---------------------------------------------------------------------------------


def least_squares(batch_loss: bool) -> Case:
    """Linear least squares, H = (2/N) X̃ᵀX̃ with X̃ = [X, 1] (θ = weight then bias)."""
    g = _gen(1)
    batches = [(torch.randn(s, 3, generator=g, dtype=DT), torch.randn(s, 1, generator=g, dtype=DT)) for s in (7, 2, 5)]
    torch.manual_seed(1)
    model = nn.Linear(3, 1).to(DT)
    x = torch.cat([b[0] for b in batches])
    xt = torch.cat([x, torch.ones(len(x), 1, dtype=DT)], dim=1)
    h = 2.0 / len(x) * xt.T @ xt
    if batch_loss:
        kwargs = dict(batch_loss=lambda m, b: ((m(b[0]) - b[1]) ** 2).mean(), data=batches)
    else:
        kwargs = dict(loss_fn=nn.MSELoss(), data=batches)
    return Case(model, kwargs, ["weight", "bias"], h, uses_mse=not batch_loss)


def mlp(act: str, loss: str, reduction: str) -> Case:
    model = _mlp(nn.Tanh if act == "tanh" else nn.ReLU)
    if loss == "ce":
        return _plain(model, nn.CrossEntropyLoss(reduction=reduction), _classification())
    return _plain(model, nn.MSELoss(reduction=reduction), _regression(out=3))


def cnn() -> Case:
    torch.manual_seed(2)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.Tanh(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2 * 3 * 3, 3)
    ).to(DT)
    g = _gen(2)
    batches = [(torch.randn(s, 1, 6, 6, generator=g, dtype=DT), torch.randint(0, 3, (s,), generator=g)) for s in (4, 2)]
    return _plain(model, nn.CrossEntropyLoss(), batches)


def _bn_model() -> nn.Module:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 3)).to(DT)
    bn = model[1]
    with torch.no_grad():  # running statistics far from any batch's, so eval ≠ train mode
        bn.running_mean.copy_(torch.linspace(-1.0, 1.0, 5, dtype=DT))
        bn.running_var.copy_(torch.linspace(0.5, 2.0, 5, dtype=DT))
        bn.weight.copy_(torch.linspace(0.5, 1.5, 5, dtype=DT))
        bn.bias.copy_(torch.linspace(-0.2, 0.2, 5, dtype=DT))
    return model


class ManualBatchNorm(nn.Module):
    """BatchNorm1d written out: y = (x − μ)/√(σ² + ε)·γ + β, with μ, σ² the batch's own (biased)
    statistics or fixed running ones. The reference uses it instead of ``nn.BatchNorm1d`` because in
    torch 2.13 ``torch.func.hessian`` through ``F.batch_norm(training=True)`` is wrong (asymmetric by
    O(1)) in the block mixing the layer's input weights with its affine weight γ, while plain double
    autograd and this composite of elementary ops agree to round-off."""

    def __init__(self, bn: nn.BatchNorm1d, batch_stats: bool):
        super().__init__()
        self.weight, self.bias = nn.Parameter(bn.weight.detach().clone()), nn.Parameter(bn.bias.detach().clone())
        self.mean, self.var = bn.running_mean.detach().clone(), bn.running_var.detach().clone()
        self.eps, self.batch_stats = bn.eps, batch_stats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.batch_stats:
            mu, var = x.mean(0), ((x - x.mean(0)) ** 2).mean(0)
        else:
            mu, var = self.mean, self.var
        return (x - mu) / torch.sqrt(var + self.eps) * self.weight + self.bias


def manual_batchnorm_twin(model: nn.Module, batch_stats: bool) -> nn.Module:
    """A copy of ``model`` with every BatchNorm1d replaced by :class:`ManualBatchNorm` (same parameter names)."""
    twin = copy.deepcopy(model)
    for parent in twin.modules():
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.BatchNorm1d):
                setattr(parent, name, ManualBatchNorm(child, batch_stats))
    return twin.eval()


def _bn_batches():
    return _classification(sizes=(6, 4), seed=3)


def batchnorm_eval() -> Case:
    model, batches, ce = _bn_model(), _bn_batches(), nn.CrossEntropyLoss()
    names = [n for n, _ in model.named_parameters()]
    h = reference_hessian(manual_batchnorm_twin(model, batch_stats=False), concatenated_objective(ce, batches), names)
    return Case(model, dict(loss_fn=ce, data=batches, mode="eval"), names, h)


def batchnorm_train() -> Case:
    """Σ_b (n_b/N) ∇²L_b with every batch normalised by its own statistics."""
    model, batches, ce = _bn_model(), _bn_batches(), nn.CrossEntropyLoss()
    names = [n for n, _ in model.named_parameters()]
    twin = manual_batchnorm_twin(model, batch_stats=True)
    per_batch = weighted_objective(lambda call, b: ce(call(b[0]), b[1]), batches, size_weights(batches))
    h = reference_hessian(twin, per_batch, names)
    # The same data normalised as one batch: a different matrix, so the case discriminates.
    pooled = reference_hessian(twin, concatenated_objective(ce, batches), names)
    return Case(model, dict(loss_fn=ce, data=batches, mode="train"), names, h, extra={"pooled": pooled, "twin": twin})


def dict_batches() -> Case:
    model = _mlp(nn.Tanh, seed=4)
    pairs = _classification(sizes=(5, 3, 4), seed=4)  # three: see test_list_of_two_dict_batches
    batches = [{"x": x, "y": y} for x, y in pairs]

    def batch_loss(m: nn.Module, b: dict) -> torch.Tensor:
        return F.cross_entropy(m(b["x"]), b["y"])

    names = [n for n, _ in model.named_parameters()]
    h = reference_hessian(model.eval(), concatenated_objective(nn.CrossEntropyLoss(), pairs), names)
    return Case(model, dict(batch_loss=batch_loss, data=batches), names, h)


@dataclass
class Output:
    logits: torch.Tensor


class LogitsModel(nn.Module):
    """Returns an object with ``.logits`` (Hugging Face style)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))

    def forward(self, x: torch.Tensor) -> Output:
        return Output(self.body(x))


def logits_object() -> Case:
    torch.manual_seed(5)
    return _plain(LogitsModel().to(DT), nn.CrossEntropyLoss(), _classification(seed=5))


class WithUnused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(4, 4)
        self.unused = nn.Parameter(torch.ones(3))
        self.last = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(torch.tanh(self.first(x)))


def unused_parameter() -> Case:
    torch.manual_seed(6)
    case = _plain(WithUnused().to(DT), nn.CrossEntropyLoss(), _classification(seed=6))
    # A module's own parameters come before its children's in named_parameters().
    assert case.names == ["unused", "first.weight", "first.bias", "last.weight", "last.bias"]
    return case


def frozen_parameter() -> Case:
    """Default selection skips a parameter with requires_grad=False."""
    model = _mlp(nn.Tanh, seed=7)
    model[0].weight.requires_grad_(False)
    return _plain(model, nn.CrossEntropyLoss(), _classification(seed=7), names=["0.bias", "2.weight", "2.bias"])


def selection(kind: str) -> Case:
    model = _mlp(nn.Tanh, seed=8)
    params, names = {
        "names": (["2.bias", "0.weight"], ["0.weight", "2.bias"]),  # order follows the model, not the list
        "glob": ("*.bias", ["0.bias", "2.bias"]),
        "module": (model[2], ["2.weight", "2.bias"]),
        "tensors": ([model[2].weight, model[0].bias], ["0.bias", "2.weight"]),
        "mixed": ([model[0], "2.b*"], ["0.weight", "0.bias", "2.bias"]),
    }[kind]
    return _plain(model, nn.CrossEntropyLoss(), _classification(seed=8), names=names, params=params)


BUILDERS: dict[str, Callable[[], Case]] = {
    "lstsq-mse": lambda: least_squares(batch_loss=False),
    "lstsq-batch_loss": lambda: least_squares(batch_loss=True),
    "mlp-tanh-ce-mean": lambda: mlp("tanh", "ce", "mean"),
    "mlp-tanh-ce-sum": lambda: mlp("tanh", "ce", "sum"),
    "mlp-relu-ce-mean": lambda: mlp("relu", "ce", "mean"),
    "mlp-relu-ce-sum": lambda: mlp("relu", "ce", "sum"),
    "mlp-tanh-mse-mean": lambda: mlp("tanh", "mse", "mean"),
    "mlp-relu-mse-sum": lambda: mlp("relu", "mse", "sum"),
    "cnn": cnn,
    "bn-eval": batchnorm_eval,
    "bn-train": batchnorm_train,
    "dict-batch_loss": dict_batches,
    "logits-object": logits_object,
    "unused-param": unused_parameter,
    "frozen-param": frozen_parameter,
    "params-names": lambda: selection("names"),
    "params-glob": lambda: selection("glob"),
    "params-module": lambda: selection("module"),
    "params-tensors": lambda: selection("tensors"),
    "params-mixed": lambda: selection("mixed"),
}


@functools.lru_cache(maxsize=None)
def get_case(name: str) -> Case:
    return BUILDERS[name]()


@functools.lru_cache(maxsize=None)
def get_operator(case_name: str, engine: str):
    """The operator of a case, built once per engine (tests only read from it)."""
    import hesslens as hl

    case = get_case(case_name)
    with warnings.catch_warnings():
        # auto on an MSE model warns that linearize is unavailable; that is expected here.
        warnings.simplefilter("ignore")
        return hl.HessianOperator(case.model, engine=engine, **case.kwargs)
