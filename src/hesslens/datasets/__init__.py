"""Datasets that work offline: ``names()``, ``info(name)``, ``load(name, seed=0)``.

>>> from hesslens import datasets
>>> ds = datasets.load("digits_image", seed=1)
>>> ds.info.input_shape, tuple(ds.x_train.shape), ds.num_classes
((1, 8, 8), (1347, 1, 8, 8), 10)

What is registered (the full table, with sizes and descriptions, is ``docs/datasets.md``, produced
by :func:`catalogue` through ``python -m hesslens.datasets docs/datasets.md``):

* **Real, bundled with installed packages** — scikit-learn: ``iris``, ``wine``, ``breast_cancer``,
  ``digits`` (64 flat features) and ``digits_image`` (the same rows as 1×8×8 images), ``diabetes``;
  statsmodels: ``fair``, ``randhie``, ``anes96``, ``star98``, ``modechoice``, ``grunfeld``, ``engel``
  (each description states the chosen target and features); ``mnist1d`` (1×40 signals from the
  ``mnist1d`` package's generator, never its download) and ``mnist1d_n<N>`` (the same generator
  asked for N signals, e.g. ``mnist1d_n13750``; ``load("mnist1d_n13750", n_test=10000)`` gives 3,750
  training and 10,000 test signals); MNIST-1D variants ``mnist1d_<param><value>…[_n<N>]`` with other
  distortion parameters of the same generator (``mnist1d_iid0.1``, ``mnist1d_shear1.5``; see
  :func:`hesslens.datasets.real.mnist1d_variant`), a different dataset of the same shape.
* **Synthetic families** (:mod:`hesslens.datasets.synthetic`) — ``synth_cls_…``, ``teacher_cls_…``,
  ``moons_…``, ``circles_…``, ``blobs_…``, ``synth_reg_…``, ``teacher_reg_…``, ``friedman1/2/3_…``,
  named by their parameters (e.g. ``synth_cls_d20_c4_noise0.1``); any valid parameters load.
* **OpenML** (:mod:`hesslens.datasets.openml`) — ``openml:<id>``, fetched once when online, then
  cached on disk.

**Shifts** (:mod:`hesslens.datasets.shifts`) — ``shift(ds, kind, level, seed=, splits=)`` returns a
copy of a loaded dataset with Gaussian input noise, zeroed features (corruption), changed labels or
a relabelled task (``"noise"``, ``"corruption"``, ``"label"``, ``"permute"``), e.g. to evaluate a
trained model on a shifted test set.

Design: data are a fixed function of the name (synthetic generators are seeded by the name), and
``seed`` chooses only the train/test split. Preparation (split, imputation, standardisation with
training statistics, tensor dtypes) is described in :mod:`hesslens.datasets.core`. A user's own
tensors become the same structure with :meth:`Dataset.from_tensors`.
"""

from .listing import catalogue
from .core import Dataset, DatasetInfo, Scaling
from .openml import OpenMLUnavailableError, register_openml, register_openml_suite
from .registry import clear_cache, info, load, names
from .shifts import shift

__all__ = ["Dataset", "DatasetInfo", "OpenMLUnavailableError", "Scaling", "catalogue", "clear_cache", "info",
           "load", "names", "register_openml", "register_openml_suite", "shift"]
