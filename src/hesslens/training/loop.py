"""``hl.train``: a small, deterministic training loop for the studies.

Conventions (those of Kaur, Cohen & Lipton 2023, arXiv 2206.10654, where they apply):

* the training loss of a mini-batch B is the mean loss, (1/|B|) Σ_{i∈B} ℓ_i — for
  classification the cross-entropy, for regression the squared error averaged over all output
  entries (``nn.MSELoss()``); ``loss=`` replaces it (it must also return a batch mean);
* ``loss_normalisation="nominal"`` instead differentiates the authors' objective, the per-example
  losses summed over the batch and divided by the *nominal* batch size B,
  (1/B) Σ_{i∈b} ℓ_i = (|b|/B) · mean_b ℓ — identical to the mean for full batches, but a short
  last batch of |b| < B examples is weighted |b|/B (as in their code) rather than 1;
* ``batch_size=None`` is full-batch gradient descent: every epoch is one step on the whole
  training set (in its stored order); otherwise each epoch visits a fresh random permutation in
  consecutive batches of ``batch_size`` (the last one smaller when it does not divide N);
* ``until_train_acc=a`` stops at the first evaluated epoch whose accuracy on the *full* training
  set (eval mode) is ≥ a; with ``eval_every=1`` (the default) that is checked once per epoch;
* a NaN or infinite loss ends the run as diverged; that step is not taken and no exception is
  raised.

Determinism: the data order comes from ``torch.Generator().manual_seed(seed)``; the global torch
stream (dropout masks) is forked and re-seeded from ``seed`` for the duration of the run, so the
caller's global stream is left as it was and the same ``seed`` gives bitwise-identical final
parameters on the same machine and thread count. The other random streams are seeded with
``_derived_seed(seed, k)`` (:data:`STREAMS`): k = 1 the global (dropout) stream, and CPU
``torch.Generator`` objects for 2 AdaHessian's probes, 3 the gradient noise (``grad_noise``) and
4 the augmentation (``augment``). The model's initialisation is the caller's: build (or re-seed)
the model before calling ``train``.

``dataset`` is duck-typed: any object with attributes ``x_train``, ``y_train``, ``x_test``,
``y_test`` (tensors or arrays; the test pair may be None) and ``info.task`` (or ``task``) equal to
``"classification"`` or ``"regression"`` — what ``hesslens.datasets.load`` returns, or the same
structure built from your own tensors. Classification targets are int64 class indices (N,),
regression targets float (N, k) matching the model's output. Floating-point inputs and regression
targets are cast to the model's dtype and device.

>>> import torch, types
>>> from torch import nn
>>> g = torch.Generator().manual_seed(0)
>>> x = torch.randn(64, 2, generator=g); y = (x[:, 0] > 0).long()
>>> data = types.SimpleNamespace(x_train=x, y_train=y, x_test=None, y_test=None,
...                              info=types.SimpleNamespace(task="classification"))
>>> _ = torch.manual_seed(0); model = nn.Linear(2, 2)
>>> result = train(model, data, "sgd", lr=0.5, until_train_acc=0.95, max_epochs=200)
>>> result.stop_reason, result.train_acc >= 0.95
('until_train_acc', True)
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn

from ..progress import progress_bar
from . import augment as augmentation
from .callbacks import StopTraining, is_step_callback
from .evaluation import _evaluate, _logits
from .inputs import TASKS  # noqa: F401 - re-exported
from .inputs import _fail, _is_int, _is_number, _non_negative_float, _positive_float, _positive_int, _task_of, _tensors
from .manipulations import add_gradient_noise
from .optimizers import OPTIMIZERS, SAM, AdaHessian, build_optimizer, clip_gradients, frozen_buffers
from .results import HISTORY_COLUMNS, TrainResult

#: Accepted values of ``train(..., loss_normalisation=)``: batch mean, or sum over the nominal batch size.
LOSS_NORMALISATIONS = ("mean", "nominal")

#: Accepted values of ``train(..., test_eval=)``: the test set at every evaluation, or for the final model only.
TEST_EVALS = ("every", "final")

#: Cap on epochs when training runs ``until_train_acc`` without ``epochs``.
DEFAULT_MAX_EPOCHS = 10_000


#: Streams of ``_derived_seed``: the global torch stream (dropout), AdaHessian, gradient noise, augmentation.
STREAMS = {"global": 1, "adahessian": 2, "grad_noise": 3, "augment": 4}


def _derived_seed(seed: int, stream: int) -> int:
    """Independent seeds for the separate random streams of one run (data order uses ``seed`` itself):
    the first word of ``numpy.random.SeedSequence([seed, stream]).generate_state(1, uint32)``."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1, dtype=np.uint32)[0])


def train(
    model: nn.Module,
    dataset: Any,
    optimizer: str = "sgd",
    *,
    batch_size: int | None = None,
    lr: float = 0.01,
    epochs: int | None = None,
    until_train_acc: float | None = None,
    max_epochs: int = DEFAULT_MAX_EPOCHS,
    momentum: float | None = None,
    weight_decay: float | None = None,
    rho: float | None = None,
    adaptive: bool = False,
    clip_norm: float | None = None,
    clip_value: float | None = None,
    grad_noise: float | None = None,
    augment: str | Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    seed: int = 0,
    callbacks: Iterable[Callable] = (),
    loss: Callable | None = None,
    eval_every: int = 1,
    eval_batch_size: int = 4096,
    progress: bool | None = None,
    loss_normalisation: str = "mean",
    test_eval: str = "every",
) -> TrainResult:
    """Train ``model`` in place on ``dataset`` and return a :class:`TrainResult`.

    Parameters
    ----------
    model : the network, already initialised (its initialisation is the caller's).
    dataset : see the module docstring (duck-typed; ``hesslens.datasets.load`` returns one).
    optimizer : one of ``"sgd"`` (plain), ``"momentum"``, ``"adam"``, ``"adamw"``, ``"rmsprop"``,
        ``"sam"``, ``"adahessian"``, ``"signsgd"`` (see :mod:`hesslens.training.optimizers`).
    batch_size : mini-batch size; None (or ≥ N) means full batch, i.e. gradient descent.
    lr : learning rate η > 0.
    epochs : train this many epochs (or fewer if ``until_train_acc`` is reached first).
    until_train_acc : stop at the first evaluated epoch with full-train-set accuracy ≥ this value
        (classification only). At least one of ``epochs`` and ``until_train_acc`` is required.
    max_epochs : cap on epochs when ``epochs`` is None.
    momentum : None = the optimiser's default (0.9 for ``"momentum"``, else 0); ``"sgd"``,
        ``"adam"``, ``"adamw"``, ``"adahessian"`` and ``"signsgd"`` refuse a non-zero value.
    weight_decay : None = 0 (AdamW: torch's 0.01); L2 for SGD/Adam/RMSprop/SAM/sign-SGD, decoupled
        for AdamW and AdaHessian.
    rho, adaptive : SAM's radius (None = 0.05) and the ASAM switch; SAM only.
    clip_norm, clip_value : gradient clipping before every step, by value then by global norm
        (:func:`~hesslens.training.optimizers.clip_gradients`); for SAM it clips the gradient at
        the perturbed point, the one the step uses. (Clipping leaves sign-SGD's step unchanged:
        neither rescaling nor clamping changes a sign.)
    grad_noise : σ ≥ 0 of Gaussian gradient noise (None or 0: off): after clipping, every entry
        of the gradient the step uses gets independent N(0, σ²) noise, g ← g + σ ξ, drawn afresh
        each step from its own stream (:func:`~hesslens.training.manipulations.add_gradient_noise`).
        Neelakantan et al. (2015, arXiv 1511.06807) anneal σ; here it is constant. Defined for
        every optimiser: for SAM it perturbs the gradient at w + ε (the ascent direction ε uses the
        clean gradient), for AdaHessian the gradient entering its first moment (the Hessian
        diagonal is estimated from the clean graph), for sign-SGD the gradient whose signs are taken.
    augment : data augmentation of every training mini-batch's inputs (never of the evaluation
        passes): a string of built-ins such as ``"noise0.1"``, ``"shift2"`` or ``"shift2+noise0.1"``,
        or a callable ``augment(x, generator) -> x`` (see :mod:`hesslens.training.augment`). It
        draws from its own stream; a callable is first tried once on two training samples with a
        separate generator, so that a wrong output shape is reported before any step. The loss of
        a step (``loss`` in step metrics, ``epoch_loss``) is the loss on the augmented batch; SAM's
        two passes and AdaHessian's probes use the same augmented batch.
    seed : data order and dropout stream (see the module docstring); AdaHessian's probes, the
        gradient noise and the augmentation, each on its own derived stream.
    callbacks : see :mod:`hesslens.training.callbacks`.
    loss : ``loss(outputs, targets)`` returning the batch mean; default cross-entropy for
        classification, MSE for regression.
    eval_every : evaluate train and test sets (a history row, the ``until_train_acc`` check)
        every this many epochs; the initial and the final model are always evaluated.
    eval_batch_size : chunk size of the evaluation passes (memory only; eval mode makes the
        result independent of it up to rounding).
    progress : progress bar over epochs; None shows it only on a terminal.
    loss_normalisation : what each step differentiates, with b the mini-batch, |b| its size and
        B = min(batch_size, N) the nominal batch size:

        * ``"mean"`` (default): the batch mean, L_b = (1/|b|) Σ_{i∈b} ℓ_i;
        * ``"nominal"``: the sum divided by the nominal size, L_b = (1/B) Σ_{i∈b} ℓ_i
          = (|b|/B) · mean_b ℓ, as in Kaur, Cohen & Lipton's code — a short last batch
          (N not divisible by B) contributes with weight |b|/B < 1.

        The two agree on every full batch (and so for full-batch training). With ``"nominal"``
        the scaled objective is used for every gradient of the step (both of SAM's, and
        AdaHessian's Hessian probes); the reported ``loss`` of a step and ``epoch_loss`` stay
        batch means, and the evaluations are unaffected. It is computed as (|b|/B) times
        ``loss(outputs, targets)``, which must therefore return the batch mean.

    test_eval : ``"every"`` (default) evaluates the test set with every training-set evaluation;
        ``"final"`` only for the final model (the history's other test entries are NaN). The test
        set never influences training, so the trained model is the same either way; ``"final"``
        saves the test passes when only the final test accuracy is wanted (a large test set).

    Raises
    ------
    InvalidInputError
        A bad configuration, naming the field, before any step is taken.
    """
    # ---- validation: everything is checked before the first step -------------------------------
    if not isinstance(model, nn.Module):
        raise _fail("model", f"must be a torch.nn.Module, got {type(model).__name__}")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise _fail("model", "has no parameter with requires_grad=True")
    task = _task_of(dataset)
    classification = task == "classification"
    if not isinstance(optimizer, str) or optimizer not in OPTIMIZERS:
        raise _fail("optimizer", f"unknown optimizer {optimizer!r}; choose from {OPTIMIZERS}")
    lr = _positive_float("lr", lr, allow_none=False)
    epochs = _positive_int("epochs", epochs, allow_none=True)
    if until_train_acc is not None:
        if not classification:
            raise _fail("until_train_acc", "accuracy is undefined for a regression dataset; use epochs")
        if not _is_number(until_train_acc) or not 0 < until_train_acc <= 1:
            raise _fail("until_train_acc", f"must be a number in (0, 1], got {until_train_acc!r}")
        until_train_acc = float(until_train_acc)
    if epochs is None and until_train_acc is None:
        raise _fail("epochs", "epochs and until_train_acc are both None; give at least one")
    max_epochs = _positive_int("max_epochs", max_epochs)
    batch_size = _positive_int("batch_size", batch_size, allow_none=True)
    clip_norm = _positive_float("clip_norm", clip_norm)
    clip_value = _positive_float("clip_value", clip_value)
    grad_noise = _non_negative_float("grad_noise", grad_noise)
    augment_fn = augmentation.resolve(augment)
    if not _is_int(seed) or seed < 0:
        raise _fail("seed", f"must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    eval_every = _positive_int("eval_every", eval_every)
    eval_batch_size = _positive_int("eval_batch_size", eval_batch_size)
    if not isinstance(loss_normalisation, str) or loss_normalisation not in LOSS_NORMALISATIONS:
        raise _fail("loss_normalisation", f"must be one of {LOSS_NORMALISATIONS}, got {loss_normalisation!r}")
    nominal = loss_normalisation == "nominal"
    if test_eval not in TEST_EVALS:
        raise _fail("test_eval", f"must be one of {TEST_EVALS}, got {test_eval!r}")
    callbacks = list(callbacks)
    for i, cb in enumerate(callbacks):
        if not callable(cb):
            raise _fail(f"callbacks[{i}]", f"is not callable: {cb!r}")
    if loss is not None and not callable(loss):
        raise _fail("loss", f"must be callable, got {loss!r}")
    default_loss = loss is None
    loss_fn = loss if loss is not None else (nn.CrossEntropyLoss() if classification else nn.MSELoss())
    device, dtype = params[0].device, params[0].dtype
    train_data, test_data = _tensors(dataset, task, device, dtype)
    if isinstance(augment, str):
        augmentation.resolve(augment, tuple(train_data[0].shape[1:]))  # can "shift" handle these inputs?
    opt = build_optimizer(optimizer, params, lr=lr, momentum=momentum, weight_decay=weight_decay, rho=rho,
                          adaptive=adaptive, seed=_derived_seed(seed, STREAMS["adahessian"]))
    noise_gen = torch.Generator().manual_seed(_derived_seed(seed, STREAMS["grad_noise"]))
    augment_gen = torch.Generator().manual_seed(_derived_seed(seed, STREAMS["augment"]))

    x_train, y_train = train_data
    n = len(x_train)
    bs = n if batch_size is None else min(batch_size, n)
    n_batches = math.ceil(n / bs)
    limit = epochs if epochs is not None else max_epochs
    step_cbs = [cb for cb in callbacks if is_step_callback(cb)]
    epoch_cbs = [cb for cb in callbacks if not is_step_callback(cb)]
    training_flags = {m: m.training for m in model.modules()}
    order_gen = torch.Generator().manual_seed(seed)
    rng_devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []

    def current_lr() -> float:
        return float(opt.param_groups[0]["lr"])

    def one_step(xb: torch.Tensor, yb: torch.Tensor) -> float:
        """One optimisation step; returns the mini-batch loss at the weights before the step."""
        opt.zero_grad(set_to_none=True)
        if augment_fn is not None:
            xb = augmentation.apply(augment_fn, xb, augment_gen)
        # "nominal": (|b|/B)·mean = sum/B on a short batch; a full batch (|b| = B) keeps the mean as is.
        weight = len(xb) / bs if nominal and len(xb) != bs else None
        batch_loss = loss_fn(model(xb), yb)
        value = float(batch_loss.detach())
        if not math.isfinite(value):
            return value
        if weight is not None:
            batch_loss = batch_loss * weight
        if isinstance(opt, AdaHessian):
            opt.backward(batch_loss)
        else:
            batch_loss.backward()
        if isinstance(opt, SAM):
            opt.first_step(zero_grad=True)
            # The perturbed pass must leave BatchNorm running statistics alone.
            with frozen_buffers(model):
                perturbed = loss_fn(model(xb), yb)
                (perturbed if weight is None else perturbed * weight).backward()
            clip_gradients(params, clip_norm, clip_value)
            add_gradient_noise(params, grad_noise, noise_gen)
            opt.second_step()
        else:
            clip_gradients(params, clip_norm, clip_value)
            add_gradient_noise(params, grad_noise, noise_gen)
            opt.step()
        return value

    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []

    def evaluate(epoch: int, steps: int) -> dict[str, Any]:
        tl, ta = _evaluate(model, loss_fn, train_data, classification, eval_batch_size)
        vl, va = (_evaluate(model, loss_fn, test_data, classification, eval_batch_size) if test_eval == "every"
                  else (math.nan, math.nan) if test_data is not None else (None, None))
        row = {"epoch": epoch, "step": steps, "train_loss": tl, "train_acc": ta, "test_loss": vl, "test_acc": va,
               "lr": current_lr(), "seconds": time.perf_counter() - t0}
        rows.append(row)
        return row

    steps, epoch, diverged, stop_reason = 0, 0, False, None
    try:
        with torch.random.fork_rng(devices=rng_devices):
            torch.manual_seed(_derived_seed(seed, STREAMS["global"]))
            if augment_fn is not None and not isinstance(augment, str):  # a user's callable: try it once
                augmentation.probe(augment_fn, x_train[:2], _derived_seed(seed, STREAMS["augment"]))
                torch.manual_seed(_derived_seed(seed, STREAMS["global"]))  # as if it had drawn nothing
            model.train()
            # Epoch 0: the initial model. This evaluation also checks that model, data and loss fit
            # together before any step is taken.
            try:
                if default_loss and not classification:
                    with torch.no_grad():
                        model.eval()
                        out_shape = tuple(_logits(model(x_train[:2])).shape)
                        model.train()
                    if out_shape != tuple(y_train[:2].shape):
                        raise _fail("dataset.y_train", f"model outputs have shape {out_shape} per 2 samples but "
                                                       f"targets {tuple(y_train[:2].shape)}; MSE would broadcast")
                row = evaluate(0, 0)
            except (RuntimeError, IndexError, TypeError) as exc:
                raise _fail("model", f"cannot be evaluated on the dataset with this loss ({exc})") from exc
            if not math.isfinite(row["train_loss"]):
                diverged, stop_reason = True, "diverged"
            else:
                try:
                    for cb in epoch_cbs:
                        cb(model, epoch=0, step=0, metrics=dict(row))
                    for cb in step_cbs:
                        cb(model, epoch=0, step=0, metrics=dict(row))
                except StopTraining:
                    stop_reason = "callback"
            with progress_bar(limit, "train", progress, unit="epoch") as bar:
                while stop_reason is None:
                    epoch += 1
                    order = None if bs == n else torch.randperm(n, generator=order_gen).to(device)
                    epoch_loss, pending = 0.0, None
                    try:
                        for b in range(n_batches):
                            if order is None:
                                xb, yb = x_train, y_train
                            else:
                                idx = order[b * bs:(b + 1) * bs]
                                xb, yb = x_train[idx], y_train[idx]
                            value = one_step(xb, yb)
                            if not math.isfinite(value):
                                diverged, stop_reason = True, "diverged"
                                break
                            steps += 1
                            epoch_loss += value * len(xb) / n
                            step_metrics = {"loss": value, "lr": current_lr()}
                            if b < n_batches - 1:
                                for cb in step_cbs:
                                    cb(model, epoch=epoch, step=steps, metrics=step_metrics)
                            else:
                                pending = step_metrics  # delivered after the epoch's evaluation
                    except StopTraining:
                        stop_reason = "callback"
                    bar.update(1)
                    row = None
                    last = stop_reason is not None or epoch >= limit
                    if epoch % eval_every == 0 or last:
                        row = evaluate(epoch, steps)
                        bar.set_postfix(loss=f"{row['train_loss']:.4g}")
                        if not math.isfinite(row["train_loss"]):
                            diverged, stop_reason = True, "diverged"
                        elif until_train_acc is not None and row["train_acc"] >= until_train_acc:
                            stop_reason = stop_reason or "until_train_acc"
                        elif epoch >= limit:
                            stop_reason = stop_reason or ("epochs" if epochs is not None else "max_epochs")
                    if diverged:
                        break  # no callback sees a diverged model
                    metrics = dict(row) if row is not None else {"lr": current_lr(), "epoch_loss": epoch_loss}
                    try:
                        if pending is not None:
                            for cb in step_cbs:
                                cb(model, epoch=epoch, step=steps, metrics={**pending, **metrics})
                        for cb in epoch_cbs:
                            cb(model, epoch=epoch, step=steps, metrics=metrics)
                    except StopTraining:
                        stop_reason = stop_reason or "callback"
                    if stop_reason is not None and rows[-1]["step"] != steps:
                        evaluate(epoch, steps)  # stopped by a callback between evaluations
            if test_eval == "final" and test_data is not None:  # the last row is the final model
                rows[-1]["test_loss"], rows[-1]["test_acc"] = _evaluate(model, loss_fn, test_data, classification,
                                                                        eval_batch_size)
    finally:
        opt.zero_grad(set_to_none=True)
        for m, flag in training_flags.items():
            m.training = flag

    import pandas as pd  # here, not at module level: `import hesslens` stays free of pandas

    final = rows[-1]
    history = pd.DataFrame(rows, columns=list(HISTORY_COLUMNS)).astype(
        {"epoch": "int64", "step": "int64", "train_loss": "float64", "train_acc": "float64",
         "test_loss": "float64", "test_acc": "float64", "lr": "float64", "seconds": "float64"})
    return TrainResult(epochs=epoch, steps=steps, train_loss=final["train_loss"], train_acc=final["train_acc"],
                       test_loss=final["test_loss"], test_acc=final["test_acc"], diverged=diverged,
                       seconds=time.perf_counter() - t0, history=history, stop_reason=stop_reason)
