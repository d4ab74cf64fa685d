"""Families of synthetic tasks with systematic names.

A family is a generator with a few parameters written into the dataset's name, e.g.
``synth_cls_d20_c4_noise0.1`` (make_classification, 20 features, 4 classes, 10 % label noise).
:func:`hesslens.datasets.names` lists a fixed grid of members (the ``GRID`` of each family), but
``load`` and ``info`` accept *any* member whose parameters are valid, e.g. ``teacher_cls_d7_c3_noise0.05``.
An optional ``_n<N>`` suffix changes the number of samples from the default 2000
(``moons_sd0.2_n200``).

Determinism: the data of a member are a pure function of its canonical name — the generator's seed
is ``zlib.crc32(canonical_name)``, stable across platforms and Python versions — so every call
returns the same rows, and ``seed`` in :func:`hesslens.datasets.load` only chooses the split.
Numbers in names are canonicalised (``noise0.10`` → ``noise0.1``; ``noise0`` → ``noise0.0``).

Families (d = features, c = classes, N = samples):

=============================================  ============================================================
name                                           generator and meaning of the parameters
=============================================  ============================================================
``synth_cls_d{d}_c{c}_noise{p}``               ``sklearn.datasets.make_classification``: one Gaussian cluster
                                               per class at the vertices of a hypercube (class_sep 1) in
                                               k = min(d, max(d//2, ⌈log2 c⌉+1)) informative dimensions,
                                               (d−k)//2 redundant (linear combinations) and the rest noise
                                               features; then a fraction p of labels is replaced by a
                                               uniformly drawn *different* class (needs c ≤ 2^k).
``teacher_cls_d{d}_c{c}_noise{p}``             Teacher–student: x ~ N(0, I_d), label = argmax of a random
                                               one-hidden-layer tanh network (width 32, weights
                                               N(0, 1/fan_in), biases N(0, 1/4)) whose output biases are
                                               calibrated so that classes are balanced to within 2 %; then a
                                               fraction p of labels flipped to a different class.
``teacher_reg_d{d}_noise{r}``                  Same teacher with one output, scaled to unit variance, plus
                                               Gaussian noise of standard deviation r (noise-to-signal ratio).
``synth_reg_d{d}_noise{r}``                    ``make_regression``: a linear model on max(1, d//2) informative
                                               features of x ~ N(0, I_d), plus noise of std r·std(signal).
``friedman1_noise{r}`` / 2 / 3                 ``make_friedman1`` (d = 10, 5 relevant), ``make_friedman2`` and
                                               ``make_friedman3`` (d = 4), noise-free target plus noise of
                                               std r·std(target).
``moons_sd{s}``                                ``make_moons``: two interleaving half circles in 2-D with
                                               Gaussian input noise of std s.
``circles_sd{s}``                              ``make_circles`` (factor 0.5): two concentric circles in 2-D
                                               with Gaussian input noise of std s.
``blobs_d{d}_c{c}_sd{s}``                      ``make_blobs``: c isotropic Gaussian clusters of std s, centres
                                               uniform in [−10, 10]^d.
=============================================  ============================================================

So ``noise`` always means *label* noise (fraction flipped) for classification and a noise-to-signal
standard-deviation ratio for regression, while ``sd`` is the absolute standard deviation of noise
added to the *inputs* of the 2-D geometric tasks and of the blobs. Label noise is applied before
splitting, so test labels are as noisy as training labels.
"""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import InvalidInputError
from .core import Raw

#: Number of rows of every family member without an ``_n<N>`` suffix.
DEFAULT_SAMPLES = 2000
#: Smallest allowed ``_n<N>``: enough rows for a stratified 75/25 split of every class.
MIN_SAMPLES = 20
TEACHER_WIDTH = 32

_NUMBER = r"\d+(?:\.\d+)?"
_INT = r"\d+"


def format_number(value: float | int, kind: type) -> str:
    """Canonical spelling of a parameter in a name: ints plain, floats positional with a decimal point."""
    if kind is int:
        return str(int(value))
    return np.format_float_positional(float(value), trim="0")


@dataclass(frozen=True)
class Family:
    """A parametrised synthetic generator: ``prefix`` followed by ``_<key><value>`` per parameter."""

    prefix: str
    params: tuple[tuple[str, type], ...]
    task: str
    make: Callable[..., Raw]  # make(n=..., seed=..., **params) -> Raw
    grid: tuple[tuple, ...]
    check: Callable[..., None] = lambda **_: None

    def pattern(self) -> re.Pattern:
        body = "".join(f"_{key}(?P<{key}>{_INT if kind is int else _NUMBER})" for key, kind in self.params)
        return re.compile(rf"^{re.escape(self.prefix)}{body}(?:_n(?P<n>{_INT}))?$")

    def name(self, n: int = DEFAULT_SAMPLES, **values) -> str:
        body = "".join(f"_{key}{format_number(values[key], kind)}" for key, kind in self.params)
        return f"{self.prefix}{body}" + (f"_n{int(n)}" if n != DEFAULT_SAMPLES else "")

    def parse(self, name: str) -> dict | None:
        """Parameter values of ``name`` (plus ``n``) if it is spelled like a member, else None."""
        m = self.pattern().match(name)
        if m is None:
            return None
        values = {key: kind(m.group(key)) if kind is float else int(m.group(key)) for key, kind in self.params}
        values["n"] = int(m.group("n")) if m.group("n") is not None else DEFAULT_SAMPLES
        return values

    def template(self) -> str:
        return self.prefix + "".join(f"_{key}<{key}>" for key, _ in self.params) + "[_n<N>]"

    def validate(self, name: str, values: dict) -> None:
        n = values["n"]
        if n < MIN_SAMPLES:
            raise InvalidInputError(f"dataset {name!r}: _n{n} is below the minimum of {MIN_SAMPLES} samples")
        if "d" in values and values["d"] < 1:
            raise InvalidInputError(f"dataset {name!r}: d must be at least 1")
        if "c" in values and values["c"] < 2:
            raise InvalidInputError(f"dataset {name!r}: c (classes) must be at least 2")
        if "c" in values and n < 4 * values["c"]:
            raise InvalidInputError(f"dataset {name!r}: {n} samples are too few for {values['c']} classes "
                                    f"(need at least {4 * values['c']})")
        if self.task == "classification" and "noise" in values and not 0.0 <= values["noise"] < 1.0:
            raise InvalidInputError(f"dataset {name!r}: label noise must lie in [0, 1), got {values['noise']}")
        try:
            self.check(**{k: v for k, v in values.items() if k != "n"})
        except InvalidInputError as exc:
            raise InvalidInputError(f"dataset {name!r}: {exc}") from None

    def build(self, name: str, values: dict) -> Raw:
        params = {k: v for k, v in values.items() if k != "n"}
        return self.make(n=values["n"], seed=data_seed(name), **params)


def data_seed(name: str) -> int:
    """Generator seed of a synthetic dataset: CRC-32 of its canonical name (stable everywhere)."""
    return zlib.crc32(name.encode("utf-8"))


# -- label and target noise -------------------------------------------------------------------------

def flip_labels(y: np.ndarray, n_classes: int, fraction: float, seed: int) -> np.ndarray:
    """Each label, independently with probability ``fraction``, replaced by a uniformly drawn
    *different* class (adding 1 … c−1 modulo c)."""
    rng = np.random.default_rng([seed, 1])
    flip = rng.random(len(y)) < fraction
    shift = rng.integers(1, n_classes, size=len(y))
    return np.where(flip, (y + shift) % n_classes, y).astype(np.int64)


def add_target_noise(y: np.ndarray, ratio: float, seed: int) -> np.ndarray:
    """y + ratio · std(y) · ε with ε ~ N(0, 1): ``ratio`` is the noise-to-signal std ratio."""
    rng = np.random.default_rng([seed, 2])
    return y + ratio * float(np.std(y)) * rng.standard_normal(len(y))


def _percent(p: float) -> str:
    return f"{100 * p:g} %"


# -- generators -----------------------------------------------------------------------------------

def _informative(d: int, c: int) -> int:
    return min(d, max(d // 2, math.ceil(math.log2(c)) + 1))


def _check_cls(d: int, c: int, noise: float) -> None:
    k = _informative(d, c)
    if c > 2 ** k:
        raise InvalidInputError(f"{c} classes need more than {k} informative dimensions "
                                f"(c ≤ 2^k with k = {k}); raise d")


def _synth_cls(n: int, seed: int, d: int, c: int, noise: float) -> Raw:
    from sklearn.datasets import make_classification

    k = _informative(d, c)
    r = (d - k) // 2
    x, y = make_classification(n_samples=n, n_features=d, n_informative=k, n_redundant=r, n_repeated=0,
                               n_classes=c, n_clusters_per_class=1, flip_y=0.0, class_sep=1.0,
                               shuffle=True, random_state=seed % 2**32)
    y = flip_labels(y, c, noise, seed)
    return Raw(x.astype(np.float64), y, "classification", c,
               f"make_classification: {n} samples, {d} features ({k} informative, {r} redundant, "
               f"{d - k - r} pure noise), {c} classes of one Gaussian cluster each (class_sep 1), "
               f"{_percent(noise)} of labels flipped to a different class.")


def _teacher(n: int, seed: int, d: int, outputs: int):
    """x ~ N(0, I_d) and the outputs of a random one-hidden-layer tanh network at x."""
    rng = np.random.default_rng([seed, 0])
    x = rng.standard_normal((n, d))
    w1 = rng.standard_normal((d, TEACHER_WIDTH)) / math.sqrt(d)
    b1 = 0.5 * rng.standard_normal(TEACHER_WIDTH)
    w2 = rng.standard_normal((TEACHER_WIDTH, outputs)) / math.sqrt(TEACHER_WIDTH)
    return x, np.tanh(x @ w1 + b1) @ w2


def balance_biases(logits: np.ndarray, tolerance: float = 0.02, max_iter: int = 2000) -> np.ndarray:
    """Output biases b making the classes of argmax(logits + b) balanced to within ``tolerance``·N/c.

    Subgradient descent, with step ∝ std(logits)/√t, on the convex function
    Σ_i max_k (L_ik + b_k) − (N/c) Σ_k b_k, whose subgradient in b_k is count_k − N/c; the best
    iterate is returned if the tolerance is never met.
    """
    n, c = logits.shape
    b = np.zeros(c)
    best, best_dev = b.copy(), np.inf
    scale = float(logits.std()) or 1.0
    for t in range(1, max_iter + 1):
        counts = np.bincount(np.argmax(logits + b, axis=1), minlength=c)
        dev = float(np.abs(counts - n / c).max())
        if dev < best_dev:
            best, best_dev = b.copy(), dev
        if dev <= tolerance * n / c:
            break
        b = b - scale / math.sqrt(t) * (counts - n / c) * c / n
    return best


def _teacher_cls(n: int, seed: int, d: int, c: int, noise: float) -> Raw:
    x, logits = _teacher(n, seed, d, c)
    y = np.argmax(logits + balance_biases(logits), axis=1)
    y = flip_labels(y, c, noise, seed)
    return Raw(x, y.astype(np.int64), "classification", c,
               f"Teacher–student: {n} samples x ~ N(0, I_{d}), label = argmax of a random tanh network "
               f"({d}→{TEACHER_WIDTH}→{c}) with class-balancing output biases, {_percent(noise)} of "
               f"labels flipped to a different class.")


def _teacher_reg(n: int, seed: int, d: int, noise: float) -> Raw:
    x, out = _teacher(n, seed, d, 1)
    y = out[:, 0] / (float(out[:, 0].std()) or 1.0)
    return Raw(x, add_target_noise(y, noise, seed), "regression", None,
               f"Teacher–student regression: {n} samples x ~ N(0, I_{d}), target = output of a random tanh "
               f"network ({d}→{TEACHER_WIDTH}→1) scaled to unit variance, plus Gaussian noise of "
               f"noise-to-signal ratio {format_number(noise, float)}.")


def _synth_reg(n: int, seed: int, d: int, noise: float) -> Raw:
    from sklearn.datasets import make_regression

    k = max(1, d // 2)
    x, y = make_regression(n_samples=n, n_features=d, n_informative=k, noise=0.0, shuffle=True,
                           random_state=seed % 2**32)
    return Raw(x.astype(np.float64), add_target_noise(y.astype(np.float64), noise, seed), "regression", None,
               f"make_regression: {n} samples, {d} standard-normal features, linear target on {k} of them, "
               f"plus Gaussian noise of noise-to-signal ratio {format_number(noise, float)}.")


def _friedman(which: int) -> Callable[..., Raw]:
    formula = {1: "10 sin(π x1 x2) + 20 (x3 − 1/2)² + 10 x4 + 5 x5 (x1…x10 uniform on [0, 1])",
               2: "√(x1² + (x2 x3 − 1/(x2 x4))²) on Friedman's 4-D box",
               3: "arctan((x2 x3 − 1/(x2 x4)) / x1) on Friedman's 4-D box"}[which]

    def make(n: int, seed: int, noise: float) -> Raw:
        import sklearn.datasets

        fn = getattr(sklearn.datasets, f"make_friedman{which}")
        x, y = fn(n_samples=n, noise=0.0, random_state=seed % 2**32)
        return Raw(x.astype(np.float64), add_target_noise(y.astype(np.float64), noise, seed), "regression",
                   None, f"make_friedman{which}: {n} samples, y = {formula}, plus Gaussian noise of "
                   f"noise-to-signal ratio {format_number(noise, float)}.")
    return make


def _moons(n: int, seed: int, sd: float) -> Raw:
    from sklearn.datasets import make_moons

    x, y = make_moons(n_samples=n, noise=sd, shuffle=True, random_state=seed % 2**32)
    return Raw(x.astype(np.float64), y.astype(np.int64), "classification", 2,
               f"make_moons: {n} points on two interleaving half circles in 2-D, Gaussian input noise "
               f"of std {format_number(sd, float)}.")


def _circles(n: int, seed: int, sd: float) -> Raw:
    from sklearn.datasets import make_circles

    x, y = make_circles(n_samples=n, noise=sd, factor=0.5, shuffle=True, random_state=seed % 2**32)
    return Raw(x.astype(np.float64), y.astype(np.int64), "classification", 2,
               f"make_circles: {n} points on two concentric circles (radii 1 and 0.5) in 2-D, Gaussian "
               f"input noise of std {format_number(sd, float)}.")


def _blobs(n: int, seed: int, d: int, c: int, sd: float) -> Raw:
    from sklearn.datasets import make_blobs

    x, y = make_blobs(n_samples=n, n_features=d, centers=c, cluster_std=sd, center_box=(-10.0, 10.0),
                      shuffle=True, random_state=seed % 2**32)
    return Raw(x.astype(np.float64), y.astype(np.int64), "classification", c,
               f"make_blobs: {n} points in {d}-D from {c} isotropic Gaussian clusters of std "
               f"{format_number(sd, float)}, centres uniform in [−10, 10]^{d}.")


def _nonneg(key: str) -> Callable[..., None]:
    def check(**values) -> None:
        if values[key] < 0:
            raise InvalidInputError(f"{key} must be non-negative, got {values[key]}")
    return check


FAMILIES: tuple[Family, ...] = (
    Family("synth_cls", (("d", int), ("c", int), ("noise", float)), "classification", _synth_cls,
           grid=((10, 2, 0.0), (10, 2, 0.1), (20, 4, 0.0), (20, 4, 0.1), (20, 4, 0.3), (50, 10, 0.1),
                 (100, 2, 0.2)),
           check=_check_cls),
    Family("teacher_cls", (("d", int), ("c", int), ("noise", float)), "classification", _teacher_cls,
           grid=((10, 2, 0.0), (10, 2, 0.2), (20, 5, 0.0), (20, 5, 0.2), (50, 10, 0.1))),
    Family("moons", (("sd", float),), "classification", _moons, grid=((0.1,), (0.2,), (0.3,)),
           check=_nonneg("sd")),
    Family("circles", (("sd", float),), "classification", _circles, grid=((0.05,), (0.1,), (0.2,)),
           check=_nonneg("sd")),
    Family("blobs", (("d", int), ("c", int), ("sd", float)), "classification", _blobs,
           grid=((2, 3, 1.0), (10, 5, 2.0), (50, 10, 4.0)), check=_nonneg("sd")),
    Family("synth_reg", (("d", int), ("noise", float)), "regression", _synth_reg,
           grid=((10, 0.0), (10, 0.1), (50, 0.1), (50, 0.5), (100, 0.1)), check=_nonneg("noise")),
    Family("teacher_reg", (("d", int), ("noise", float)), "regression", _teacher_reg,
           grid=((10, 0.0), (10, 0.1), (50, 0.5)), check=_nonneg("noise")),
    Family("friedman1", (("noise", float),), "regression", _friedman(1), grid=((0.0,), (0.1,)),
           check=_nonneg("noise")),
    Family("friedman2", (("noise", float),), "regression", _friedman(2), grid=((0.1,),),
           check=_nonneg("noise")),
    Family("friedman3", (("noise", float),), "regression", _friedman(3), grid=((0.1,),),
           check=_nonneg("noise")),
)


def grid_names() -> list[str]:
    """Canonical names of every family's registered grid members."""
    out = []
    for fam in FAMILIES:
        for point in fam.grid:
            out.append(fam.name(**dict(zip((k for k, _ in fam.params), point))))
    return out


def resolve(name: str) -> tuple[str, Callable[[], Raw]] | None:
    """``(canonical_name, builder)`` if ``name`` spells a member of some family, else None.

    Raises :class:`InvalidInputError` when the spelling matches but the parameters are invalid.
    """
    for fam in FAMILIES:
        values = fam.parse(name)
        if values is None:
            continue
        canonical = fam.name(**values)
        fam.validate(canonical, values)
        return canonical, (lambda fam=fam, canonical=canonical, values=values: fam.build(canonical, values))
    return None


def templates() -> list[str]:
    """Name templates of all families, e.g. ``synth_cls_d<d>_c<c>_noise<noise>[_n<N>]``."""
    return [fam.template() for fam in FAMILIES]
