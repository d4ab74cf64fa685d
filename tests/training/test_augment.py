"""hl.train(augment=...): built-in augmentations against hand-written references, their stream, and
that the evaluation passes only ever see the stored data."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from _training_cases import blobs, flat_params, mlp, set_flat_params
from conftest import reference_gradient
from hesslens.errors import InvalidInputError
from hesslens.training import train
from hesslens.training.augment import gaussian_noise, random_shift, resolve
from hesslens.training.loop import STREAMS, _derived_seed

DT = torch.float64


def _augment_stream(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(_derived_seed(seed, STREAMS["augment"]))


def _rolled(x: torch.Tensor, shifts: list[tuple[int, ...]], dims: tuple[int, ...]) -> torch.Tensor:
    return torch.stack([torch.roll(x[i], s, dims) for i, s in enumerate(shifts)])


# ---- the built-ins -------------------------------------------------------------------------------

def test_noise_is_x_plus_sigma_xi_from_the_generator():
    x = torch.randn(6, 1, 5, dtype=DT)
    out = gaussian_noise(0.25)(x, torch.Generator().manual_seed(3))
    xi = torch.randn((6, 1, 5), generator=torch.Generator().manual_seed(3), dtype=DT)
    assert torch.equal(out, x + 0.25 * xi)


@pytest.mark.parametrize("shape", [(7, 9), (7, 1, 9), (7, 2, 4, 5)])
def test_shift_is_a_per_sample_circular_roll(shape):
    x = torch.randn(*shape)
    k = 3
    out = random_shift(k)(x, torch.Generator().manual_seed(4))
    gen = torch.Generator().manual_seed(4)
    if len(shape) == 4:  # (C, H, W): H then W, independent offsets, the same for every channel
        sh, sw = torch.randint(-k, k + 1, (7,), generator=gen), torch.randint(-k, k + 1, (7,), generator=gen)
        expected = _rolled(x, [(int(a), int(b)) for a, b in zip(sh, sw)], (1, 2))
    else:  # the last axis
        s = torch.randint(-k, k + 1, (7,), generator=gen)
        expected = _rolled(x, [(int(v),) for v in s], (len(shape) - 2,))
    assert torch.equal(out, expected)
    assert not torch.equal(out, x)
    # Nothing is filled in: every sample keeps its values.
    assert torch.equal(out.reshape(7, -1).sort(dim=1).values, x.reshape(7, -1).sort(dim=1).values)


def test_shift_draws_cover_minus_k_to_k():
    x = torch.arange(11.0).repeat(2000, 1)
    out = random_shift(2)(x, torch.Generator().manual_seed(0))
    # Sample i starts at x[(−s_i) mod 11]: recover s and check its range and rough uniformity.
    s = ((-out[:, 0]).remainder(11)).long()
    s = torch.where(s > 5, s - 11, s)
    counts = torch.bincount(s + 2, minlength=5)
    assert s.min() == -2 and s.max() == 2 and counts.min() > 300


def test_composition_applies_left_to_right_with_one_generator():
    x = torch.randn(5, 1, 8, dtype=DT)
    out = resolve("shift2+noise0.5")(x, torch.Generator().manual_seed(1))
    gen = torch.Generator().manual_seed(1)
    expected = gaussian_noise(0.5)(random_shift(2)(x, gen), gen)
    assert torch.equal(out, expected)


@pytest.mark.parametrize("spec", ["noise", "noise-0.1", "noise0", "noise0.0", "noiseinf", "shift0", "shift1.5",
                                  "shift-1", "blur3", "", "noise0.1+", "+shift1", "Noise0.1", 3, 0.1, ["noise0.1"]])
def test_bad_augment_strings_are_refused_before_any_step(spec):
    data, model = blobs(seed=1), mlp(seed=1)
    before = flat_params(model)
    with pytest.raises(InvalidInputError, match=r"^augment\b"):
        train(model, data, "sgd", lr=0.1, epochs=1, augment=spec)
    assert torch.equal(flat_params(model), before)


def test_shift_refuses_inputs_it_cannot_shift():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 1, 2, 2, 2, generator=g)
    data = dataclasses.replace(blobs(n_train=8, n_test=4, seed=2), x_train=x, x_test=x[:4])
    model = nn.Sequential(nn.Flatten(), nn.Linear(8, 3))
    with pytest.raises(InvalidInputError, match=r"^augment\b.*shape"):
        train(model, data, "sgd", lr=0.1, epochs=1, augment="shift1")
    train(model, data, "sgd", lr=0.1, epochs=1, augment="noise0.1")  # noise takes any shape


# ---- in hl.train ---------------------------------------------------------------------------------

def test_noise_augmented_step_matches_the_hand_written_update():
    data = blobs(n_train=20, seed=3, dtype=DT)
    model = mlp(seed=3, dtype=DT)
    reference = copy.deepcopy(model)
    lr, sigma, seed = 0.3, 0.7, 5
    train(model, data, "sgd", lr=lr, epochs=2, augment=f"noise{sigma}", seed=seed)

    gen = _augment_stream(seed)
    w = flat_params(reference)
    clean = w.clone()
    for _ in range(2):  # full batch: a fresh draw per step
        x = data.x_train + sigma * torch.randn(data.x_train.shape, generator=gen, dtype=DT)
        shadow = copy.deepcopy(reference)
        set_flat_params(shadow, w)
        w = w - lr * reference_gradient(shadow, lambda call, x=x: nn.functional.cross_entropy(call(x), data.y_train))
        set_flat_params(shadow, clean)
        clean = clean - lr * reference_gradient(
            shadow, lambda call: nn.functional.cross_entropy(call(data.x_train), data.y_train))
    torch.testing.assert_close(flat_params(model), w, rtol=0, atol=1e-14)
    assert (w - clean).abs().max() > 1e-3  # the augmentation mattered


def test_a_callable_gets_the_run_stream_and_equals_the_built_in():
    data = blobs(seed=4)

    def run(augment, seed=0):
        model = mlp(seed=4)
        train(model, data, "sgd", lr=0.05, batch_size=16, epochs=2, augment=augment, seed=seed)
        return flat_params(model)

    seen = []

    def mine(x, generator):
        seen.append(generator)
        return x + torch.randn(x.shape, generator=generator, dtype=x.dtype).mul_(0.3)

    assert torch.equal(run(mine), run("noise0.3"))
    # The first call is the check on two samples (its own generator); then one shared stream.
    assert len(seen) == 1 + 2 * 6 and len({id(g) for g in seen[1:]}) == 1 and seen[0] is not seen[1]


def test_augmented_runs_are_reproducible_and_seeded():
    data = blobs(seed=5)

    def run(seed, augment="shift1+noise0.2", dropout=0.2):
        model = mlp(seed=5, dropout=dropout)
        train(model, data, "momentum", lr=0.05, batch_size=16, epochs=2, augment=augment, seed=seed)
        return flat_params(model)

    a = run(0)
    assert torch.equal(a, run(0))
    assert not torch.equal(a, run(1))
    assert not torch.equal(a, run(0, augment=None))
    model = mlp(seed=5)
    state, np_state = torch.random.get_rng_state(), np.random.get_state()
    train(model, data, "sgd", lr=0.05, batch_size=16, epochs=1, augment="noise0.2", seed=0)
    train(copy.deepcopy(model), data, "sgd", lr=0.05, epochs=1, seed=0,
          augment=lambda x, g: x + torch.randn(x.shape, dtype=x.dtype))  # a careless callable: global stream
    assert torch.equal(torch.random.get_rng_state(), state)
    assert np.array_equal(np.random.get_state()[1], np_state[1])


class InputRecorder(nn.Module):
    """Wraps a model and keeps every input it sees, with the mode it was in."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.seen = inner, []

    def forward(self, x):
        self.seen.append((self.training, x.detach().clone()))
        return self.inner(x)


def _is_chunk_of(x: torch.Tensor, stored: torch.Tensor, chunk: int) -> bool:
    return any(torch.equal(x, stored[s:s + chunk]) for s in range(0, len(stored), chunk))


@pytest.mark.parametrize("optimizer", ["sgd", "sam"])
def test_evaluation_passes_never_see_augmented_data(optimizer):
    data = blobs(n_train=40, n_test=20, seed=6)
    model = InputRecorder(mlp(seed=6))
    chunk = 16
    train(model, data, optimizer, lr=0.05, batch_size=8, epochs=3, augment="noise1.0", eval_batch_size=chunk)
    evals = [x for training, x in model.seen if not training]
    steps = [x for training, x in model.seen if training]
    assert len(evals) == 4 * (3 + 2)  # 4 evaluations × (3 train chunks + 2 test chunks)
    assert all(_is_chunk_of(x, data.x_train, chunk) or _is_chunk_of(x, data.x_test, chunk) for x in evals)
    assert len(steps) == 5 * 3 * (2 if optimizer == "sam" else 1)
    # Training batches are augmented: no row of a step's batch is a stored training row.
    stored = {tuple(r.tolist()) for r in data.x_train}
    assert not any(tuple(r.tolist()) in stored for x in steps for r in x)
    if optimizer == "sam":  # both passes of a SAM step see the same augmented batch
        assert all(torch.equal(steps[i], steps[i + 1]) for i in range(0, len(steps), 2))
    assert not data.x_train.isnan().any() and torch.equal(data.x_train, blobs(n_train=40, n_test=20, seed=6).x_train)


def test_a_callable_with_a_wrong_output_is_refused_before_any_step():
    data, model = blobs(seed=7), mlp(seed=7)
    before = flat_params(model)
    for bad, pattern in ((lambda x, g: x[:, :2], "shape"), (lambda x, g: x.double(), "dtype"),
                         (lambda x, g: x.numpy(), "ndarray"), (lambda x: x, "TypeError"),
                         (lambda x, g: 1 / 0, "ZeroDivisionError")):
        with pytest.raises(InvalidInputError, match=rf"^augment\b.*{pattern}"):
            train(model, data, "sgd", lr=0.1, epochs=1, augment=bad)
        assert torch.equal(flat_params(model), before)
