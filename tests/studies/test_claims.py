"""hesslens.studies.claims: verdicts on planted data, the statistic helpers, robustness and validation.

Planted tables put a known per-seed difference between two arms on top of a large per-seed offset
(what initialisation does to both arms), so a correct paired statistic recovers the planted values
exactly; expected verdicts follow from intervals computed here with SciPy, not from the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats as sst

from hesslens.errors import InvalidInputError
from hesslens.studies.claims import (Claim, Statistic, Verdict, interaction, paired_difference, rank_correlation,
                                     robustness, select, split_seeds)


def planted(diffs, *, capped_seeds=(), seed0=0, offset_seed=0) -> pd.DataFrame:
    """Arms a and b per seed, acc_a − acc_b = diffs[i] exactly, plus a shared large per-seed offset."""
    offsets = np.random.default_rng(offset_seed).normal(0.0, 50.0, len(diffs))
    rows = []
    for i, (d, off) in enumerate(zip(diffs, offsets)):
        s = seed0 + i
        rows.append({"seed": s, "arm": "a", "lr": 0.1, "acc": off + d, "capped": s in capped_seeds})
        rows.append({"seed": s, "arm": "b", "lr": 0.01, "acc": off, "capped": False})
    return pd.DataFrame(rows)


DIFF = paired_difference("acc", {"arm": "a"}, {"arm": "b"})


def claim(direction="greater", margin=None, **kw) -> Claim:
    return Claim(name="c1", sentence="A beats B.", reads={"lr": [0.1, 0.01]}, statistic=DIFF,
                 direction=direction, margin=margin, **kw)


def ci95(d):
    return sst.ttest_1samp(d, 0.0).confidence_interval(0.95)


POS = [1.0, 1.2, 0.8, 1.1, 0.9]
NEG = [-x for x in POS]
WIDE = [-2.0, 2.0, -1.0, 1.0, 0.2]
SMALL = [0.01, -0.02, 0.015, 0.0, -0.005]
BIG = [3.0, 3.2, 2.9, 3.1, 3.05]


# --- the four statuses, each direction ----------------------------------------------------------------

@pytest.mark.parametrize("direction,diffs,status", [
    ("greater", POS, "supported"), ("greater", NEG, "contradicted"), ("greater", WIDE, "inconclusive"),
    ("less", NEG, "supported"), ("less", POS, "contradicted"), ("less", WIDE, "inconclusive"),
    ("equivalent", SMALL, "supported"), ("equivalent", BIG, "contradicted"), ("equivalent", WIDE, "inconclusive"),
    ("equivalent", [-x for x in BIG], "contradicted"),
])
def test_verdicts_on_planted_data(direction, diffs, status):
    ref = ci95(diffs)
    # The planted data are what the test says they are (checked with SciPy, not with hesslens).
    if direction != "equivalent":
        side = {"supported": 1, "contradicted": -1}.get(status, 0) * (1 if direction == "greater" else -1)
        assert (ref.low > 0) == (side > 0) and (ref.high < 0) == (side < 0)
    v = claim(direction, 0.5 if direction == "equivalent" else None).decide(planted(diffs))
    assert v.status == status
    assert v.n_seeds == len(diffs)
    assert v.effect == pytest.approx(np.mean(diffs), abs=1e-9)
    assert v.interval.low == pytest.approx(ref.low, abs=1e-9) and v.interval.high == pytest.approx(ref.high, abs=1e-9)


def test_equivalence_boundaries_follow_tost_and_95_interval():
    # WIDE: 90 % interval not inside ±0.5 (not equivalent), 95 % interval not outside it → inconclusive;
    # SMALL against a margin below its spread cannot be shown equivalent; BIG against margin 5 is.
    assert claim("equivalent", 0.001).decide(planted(SMALL)).status == "inconclusive"
    assert claim("equivalent", 5.0).decide(planted(BIG)).status == "supported"
    ref = ci95(BIG)
    assert claim("equivalent", ref.low * 0.999).decide(planted(BIG)).status == "contradicted"
    assert claim("equivalent", ref.low * 1.001).decide(planted(BIG)).status == "inconclusive"


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-5, 5, allow_nan=False), min_size=2, max_size=8).filter(lambda v: np.ptp(v) > 1e-3),
       st.sampled_from(["greater", "less"]))
def test_status_is_the_interval_rule(diffs, direction):
    ref = ci95(diffs)
    assume(min(abs(ref.low), abs(ref.high)) > 1e-7)   # off the decision boundary
    sign = 1 if direction == "greater" else -1
    lo, hi = sorted((sign * ref.low, sign * ref.high))
    expected = "supported" if lo > 0 else "contradicted" if hi < 0 else "inconclusive"
    assert claim(direction).decide(planted(diffs)).status == expected


# --- not_decided ----------------------------------------------------------------------------------------

def test_smoke_never_decides_but_still_computes():
    v = claim().decide(planted(POS), smoke=True)
    assert v.status == "not_decided" and "smoke" in v.notes[0]
    assert v.effect == pytest.approx(np.mean(POS))
    with pytest.raises(InvalidInputError, match="NaN or inf"):   # smoke runs still exercise the checks
        claim().decide(planted([1.0, math.nan]), smoke=True)


def test_fewer_than_two_seeds_is_not_decided():
    v = claim().decide(planted([5.0]))
    assert v.status == "not_decided" and "1 seed" in v.notes[0] and not v.interval.defined
    assert "UNDEFINED" in v.line().upper()


def test_capped_runs_are_not_decided_unless_allowed():
    df = planted(POS, capped_seeds=(3,))
    v = claim().decide(df)
    assert v.status == "not_decided" and "capped" in v.notes[0] and "[3]" in v.notes[0]
    # A capped run outside the rows the statistic reads does not matter: one the claim's filter drops
    # (lr 0.5), one it keeps but neither arm selects (arm c).
    for lr in (0.5, 0.1):
        other = pd.concat([planted(POS), pd.DataFrame([{"seed": 0, "arm": "c", "lr": lr, "acc": 0.0,
                                                        "capped": True}])], ignore_index=True)
        assert claim().decide(other).status == "supported"
    allowed = claim(allow_capped=True).decide(df)
    assert allowed.status == "supported" and any("capped run(s) allowed" in n for n in allowed.notes)


def test_capped_runs_never_carry_a_verdict_alone():
    capped = [1.0, 1.1, 0.9, 1.05, 0.95, 1.0]
    free = [0.2, -0.1, 0.3]
    diffs = capped + free
    assert ci95(diffs).low > 0 and ci95(free).low < 0 < ci95(free).high   # the planted design
    df = planted(diffs, capped_seeds=tuple(range(6)))
    v = claim(allow_capped=True).decide(df)
    assert v.status == "inconclusive" and any("rule 5" in n for n in v.notes)
    assert claim().decide(df).status == "not_decided"


@pytest.mark.parametrize("flag", ["False", None, np.nan, 2])
def test_capped_flag_must_be_boolean(flag):
    df = planted(POS).astype({"capped": object})
    df.loc[3, "capped"] = flag
    with pytest.raises(InvalidInputError, match="must be True/False"):
        claim().decide(df)


def test_missing_capped_column_is_noted():
    v = claim().decide(planted(POS).drop(columns="capped"))
    assert v.status == "supported" and any("not checked" in n for n in v.notes)


# --- verdict rendering --------------------------------------------------------------------------------

def test_verdict_line_prints_effect_interval_n_and_rule():
    c = claim()
    v = c.decide(planted(POS))
    line = v.line()
    ref = ci95(POS)
    assert line.startswith("c1: SUPPORTED")
    assert f"{np.mean(POS):+.4g}" in line and f"{ref.low:+.4g}" in line and f"{ref.high:+.4g}" in line
    assert "n = 5 seeds" in line and c.rule in line and "paired difference of acc" in line
    eq = claim("equivalent", 0.5).decide(planted(SMALL))
    assert "TOST p" in eq.line() and "(−0.5, 0.5)" in eq.rule
    assert isinstance(v, Verdict)


# --- statistic helpers ----------------------------------------------------------------------------------

def test_paired_difference_recovers_planted_values_indexed_by_seed():
    s = DIFF(planted(POS, seed0=10))
    assert list(s.index) == [10, 11, 12, 13, 14]
    np.testing.assert_allclose(s.to_numpy(), POS, atol=1e-9)
    assert "paired difference of acc" in DIFF.description


def test_paired_difference_with_match_averages_over_cells():
    rows = []
    for seed in (0, 1):
        for bs, (a, b) in {32: (5.0, 1.0), 256: (4.0, 3.0)}.items():
            rows += [{"seed": seed, "bs": bs, "arm": "a", "acc": a + seed},
                     {"seed": seed, "bs": bs, "arm": "b", "acc": b + seed}]
    df = pd.DataFrame(rows)
    s = paired_difference("acc", {"arm": "a"}, {"arm": "b"}, match=("bs",))(df)
    np.testing.assert_allclose(s.to_numpy(), [2.5, 2.5])   # mean of 4 and 1
    with pytest.raises(InvalidInputError, match="several runs"):
        DIFF(df)   # two runs per seed per arm without match= is ambiguous


def test_paired_difference_errors_name_the_problem():
    df = planted(POS)
    with pytest.raises(InvalidInputError, match="unpaired"):
        DIFF(df[~((df.seed == 2) & (df.arm == "b"))])
    with pytest.raises(InvalidInputError, match="matches no runs"):
        paired_difference("acc", {"arm": "a"}, {"arm": "zzz"})(df)
    with pytest.raises(InvalidInputError, match="unknown column"):
        paired_difference("acc", {"optimizer": "sgd"}, {"arm": "b"})(df)
    with pytest.raises(InvalidInputError, match="unknown column"):
        paired_difference("loss", {"arm": "a"}, {"arm": "b"})(df)
    with pytest.raises(InvalidInputError, match="same filter"):
        paired_difference("acc", {"arm": "a"}, {"arm": "a"})
    nan = df.copy()
    nan.loc[(nan.seed == 4) & (nan.arm == "a"), "acc"] = np.nan
    with pytest.raises(InvalidInputError, match="'seed': 4"):
        DIFF(nan)


def test_interaction_is_difference_of_paired_differences():
    rows = []
    for seed, (a, b, c, d) in enumerate([(5.0, 1.0, 2.0, 1.5), (6.0, 1.0, 3.0, 1.0), (4.0, 2.0, 1.0, 1.0)]):
        for cell, v in zip("abcd", (a, b, c, d)):
            rows.append({"seed": seed, "cell": cell, "acc": v + 100 * seed})
    stat = interaction("acc", {"cell": "a"}, {"cell": "b"}, {"cell": "c"}, {"cell": "d"})
    np.testing.assert_allclose(stat(pd.DataFrame(rows)).to_numpy(), [4.0 - 0.5, 5.0 - 2.0, 2.0 - 0.0])
    assert len(stat.rows(pd.DataFrame(rows))) == 12
    with pytest.raises(InvalidInputError, match="different seeds"):
        stat(pd.DataFrame(rows + [{"seed": 9, "cell": "a", "acc": 1.0}, {"seed": 9, "cell": "b", "acc": 0.0}]))


def test_rank_correlation_per_seed_against_scipy():
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"seed": np.repeat([0, 1, 2], 6), "grid": "lr_bs",
                       "lam": rng.normal(size=18), "gap": rng.normal(size=18)})
    df = pd.concat([df, pd.DataFrame({"seed": [0, 0], "grid": "other", "lam": [0.0, 1.0], "gap": [5.0, 4.0]})])
    stat = rank_correlation("lam", "gap", {"grid": "lr_bs"})
    got = stat(df)
    for seed in (0, 1, 2):
        g = df[(df.seed == seed) & (df.grid == "lr_bs")]
        assert got[seed] == pytest.approx(sst.kendalltau(g.lam, g.gap).statistic)
    flat = df.copy()
    flat.loc[(flat.seed == 1) & (flat.grid == "lr_bs"), "lam"] = 2.0
    with pytest.raises(InvalidInputError, match="seed = 1"):
        stat(flat)
    c = Claim("tau", "λ tracks the gap.", {"grid": "lr_bs"}, stat, "greater")
    assert c.decide(df).n_seeds == 3


def test_select_filters_scalars_and_lists():
    df = planted(POS)
    assert len(select(df, {"arm": "a"})) == 5 and len(select(df, {"arm": ["a", "b"], "seed": (0, 1)})) == 4
    with pytest.raises(InvalidInputError, match="unknown column"):
        select(df, {"nope": 1})


# --- robustness -------------------------------------------------------------------------------------------

def test_robustness_flip_makes_inconclusive():
    up = [10.0, 10.1, 9.9, 10.05, 9.95, 10.0]
    down = [-0.5, -0.6, -0.4, -0.55, -0.45, -0.5]
    diffs = [v for pair in zip(up, down) for v in pair]   # even seeds up, odd seeds down
    assert ci95(diffs).low > 0 and ci95(up).low > 0 and ci95(down).high < 0
    r = robustness(claim(), planted(diffs))
    assert r.full.status == "supported"
    assert [p.status for p in r.subsets] == ["supported", "contradicted"]
    assert r.seeds == ((0, 2, 4, 6, 8, 10), (1, 3, 5, 7, 9, 11))
    assert r.verdict.status == "inconclusive" and "rule 6" in r.verdict.notes[-1]
    assert len(r.lines()) == 3


def test_robustness_without_flip_keeps_the_full_verdict():
    diffs = POS + [1.05, 0.95, 1.15]
    r = robustness(claim(), planted(diffs), [(0, 1, 2, 3), (4, 5, 6, 7)])
    assert r.full.status == r.verdict.status == "supported"
    assert all(p.n_seeds == 4 for p in r.subsets)
    half = robustness(claim(), planted(POS), [(0,), (1, 2, 3, 4)])   # one subset undecidable
    assert half.subsets[0].status == "not_decided" and half.verdict.status == "supported"
    assert robustness(claim(), planted(POS), smoke=True).verdict.status == "not_decided"


def test_robustness_validates_subsets():
    df = planted(POS)
    with pytest.raises(InvalidInputError, match="disjoint"):
        robustness(claim(), df, [(0, 1, 2), (2, 3)])
    with pytest.raises(InvalidInputError, match="exactly two"):
        robustness(claim(), df, [(0,), (1,), (2,)])
    with pytest.raises(InvalidInputError, match="not among"):
        robustness(claim(), df, [(0, 1), (2, 99)])
    with pytest.raises(InvalidInputError, match="non-empty"):
        robustness(claim(), df, [(), (1, 2)])
    assert split_seeds([5, 1, 3, 2, 4, 1]) == ((1, 3, 5), (2, 4))


# --- validation ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw,match", [
    ({"direction": "equivalent"}, "needs a margin"),
    ({"direction": "equivalent", "margin": 0.0}, "needs a margin"),
    ({"direction": "equivalent", "margin": -1.0}, "needs a margin"),
    ({"direction": "equivalent", "margin": math.nan}, "needs a margin"),
    ({"direction": "equivalent", "margin": True}, "needs a margin"),
    ({"direction": "greater", "margin": 0.5}, "only used with direction 'equivalent'"),
    ({"direction": "bigger"}, "direction must be one of"),
    ({"statistic": 3}, "callable"),
    ({"name": ""}, "name"),
    ({"sentence": " "}, "sentence"),
    ({"reads": 5}, "reads"),
    ({"reads": ""}, "reads"),
    ({"seed_column": "net_seed"}, "pairs by 'seed'"),
    ({"allow_capped": "yes"}, "allow_capped"),
])
def test_claim_validation(kw, match):
    args = {"name": "c", "sentence": "s.", "reads": {"arm": ["a", "b"]}, "statistic": DIFF, "direction": "greater"}
    args.update(kw)
    with pytest.raises(InvalidInputError, match=match):
        Claim(**args)


def test_decide_validation_errors():
    with pytest.raises(InvalidInputError, match="unknown seed column 'seed'"):
        claim().decide(planted(POS).rename(columns={"seed": "net_seed"}))
    with pytest.raises(InvalidInputError, match="DataFrame"):
        claim().decide({"seed": [1]})

    def nan_stat(df):
        return pd.Series([1.0, np.nan, 2.0], index=[0, 1, 2])
    with pytest.raises(InvalidInputError, match=r"labels \[1\]"):
        Claim("n", "s.", "all runs", nan_stat, "greater").decide(planted(POS))
    with pytest.raises(InvalidInputError, match="Series"):
        Claim("n", "s.", "all runs", lambda df: [1.0, 2.0], "greater").decide(planted(POS))
    with pytest.raises(InvalidInputError, match="not values of 'seed'"):
        Claim("n", "s.", "all runs", lambda df: pd.Series([1.0, 2.0], index=[0, 42]), "greater").decide(planted(POS))
    with pytest.raises(InvalidInputError, match="several values"):
        Claim("n", "s.", "all runs", lambda df: pd.Series([1.0, 2.0], index=[0, 0]), "greater").decide(planted(POS))


def test_plain_callable_statistic_and_custom_seed_column():
    df = planted(POS).rename(columns={"seed": "net_seed"})
    stat = paired_difference("acc", {"arm": "a"}, {"arm": "b"}, seed_column="net_seed")
    assert Claim("c", "s.", "grid lr", stat, "greater", seed_column="net_seed").decide(df).status == "supported"

    def plain(d):  # a hand-written statistic: the whole table counts as read, capped rows included
        p = d.pivot(index="net_seed", columns="arm", values="acc")
        return p["a"] - p["b"]
    assert Claim("c", "s.", "all", plain, "greater", seed_column="net_seed").decide(df).status == "supported"
    assert isinstance(stat, Statistic)
