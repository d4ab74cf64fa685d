"""hesslens.studies.arms: versus_best (one best-by-mean candidate for all seeds) and run_value.

The planted candidates are built so that the candidate with the highest mean over seeds is never the
best run of any single seed: a per-seed choice would give a different statistic. Expected values are
computed here with NumPy from the planted arrays, and verdicts from SciPy's t-interval.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sst

from hesslens.errors import InvalidInputError
from hesslens.studies.arms import run_value, versus_best
from hesslens.studies.claims import Claim, Statistic

SEEDS = [0, 1, 2, 3, 4, 5]
HIGH = np.array([0.70, 0.72, 0.69, 0.71, 0.70, 0.73])          # the arm (dropout 0.9)
CANDIDATES = {                                                 # dropout → per-seed test accuracy
    0.1: np.array([0.80, 0.80, 0.80, 0.80, 0.80, 0.80]),       # best mean (0.80), never a seed's best run
    0.2: np.array([0.90, 0.60, 0.90, 0.60, 0.90, 0.60]),       # mean 0.75
    0.3: np.array([0.60, 0.90, 0.60, 0.90, 0.60, 0.85]),       # mean ≈ 0.742
}
BASE = {"arch": "mlp", "lr": 0.05}
ARM = {**BASE, "dropout": 0.9}
CANDS = [{**BASE, "dropout": p} for p in CANDIDATES]


def dropout_table(high=HIGH, candidates=None, *, capped=(), extra=True) -> pd.DataFrame:
    """Runs per seed for the arm and each candidate, plus a shared per-seed offset (initialisation)."""
    candidates = CANDIDATES if candidates is None else candidates
    offsets = np.random.default_rng(11).normal(0.0, 0.05, len(SEEDS))
    rows = []
    for i, s in enumerate(SEEDS):
        rows.append({**ARM, "seed": s, "test_acc": high[i] + offsets[i], "capped": ("arm", s) in capped})
        for p, v in candidates.items():
            rows.append({**BASE, "dropout": p, "seed": s, "test_acc": v[i] + offsets[i],
                         "capped": (p, s) in capped})
        if extra:   # an unrelated run, better than everything: never a candidate
            rows.append({**BASE, "dropout": 0.5, "seed": s, "test_acc": 5.0, "capped": True})
    return pd.DataFrame(rows)


def test_planted_design_best_mean_differs_from_per_seed_best():
    stack = np.vstack(list(CANDIDATES.values()))
    assert int(np.argmax(stack.mean(axis=1))) == 0                 # 0.1 has the best mean
    assert not np.any(np.argmax(stack, axis=0) == 0)               # but is no seed's best run
    per_seed_best = HIGH - stack.max(axis=0)
    assert not np.allclose(per_seed_best, HIGH - CANDIDATES[0.1])


def test_versus_best_uses_the_best_mean_candidate_for_every_seed():
    stat = versus_best("test_acc", ARM, CANDS)
    assert isinstance(stat, Statistic)
    got = stat(dropout_table())
    assert list(got.index) == SEEDS
    np.testing.assert_allclose(got.to_numpy(), HIGH - CANDIDATES[0.1], atol=1e-12)
    # the per-seed choice (each seed's luckiest run) would be more negative
    stack = np.vstack(list(CANDIDATES.values()))
    assert np.all(got.to_numpy() > HIGH - stack.max(axis=0))


def test_versus_best_choice_follows_the_means():
    cands = dict(CANDIDATES)
    cands[0.3] = CANDIDATES[0.3] + 0.2     # now 0.3 has the best mean (≈ 0.942)
    assert int(np.argmax([v.mean() for v in cands.values()])) == 2
    got = versus_best("test_acc", ARM, CANDS)(dropout_table(candidates=cands))
    np.testing.assert_allclose(got.to_numpy(), HIGH - cands[0.3], atol=1e-12)


def test_versus_best_does_not_depend_on_order_of_candidates_or_rows():
    df = dropout_table()
    expected = HIGH - CANDIDATES[0.1]
    shuffled = df.sample(frac=1.0, random_state=3)
    for cands, data in ((CANDS[::-1], df), (CANDS, shuffled), ([CANDS[2], CANDS[0], CANDS[1]], shuffled)):
        got = versus_best("test_acc", ARM, cands)(data)
        np.testing.assert_allclose(got.sort_index().to_numpy(), expected, atol=1e-12)


def test_versus_best_pairs_by_seed():
    df = dropout_table()
    # Another seed numbering: the values follow their seeds.
    renumbered = df.assign(seed=df["seed"] * 10 + 3)
    got = versus_best("test_acc", ARM, CANDS)(renumbered)
    assert list(got.index) == [s * 10 + 3 for s in SEEDS]
    np.testing.assert_allclose(got.to_numpy(), HIGH - CANDIDATES[0.1], atol=1e-12)
    # A seed missing from the arm (or the best candidate) is an error naming it, not dropped.
    no_arm = df[~((df.dropout == 0.9) & (df.seed == 3))]
    with pytest.raises(InvalidInputError, match="unpaired.*'seed': 3"):
        versus_best("test_acc", ARM, CANDS)(no_arm)
    no_best = df[~((df.dropout == 0.1) & (df.seed == 4))]
    with pytest.raises(InvalidInputError, match="unpaired.*'seed': 4"):
        versus_best("test_acc", ARM, CANDS)(no_best)


def test_versus_best_description_names_the_selection_bias():
    d = versus_best("test_acc", ARM, CANDS).description
    assert "best" in d and "mean test_acc over seeds" in d
    assert "chosen on these runs" in d and "favours a negative difference" in d
    for p in CANDIDATES:
        assert f"dropout = {p!r}" in d
    assert "dropout = 0.9" in d


@pytest.mark.parametrize("cands", [[], [CANDS[0]]])
def test_versus_best_needs_two_candidates(cands):
    with pytest.raises(InvalidInputError, match="at least 2 candidate"):
        versus_best("test_acc", ARM, cands)


def test_versus_best_errors():
    df = dropout_table()
    with pytest.raises(InvalidInputError, match="matches no runs"):
        versus_best("test_acc", ARM, [*CANDS, {**BASE, "dropout": 0.42}])(df)
    nan = df.copy()
    nan.loc[(nan.dropout == 0.2) & (nan.seed == 1), "test_acc"] = np.nan
    with pytest.raises(InvalidInputError, match="NaN or inf"):
        versus_best("test_acc", ARM, CANDS)(nan)
    with pytest.raises(InvalidInputError, match="unknown column"):
        versus_best("train_acc", ARM, CANDS)(df)
    with pytest.raises(InvalidInputError, match="must be a mapping"):
        versus_best("test_acc", ARM, ["dropout", "lr"])


def test_versus_best_rows_cover_arm_and_every_candidate():
    df = dropout_table()
    stat = versus_best("test_acc", ARM, CANDS)
    rows = stat.rows(df)
    expected = df[df.dropout.isin([0.9, *CANDIDATES])]
    assert sorted(rows.index) == sorted(expected.index)
    assert len(rows) == len(SEEDS) * (1 + len(CANDIDATES))
    assert not (rows.dropout == 0.5).any()


def test_versus_best_in_a_claim():
    df = dropout_table()
    diffs = HIGH - CANDIDATES[0.1]
    ci = sst.ttest_1samp(diffs, 0.0).confidence_interval(0.95)
    assert ci.high < 0                            # planted: the arm is below the best-mean candidate
    c = Claim("4 test acc", "Very high dropout is below the best moderate rate.", "grid dropout",
              versus_best("test_acc", ARM, CANDS), "less")
    v = c.decide(df)   # the capped dropout-0.5 runs are not among the rows read
    assert v.status == "supported"
    assert v.n_seeds == len(SEEDS)
    assert v.effect == pytest.approx(diffs.mean(), abs=1e-12)
    assert v.interval.low == pytest.approx(ci.low, abs=1e-12) and v.interval.high == pytest.approx(ci.high, abs=1e-12)
    assert "chosen on these runs" in v.rule
    # A capped run of a candidate that is not the best still counts: it took part in the choice.
    capped = c.decide(dropout_table(capped={(0.3, 2)}))
    assert capped.status == "not_decided" and "capped" in capped.notes[0] and "[2]" in capped.notes[0]


# --- run_value ---------------------------------------------------------------------------------------------

PEAK_01 = np.array([1.30, 1.21, 1.42, 1.25, 1.36])
PEAK_02 = np.array([0.70, 0.95, 0.88, 0.91, 0.60])


def eos_table(*, capped=()) -> pd.DataFrame:
    rows = []
    for s, (a, b) in enumerate(zip(PEAK_01, PEAK_02)):
        rows.append({"seed": s, "batch_size": 1000, "lr": 0.1, "eos_ratio_peak": a, "capped": (0.1, s) in capped})
        rows.append({"seed": s, "batch_size": 1000, "lr": 0.2, "eos_ratio_peak": b, "capped": (0.2, s) in capped})
    return pd.DataFrame(rows)


def test_run_value_is_metric_minus_constant_per_seed():
    df = eos_table().sample(frac=1.0, random_state=1)
    got = run_value("eos_ratio_peak", {"lr": 0.1}, minus=1.0)(df)
    assert isinstance(got, pd.Series)
    assert sorted(got.index) == list(range(5))
    np.testing.assert_allclose(got.sort_index().to_numpy(), PEAK_01 - 1.0, atol=1e-12)
    raw = run_value("eos_ratio_peak", {"lr": 0.2, "batch_size": 1000})(df)
    np.testing.assert_allclose(raw.sort_index().to_numpy(), PEAK_02, atol=1e-12)


def test_run_value_description():
    d = run_value("eos_ratio_peak", {"lr": 0.1}, minus=1.0).description
    assert "eos_ratio_peak" in d and "− 1" in d and "lr = 0.1" in d
    plain = run_value("eos_ratio_peak", {"lr": 0.1}).description
    assert "−" not in plain and "eos_ratio_peak of the run with lr = 0.1" == plain


def test_run_value_errors():
    df = eos_table()
    dup = pd.concat([df, df[(df.lr == 0.1) & (df.seed == 2)]], ignore_index=True)
    with pytest.raises(InvalidInputError, match="several runs.*'seed': 2"):
        run_value("eos_ratio_peak", {"lr": 0.1})(dup)
    # both learning rates for one seed: the filter is too wide
    with pytest.raises(InvalidInputError, match="several runs"):
        run_value("eos_ratio_peak", {"batch_size": 1000})(df)
    with pytest.raises(InvalidInputError, match="matches no runs"):
        run_value("eos_ratio_peak", {"lr": 0.3})(df)
    nan = df.copy()
    nan.loc[(nan.lr == 0.1) & (nan.seed == 3), "eos_ratio_peak"] = np.nan
    with pytest.raises(InvalidInputError, match="NaN or inf.*'seed': 3"):
        run_value("eos_ratio_peak", {"lr": 0.1})(nan)
    with pytest.raises(InvalidInputError, match="unknown column"):
        run_value("eos_ratio_median", {"lr": 0.1})(df)
    with pytest.raises(InvalidInputError, match="unknown column"):
        run_value("eos_ratio_peak", {"optimizer": "sgd"})(df)


def test_run_value_rows_are_the_matching_runs():
    df = eos_table()
    rows = run_value("eos_ratio_peak", {"lr": 0.2}).rows(df)
    assert sorted(rows.index) == sorted(df.index[df.lr == 0.2])


@pytest.mark.parametrize("values,lr", [(PEAK_01, 0.1), (PEAK_02, 0.2)])
def test_run_value_in_a_claim(values, lr):
    ci = sst.ttest_1samp(values - 1.0, 0.0).confidence_interval(0.95)
    expected = "supported" if ci.low > 0 else "contradicted" if ci.high < 0 else "inconclusive"
    assert expected == ("supported" if lr == 0.1 else "contradicted")   # the planted design
    c = Claim(f"EoS η = {lr:g} reaches", f"λ_max reaches 2/η = {2 / lr:g}.", "grid eos",
              run_value("eos_ratio_peak", {"lr": lr}, minus=1.0), "greater")
    v = c.decide(eos_table())
    assert v.status == expected
    assert v.effect == pytest.approx(values.mean() - 1.0, abs=1e-12)
    assert v.interval.low == pytest.approx(ci.low, abs=1e-12) and v.interval.high == pytest.approx(ci.high, abs=1e-12)
    assert "eos_ratio_peak − 1" in v.rule


def test_run_value_claim_and_capped_runs():
    c = Claim("reaches", "s.", "grid eos", run_value("eos_ratio_peak", {"lr": 0.1}, minus=1.0), "greater")
    assert c.decide(eos_table(capped={(0.2, 1)})).status == "supported"    # capped run of another lr
    v = c.decide(eos_table(capped={(0.1, 1)}))
    assert v.status == "not_decided" and "[1]" in v.notes[0]


def test_run_value_equivalence_claim():
    # |peak − 1| within a margin: PEAK_01 − 1 ≈ 0.31 ± 0.08, equivalent to 0 only with a wide margin
    c = Claim("hovers", "s.", "grid eos", run_value("eos_ratio_peak", {"lr": 0.1}, minus=1.0), "equivalent",
              margin=1.0)
    assert c.decide(eos_table()).status == "supported"
    ci = sst.ttest_1samp(PEAK_01 - 1.0, 0.0).confidence_interval(0.95)
    tight = Claim("hovers", "s.", "grid eos", run_value("eos_ratio_peak", {"lr": 0.1}, minus=1.0), "equivalent",
                  margin=ci.low * 0.99)
    assert tight.decide(eos_table()).status == "contradicted"


# -- pooled_value: a declared region of runs, per seed ------------------------------------------------
def _region() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = [{"net": net, "opt": opt, "seed": s, "balance": float(rng.uniform(-1, 1))}
            for s in SEEDS for net in ("a", "b", "c") for opt in ("sgd", "adam")]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("how", ["mean", "min", "max"])
def test_pooled_value_aggregates_the_region_of_each_seed(how):
    from hesslens.studies.arms import pooled_value

    df = _region()
    stat = pooled_value("balance", {"opt": "sgd"}, how=how, minus=0.25, per_seed=3)
    expected = {s: getattr(np, how)(df[(df["seed"] == s) & (df["opt"] == "sgd")]["balance"].to_numpy() - 0.25)
                for s in SEEDS}
    got = stat(df)
    assert list(got.index) == SEEDS
    np.testing.assert_allclose(got.to_numpy(), [expected[s] for s in SEEDS], rtol=0, atol=1e-15)
    assert len(stat.rows(df)) == 3 * len(SEEDS) and how in stat.description


def test_pooled_value_refuses_a_partial_region_nan_and_a_bad_aggregate():
    from hesslens.studies.arms import pooled_value

    df = _region()
    short = df.drop(index=df[(df["seed"] == 2) & (df["net"] == "a") & (df["opt"] == "sgd")].index)
    with pytest.raises(InvalidInputError, match=r"expected 3 runs per seed, got \{2: 2\}"):
        pooled_value("balance", {"opt": "sgd"}, per_seed=3)(short)
    bad = df.copy()
    bad.loc[0, "balance"] = np.nan
    with pytest.raises(InvalidInputError, match="NaN or inf"):
        pooled_value("balance", {"opt": "sgd"})(bad)
    with pytest.raises(InvalidInputError, match="no runs match"):
        pooled_value("balance", {"opt": "lbfgs"})(df)
    with pytest.raises(InvalidInputError, match="how must be one of"):
        pooled_value("balance", {"opt": "sgd"}, how="median")
