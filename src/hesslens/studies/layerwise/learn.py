"""Per-seed statistics that learn across the runs of one seed: grouped cross-validation and CCA.

Each is a :class:`~hesslens.studies.arms.Statistic` (one value per seed), so the claim framework decides
on them like on any other: the runs of one seed are one replicate of the whole study.

* :func:`cv_accuracy` / :func:`accuracy_gain` — a multinomial logistic regression (median imputation,
  standardisation, L2, scikit-learn) predicting the regime from a feature set, scored by
  **leave-datasets-out** cross-validation (:class:`~sklearn.model_selection.GroupKFold` by dataset: the three
  runs of a dataset are always in the same fold, so a classifier cannot match a run to its dataset's other
  runs); the statistic is the held-out accuracy of one feature set minus another's (or minus chance).
* :func:`canonical_excess` — the first canonical correlation between two feature sets (scikit-learn's
  CCA) minus the 95th percentile of its permutation null (the rows of the second set permuted, a fixed
  number of times from a seeded generator): positive when the relation is stronger than 95 % of relations
  with the pairing destroyed. In-sample canonical correlations are biased upwards with many features; the
  null has the same bias, which is why the statistic subtracts it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ...errors import InvalidInputError
from ..arms import Statistic

__all__ = ["accuracy_gain", "canonical_correlation", "canonical_excess", "cv_accuracy"]


def _matrix(df: pd.DataFrame, columns: Sequence[str], what: str) -> np.ndarray:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InvalidInputError(f"{what}: unknown column(s) {missing}")
    return np.array(df[list(columns)].to_numpy(dtype=float))  # a writable copy


def cv_accuracy(df: pd.DataFrame, features: Sequence[str], *, label: str = "regime", group: str = "dataset",
                folds: int = 5) -> float:
    """Held-out accuracy of a logistic regression on ``features`` predicting ``label``, folds grouped by ``group``."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = _matrix(df, features, "cv_accuracy")
    x[~np.isfinite(x)] = np.nan
    y = df[label].astype(str).to_numpy()
    groups = df[group].astype(str).to_numpy()
    n_groups = len(set(groups))
    if n_groups < folds:
        raise InvalidInputError(f"cv_accuracy: {n_groups} {group} group(s) for {folds} folds")
    model = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler(),
                          LogisticRegression(max_iter=5000))
    predicted = cross_val_predict(model, x, y, groups=groups, cv=GroupKFold(n_splits=folds))
    return float((predicted == y).mean())


def accuracy_gain(features: Sequence[str], baseline: Sequence[str] | float, *, label: str = "regime",
                  group: str = "dataset", folds: int = 5, seed_column: str = "seed") -> Statistic:
    """Per seed: cv_accuracy(features) − cv_accuracy(baseline) (or minus a number, e.g. chance 1/3)."""
    number = isinstance(baseline, (int, float))
    what = f"{baseline:.3g}" if number else f"the same from the {len(baseline)} features {', '.join(baseline)}"
    desc = (f"leave-datasets-out ({folds}-fold, grouped by {group}) accuracy of a logistic regression predicting "
            f"{label} from {len(features)} features ({', '.join(features[:3])}, …), minus {what}, per {seed_column}")

    def compute(df: pd.DataFrame) -> pd.Series:
        out = {}
        for seed, g in df.groupby(seed_column, sort=True):
            base = (float(baseline) if isinstance(baseline, (int, float))
                    else cv_accuracy(g, baseline, label=label, group=group, folds=folds))
            out[seed] = cv_accuracy(g, features, label=label, group=group, folds=folds) - base
        return pd.Series(out, name="accuracy_gain", dtype=float)

    return Statistic(desc, compute, lambda df: df, seed_column)


def canonical_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """The first canonical correlation of x (n × p) and y (n × q), columns standardised, NaN → column mean."""
    from sklearn.cross_decomposition import CCA

    def prepared(a: np.ndarray) -> np.ndarray:
        a = np.array(a, dtype=float)
        a[~np.isfinite(a)] = np.nan
        a = np.where(np.isnan(a), np.nanmean(a, axis=0), a)
        a = a[:, np.nanstd(a, axis=0) > 0]
        return (a - a.mean(axis=0)) / a.std(axis=0)

    xs, ys = prepared(x), prepared(y)
    if xs.shape[1] == 0 or ys.shape[1] == 0:
        raise InvalidInputError("canonical_correlation: a feature set has no varying column")
    u, v = CCA(n_components=1, max_iter=2000).fit(xs, ys).transform(xs, ys)
    return float(abs(np.corrcoef(u[:, 0], v[:, 0])[0, 1]))


def canonical_excess(x_columns: Sequence[str], y_columns: Sequence[str], *, permutations: int = 199, seed: int = 0,
                     seed_column: str = "seed") -> Statistic:
    """Per seed: first canonical correlation − the 95th percentile of its permutation null."""
    desc = (f"first canonical correlation between {len(x_columns)} spectral features and {list(y_columns)} minus "
            f"the 95th percentile of its null over {permutations} permutations of the rows of the latter, per "
            f"{seed_column}")

    def compute(df: pd.DataFrame) -> pd.Series:
        out = {}
        for s, g in df.groupby(seed_column, sort=True):
            x, y = _matrix(g, x_columns, "canonical_excess"), _matrix(g, y_columns, "canonical_excess")
            rng = np.random.default_rng([seed, int(s)])
            null = [canonical_correlation(x, y[rng.permutation(len(y))]) for _ in range(permutations)]
            out[s] = canonical_correlation(x, y) - float(np.quantile(null, 0.95))
        return pd.Series(out, name="canonical_excess", dtype=float)

    return Statistic(desc, compute, lambda df: df, seed_column)
