"""Real datasets shipped inside installed packages: nothing here touches the network.

* scikit-learn's bundled sets (``sklearn.datasets.load_*``; the ``fetch_*`` ones download and are
  not used): iris, wine, breast_cancer, digits (flat and image-shaped), diabetes.
* statsmodels' bundled sets with enough rows for a train/test split; each description says which
  column is the target and which are the features, and why.
* MNIST-1D from the ``mnist1d`` package's *generator* ``make_dataset`` with its default arguments
  (5000 signals of length 40, 10 classes; Greydanus & Kobak 2024, "Scaling down deep learning with
  MNIST-1D"). ``get_dataset`` is never called, since it downloads a pickle by default.
  ``mnist1d_n<N>`` (the ``_n<N>`` size suffix of the synthetic families) is the same generator
  asked for N signals (N a multiple of 10, at least 20; same seed 42, all other arguments default),
  e.g. ``mnist1d_n13750``; ``mnist1d_n5000`` *is* ``mnist1d``. Split it with
  ``load("mnist1d_n13750", n_test=10000)`` for 3,750 training and 10,000 test signals. Its signals
  are not a superset of ``mnist1d``'s: the generator draws class by class, so N changes the stream.
  ``mnist1d_<param><value>…[_n<N>]`` (:func:`mnist1d_variant`) is the same generator with other
  distortion parameters, e.g. ``mnist1d_iid0.1`` or ``mnist1d_shear1.5_n13750``: a different
  dataset of the same 1×40 shape and 10 classes for evaluating a model trained on ``mnist1d``.

Each builder returns a :class:`~hesslens.datasets.core.Raw` holding every row; the split and the
standardisation happen later, in :func:`hesslens.datasets.load`.
"""

from __future__ import annotations

import functools
import importlib
import random
import re
from types import ModuleType
from typing import Callable

import numpy as np

from ..errors import HesslensError, InvalidInputError
from .core import Raw
from .synthetic import format_number


class MissingDependencyError(HesslensError, ImportError):
    """A dataset's package is not installed; the message names the package and the extra to install."""


#: Packages of the real datasets that ``pip install hesslens`` leaves out, and the extra bringing them.
OPTIONAL_PACKAGES = {"statsmodels": "studies", "mnist1d": "studies"}


def optional_import(module: str, dataset: str) -> ModuleType:
    """``import module`` for ``dataset``; if its package is missing, a :class:`MissingDependencyError`
    that says what to install (an error raised *inside* the package is left as it is)."""
    package = module.partition(".")[0]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name not in (package, module):
            raise
        extra = OPTIONAL_PACKAGES.get(package, "studies")
        raise MissingDependencyError(
            f"dataset {dataset!r} needs the {package} package, which is not part of hesslens's core install: "
            f"pip install 'hesslens[{extra}]' (in a clone of the repository: bash scripts/setup.sh {extra})"
        ) from None


# -- scikit-learn --------------------------------------------------------------------------------

def _sklearn(loader: str, task: str, description: str) -> Callable[[], Raw]:
    def make() -> Raw:
        import sklearn.datasets

        x, y = getattr(sklearn.datasets, loader)(return_X_y=True)
        if task == "classification":
            return Raw(np.asarray(x, np.float64), np.asarray(y, np.int64), task, int(np.max(y)) + 1, description)
        return Raw(np.asarray(x, np.float64), np.asarray(y, np.float64), task, None, description)
    return make


def _digits_image() -> Raw:
    flat = SKLEARN["digits"][1]()
    return Raw(flat.x.reshape(-1, 1, 8, 8).copy(), flat.y.copy(), "classification", 10,
               "scikit-learn's handwritten digits (UCI optdigits test part) as 1×8×8 images for "
               "convolutional nets: the same rows, split and standardisation as `digits`, reshaped "
               "(standardisation is per pixel; always-blank pixels are only centred).")


SKLEARN: dict[str, tuple[str, Callable[[], Raw]]] = {
    "iris": ("sklearn", _sklearn("load_iris", "classification",
             "Fisher's iris flowers: 4 measurements (cm), 3 species.")),
    "wine": ("sklearn", _sklearn("load_wine", "classification",
             "UCI wine recognition: 13 chemical measurements, 3 cultivars.")),
    "breast_cancer": ("sklearn", _sklearn("load_breast_cancer", "classification",
                      "UCI Wisconsin diagnostic breast cancer: 30 cell-nucleus features, malignant (0) "
                      "vs benign (1).")),
    "digits": ("sklearn", _sklearn("load_digits", "classification",
               "scikit-learn's handwritten digits (UCI optdigits test part): 8×8 grey levels 0–16 "
               "flattened to 64 features, 10 classes. `digits_image` is the same data as 1×8×8 images.")),
    "digits_image": ("sklearn", _digits_image),
    "diabetes": ("sklearn", _sklearn("load_diabetes", "regression",
                 "Efron et al. (2004) diabetes: 10 baseline variables (age, sex, BMI, blood pressure, "
                 "6 serum measurements); target = disease progression one year later.")),
}


# -- statsmodels ---------------------------------------------------------------------------------

def _frame(name: str):
    return optional_import(f"statsmodels.datasets.{name}", name).load_pandas().data


def _fair() -> Raw:
    d = _frame("fair")
    features = ["rate_marriage", "age", "yrs_married", "children", "religious", "educ", "occupation",
                "occupation_husb"]
    return Raw(d[features].to_numpy(np.float64), (d["affairs"] > 0).to_numpy(np.int64), "classification", 2,
               "Fair (1978) extramarital affairs survey (Redbook 1974, 6366 women). Target: any time "
               "spent in affairs (affairs > 0, the usual binary version; 32% positive). Features: the "
               "8 other columns (marriage rating, age, years married, children, religiousness, "
               "education, own and husband's occupation).")


def _randhie() -> Raw:
    d = _frame("randhie")
    features = [c for c in d.columns if c != "mdvis"]
    return Raw(d[features].to_numpy(np.float64), np.log1p(d["mdvis"].to_numpy(np.float64)), "regression", None,
               "RAND Health Insurance Experiment (Deb & Trivedi 2002), 20190 person-years. Target: "
               "log(1 + number of outpatient doctor visits) (the log tames the heavy-tailed count). "
               "Features: the 9 other columns (log coinsurance, deductible indicator, log "
               "participation incentive, log max expenditure, physical limitation, chronic "
               "diseases, good/fair/poor self-rated health).")


def _anes96() -> Raw:
    d = _frame("anes96")
    features = ["logpopul", "TVnews", "selfLR", "ClinLR", "DoleLR", "PID", "age", "educ", "income"]
    return Raw(d[features].to_numpy(np.float64), d["vote"].to_numpy(np.int64), "classification", 2,
               "American National Election Studies 1996, 944 voters. Target: vote (0 = Clinton, "
               "1 = Dole). Features: log population of the respondent's area, TV-news days, "
               "self/Clinton/Dole left–right placements, party identification, age, education, "
               "income (raw population dropped in favour of its log).")


def _star98() -> Raw:
    d = _frame("star98")
    above, below = d["NABOVE"].to_numpy(np.float64), d["NBELOW"].to_numpy(np.float64)
    features = [c for c in d.columns if c not in ("NABOVE", "NBELOW")]
    return Raw(d[features].to_numpy(np.float64), above / (above + below), "regression", None,
               "California STAR 1998 math scores of 303 school districts. Target: fraction of "
               "pupils above the national median (NABOVE / (NABOVE + NBELOW)). Features: the 20 "
               "district covariates (income, ethnicity, teacher experience and salary, spending, "
               "pupil/teacher ratio, their interactions as shipped).")


def _modechoice() -> Raw:
    d = _frame("modechoice").sort_values(["individual", "mode"])
    per_mode = ["ttme", "invc", "invt", "gc"]
    wide = d.pivot(index="individual", columns="mode", values=per_mode)
    wide.columns = [f"{v}_{int(m)}" for v, m in wide.columns]
    person = d.groupby("individual")[["hinc", "psize"]].first()
    chosen = d[d["choice"] == 1].set_index("individual")["mode"].astype(int) - 1
    table = wide.join(person)
    # Terminal time of the car is 0 for everyone: a constant column carries no information.
    table = table.loc[:, table.nunique() > 1]
    x = table.to_numpy(np.float64)
    return Raw(x, chosen.loc[wide.index].to_numpy(np.int64), "classification", 4,
               "Greene's travel-mode choice between Sydney and Melbourne, 210 travellers. Reshaped "
               "from statsmodels' long format (one row per traveller and mode) to one row per "
               "traveller. Target: chosen mode (0 air, 1 train, 2 bus, 3 car). Features: terminal "
               "time, in-vehicle cost, in-vehicle time and generalised cost of each of the 4 modes "
               "(terminal time of the car, always 0, dropped), household income and party size (17).")


def _grunfeld() -> Raw:
    d = _frame("grunfeld")
    firms = sorted(d["firm"].astype(str).unique())
    onehot = np.stack([(d["firm"].astype(str) == f).to_numpy(np.float64) for f in firms], axis=1)
    x = np.column_stack([np.log(d["value"].to_numpy(np.float64)), np.log(d["capital"].to_numpy(np.float64)),
                         d["year"].to_numpy(np.float64), onehot])
    return Raw(x, np.log(d["invest"].to_numpy(np.float64)), "regression", None,
               "Grunfeld (1958) investment of 11 US firms, 1935–1954 (220 firm-years). Target: "
               "log gross investment. Features: log firm value, log capital stock, year and a "
               "one-hot firm indicator (14).")


def _engel() -> Raw:
    d = _frame("engel")
    return Raw(d[["income"]].to_numpy(np.float64), d["foodexp"].to_numpy(np.float64), "regression", None,
               "Engel (1857) food expenditure of 235 Belgian working-class households. Target: "
               "annual food expenditure; feature: annual household income (1).")


STATSMODELS: dict[str, tuple[str, Callable[[], Raw]]] = {
    "fair": ("statsmodels", _fair),
    "randhie": ("statsmodels", _randhie),
    "anes96": ("statsmodels", _anes96),
    "star98": ("statsmodels", _star98),
    "modechoice": ("statsmodels", _modechoice),
    "grunfeld": ("statsmodels", _grunfeld),
    "engel": ("statsmodels", _engel),
}


# -- MNIST-1D ------------------------------------------------------------------------------------

#: Signals of ``mnist1d`` (the generator's default ``num_samples``).
MNIST1D_DEFAULT_SAMPLES = 5000
#: Smallest ``mnist1d_n<N>``: two signals per class, enough for a stratified split.
MNIST1D_MIN_SAMPLES = 20
_MNIST1D_SIZED = re.compile(r"^mnist1d_n(?P<n>\d+)$")

#: Distortion arguments of ``mnist1d.data.make_dataset`` a variant name may set, in name order (the
#: order the generator applies them): name key, argument, type, the package's default.
MNIST1D_PARAMS: tuple[tuple[str, str, type, float | int], ...] = (
    ("scale", "scale_coeff", float, 0.4),
    ("trans", "max_translation", int, 48),
    ("corr", "corr_noise_scale", float, 0.25),
    ("iid", "iid_noise_scale", float, 0.02),
    ("shear", "shear_scale", float, 0.75),
)
#: Length of the padded template before the final subsampling (template_len 12 + padding 60):
#: a translation by more than this would wrap around to no translation at all.
MNIST1D_PADDED_LENGTH = 72
_NUM, _INT = r"\d+(?:\.\d+)?", r"\d+"
_MNIST1D_VARIANT = re.compile(
    "^mnist1d" + "".join(f"(?:_{key}(?P<{key}>{_INT if kind is int else _NUM}))?" for key, _, kind, _ in MNIST1D_PARAMS)
    + r"(?:_n(?P<n>\d+))?$")


def _mnist1d(n: int = MNIST1D_DEFAULT_SAMPLES, overrides: tuple[tuple[str, float | int], ...] = (),
             name: str | None = None) -> Raw:
    """The ``n`` signals of ``mnist1d.data.make_dataset()`` (generator seed 42; default args but
    ``num_samples=n``, which is left untouched for the default 5000, and the ``(argument, value)``
    pairs of ``overrides``, none for ``mnist1d`` and ``mnist1d_n<N>``).

    ``make_dataset`` seeds Python's and NumPy's *global* generators; their states are restored
    afterwards so loading a dataset never changes a caller's random stream.
    """
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        generator = optional_import("mnist1d.data", name or mnist1d_name(n))
        args = generator.get_dataset_args()
        if n != MNIST1D_DEFAULT_SAMPLES:
            args.num_samples = n
        for argument, value in overrides:
            setattr(args, argument, value)
        data = generator.make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    x = np.concatenate([data["x"], data["x_test"]]).astype(np.float64)[:, None, :]
    y = np.concatenate([data["y"], data["y_test"]]).astype(np.int64)
    if len(y) != n:  # pragma: no cover - guarded by mnist1d_size
        raise InvalidInputError(f"mnist1d generator returned {len(y)} signals, expected {n}")
    if overrides:
        return Raw(x, y, "classification", 10, _variant_description(n, overrides))
    if n == MNIST1D_DEFAULT_SAMPLES:
        return Raw(x, y, "classification", 10,
                   "MNIST-1D (Greydanus & Kobak 2024): 1-D signals of length 40 drawn from 10 digit-like "
                   "templates with random padding, scaling, translation, correlated and i.i.d. noise and "
                   "shear, from the mnist1d package's generator make_dataset() with its default "
                   "arguments (5000 signals, seed 42). Its own 4000/1000 split is pooled and re-split "
                   "like every other dataset; shape 1×40 for 1-D convolutions.")
    return Raw(x, y, "classification", 10,
               f"MNIST-1D with {n} signals: the mnist1d package's generator make_dataset() with "
               f"num_samples={n} and otherwise default arguments (seed 42), {n // 10} per class, "
               f"pooled and re-split like every other dataset; shape 1×40. Not a superset of "
               f"`mnist1d` (the generator's stream depends on the count). load(name, n_test=k) fixes "
               f"the test-set size, e.g. mnist1d_n13750 with n_test=10000 gives 3750 training and "
               f"10000 test signals.")


def mnist1d_size(name: str) -> int | None:
    """N of a name spelled ``mnist1d_n<N>`` (validated), else None.

    >>> mnist1d_size("mnist1d_n13750"), mnist1d_size("mnist1d")
    (13750, None)
    """
    m = _MNIST1D_SIZED.match(name)
    if m is None:
        return None
    return _checked_count(name, int(m.group("n")))


def _checked_count(name: str, n: int) -> int:
    if n < MNIST1D_MIN_SAMPLES or n % 10:
        raise InvalidInputError(f"dataset {name!r}: the number of MNIST-1D signals must be a multiple of 10 "
                                f"(the generator makes N // 10 per class) and at least {MNIST1D_MIN_SAMPLES}, "
                                f"got {n}")
    return n


def mnist1d_name(n: int) -> str:
    """Canonical name of the MNIST-1D set of ``n`` signals: ``mnist1d`` for 5000, else ``mnist1d_n<n>``."""
    return "mnist1d" if n == MNIST1D_DEFAULT_SAMPLES else f"mnist1d_n{int(n)}"


def mnist1d_builder(n: int) -> Callable[[], Raw]:
    return functools.partial(_mnist1d, n)


def _variant_description(n: int, overrides: tuple[tuple[str, float | int], ...]) -> str:
    changed = ", ".join(f"{arg}={value} (default {default})" for arg, value in overrides
                        for _, a, _, default in MNIST1D_PARAMS if a == arg)
    paired = all(arg != "max_translation" for arg, _ in overrides)
    stream = ("The generator's random stream is unchanged, so every signal is the one of the same "
              "position in " + (f"`{mnist1d_name(n)}`" if n != MNIST1D_DEFAULT_SAMPLES else "`mnist1d`")
              + " (same template, label and random draws) with other distortion magnitudes, and a "
              "split seed puts it on the same side of the split."
              if paired else
              "max_translation changes how many numbers the generator draws, so the signals are new "
              "draws, not distorted copies of `mnist1d`'s.")
    return (f"MNIST-1D variant, a different dataset of the same shape (1×40) and classes (10): the "
            f"mnist1d package's generator make_dataset() with {changed}, {n} signals and otherwise "
            f"default arguments (seed 42). {stream} Standardised with its own training statistics, "
            f"like every dataset.")


def mnist1d_variant(name: str) -> tuple[str, Callable[[], Raw]] | None:
    """``(canonical_name, builder)`` of a name spelled ``mnist1d_<key><value>…[_n<N>]``, else None.

    Keys, in this order, each at most once: ``scale`` (scale_coeff, in [0, 2), default 0.4),
    ``trans`` (max_translation, an integer from 1 to 72, default 48), ``corr`` (corr_noise_scale
    ≥ 0, default 0.25), ``iid`` (iid_noise_scale ≥ 0, default 0.02), ``shear`` (shear_scale ≥ 0,
    default 0.75); N as for ``mnist1d_n<N>``. Numbers are canonicalised like the synthetic
    families' (``iid0.10`` → ``iid0.1``) and parameters equal to their default are dropped from
    the canonical name, so ``mnist1d_shear0.75`` *is* ``mnist1d``. Invalid values raise
    :class:`InvalidInputError`.

    >>> mnist1d_variant("mnist1d_iid0.10_n200")[0], mnist1d_variant("mnist1d_shear0.75")[0]
    ('mnist1d_iid0.1_n200', 'mnist1d')
    >>> mnist1d_variant("mnist1d_n200") is None
    True
    """
    m = _MNIST1D_VARIANT.match(name)
    if m is None or all(m.group(key) is None for key, _, _, _ in MNIST1D_PARAMS):
        return None
    n = MNIST1D_DEFAULT_SAMPLES if m.group("n") is None else _checked_count(name, int(m.group("n")))
    overrides, parts = [], []
    for key, argument, kind, default in MNIST1D_PARAMS:
        text = m.group(key)
        if text is None:
            continue
        value = kind(text)
        if kind is int and not 1 <= value <= MNIST1D_PADDED_LENGTH:
            raise InvalidInputError(f"dataset {name!r}: {key} ({argument}) must be an integer from 1 to "
                                    f"{MNIST1D_PADDED_LENGTH}, got {value}")
        if key == "scale" and not value < 2:
            raise InvalidInputError(f"dataset {name!r}: scale ({argument}) must lie in [0, 2) so that every "
                                    f"scale factor 1 + scale·(u − 1/2) stays positive, got {value}")
        if value != default:
            overrides.append((argument, value))
            parts.append(f"_{key}{format_number(value, kind)}")
    canonical = mnist1d_name(n) if not parts else (
        "mnist1d" + "".join(parts) + (f"_n{n}" if n != MNIST1D_DEFAULT_SAMPLES else ""))
    return canonical, functools.partial(_mnist1d, n, tuple(overrides), canonical)


#: Only ``mnist1d`` is listed by ``names()``; every valid ``mnist1d_n<N>`` loads all the same (like the
#: synthetic families' members off their grid), resolved by :func:`hesslens.datasets.registry.resolve`.
MNIST1D: dict[str, tuple[str, Callable[[], Raw]]] = {"mnist1d": ("mnist1d", _mnist1d)}
