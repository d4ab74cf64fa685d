"""hesslens.studies.verdicts: composite claims (AllOf, NotAll), decide_safely and the verdict table.

Planted tables hold arms a and b in several cells (one part claim per cell); per seed and cell,
acc_a − acc_b is a known value on top of a large per-seed offset shared by both arms. The status each
part should get follows from SciPy's 95 % t-interval of the planted differences (checked here), and
the composite statuses from the rules stated in the module docstring, worked out by hand.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sst

from hesslens.errors import InvalidInputError
from hesslens.studies.claims import Claim, paired_difference
from hesslens.studies.verdicts import (
    VERDICT_COLUMNS,
    AllOf,
    NotAll,
    decide_safely,
    verdict_table,
)

POS = [1.0, 1.2, 0.8, 1.1, 0.9, 1.05]
NEG = [-x for x in POS]
WIDE = [-2.0, 2.0, -1.0, 1.0, 0.2, -0.3]
PATTERNS = {"POS": POS, "NEG": NEG, "WIDE": WIDE}

DIFF = paired_difference("acc", {"arm": "a"}, {"arm": "b"})


def planted(cells: dict[str, list[float]], *, capped=(), seed0: int = 0) -> pd.DataFrame:
    """Per cell and seed, arms a and b with acc_a − acc_b = cells[cell][i]; ``capped`` holds (cell, seed)
    pairs whose arm-a run is capped."""
    n = len(next(iter(cells.values())))
    offsets = np.random.default_rng(7).normal(0.0, 50.0, n)
    rows = []
    for cell, diffs in cells.items():
        assert len(diffs) == n
        for i, (d, off) in enumerate(zip(diffs, offsets)):
            s = seed0 + i
            rows.append({"seed": s, "cell": cell, "arm": "a", "acc": off + d, "capped": (cell, s) in capped})
            rows.append({"seed": s, "cell": cell, "arm": "b", "acc": off, "capped": False})
    return pd.DataFrame(rows)


def part(cell: str, direction: str = "greater") -> Claim:
    return Claim(name=f"p_{cell}", sentence=f"A beats B in cell {cell}.", reads={"cell": cell}, statistic=DIFF,
                 direction=direction)


def status_of(diffs, direction: str = "greater") -> str:
    """The interval rule for greater/less, evaluated with SciPy (independently of hesslens)."""
    if len(diffs) < 2:
        return "not_decided"
    ci = sst.ttest_1samp(diffs, 0.0).confidence_interval(0.95)
    above, below = ci.low > 0, ci.high < 0
    if direction == "less":
        above, below = below, above
    return "supported" if above else "contradicted" if below else "inconclusive"


def test_planted_patterns_are_what_the_tests_say():
    assert status_of(POS) == "supported"
    assert status_of(NEG) == "contradicted"
    assert status_of(WIDE) == "inconclusive"
    # and the parts recover them
    df = planted({"x": POS, "y": NEG, "z": WIDE})
    assert [part(c).decide(df).status for c in "xyz"] == ["supported", "contradicted", "inconclusive"]


# --- AllOf / NotAll rules -------------------------------------------------------------------------------

@pytest.mark.parametrize("patterns,status", [
    (("POS",), "supported"),
    (("WIDE",), "inconclusive"),
    (("NEG",), "contradicted"),
    (("POS", "POS", "POS"), "supported"),
    (("POS", "NEG"), "contradicted"),
    (("POS", "WIDE"), "inconclusive"),
    (("WIDE", "NEG"), "contradicted"),
    (("WIDE", "WIDE"), "inconclusive"),
    (("POS", "WIDE", "NEG"), "contradicted"),
    (("NEG", "NEG"), "contradicted"),
])
def test_all_of(patterns, status):
    cells = {f"c{i}": PATTERNS[p] for i, p in enumerate(patterns)}
    df = planted(cells)
    v = AllOf("all", "A beats B everywhere.", tuple(part(c) for c in cells)).decide(df)
    assert v.status == status
    assert v.claim == "all"


@pytest.mark.parametrize("patterns,status", [
    (("POS",), "contradicted"),
    (("WIDE",), "inconclusive"),
    (("NEG",), "supported"),
    (("POS", "POS", "POS"), "contradicted"),
    (("POS", "NEG"), "supported"),
    (("POS", "WIDE"), "inconclusive"),
    (("WIDE", "NEG"), "supported"),
    (("WIDE", "WIDE"), "inconclusive"),
    (("NEG", "NEG"), "supported"),
])
def test_not_all(patterns, status):
    cells = {f"c{i}": PATTERNS[p] for i, p in enumerate(patterns)}
    df = planted(cells)
    v = NotAll("notall", "A does not consistently beat B.", tuple(part(c) for c in cells)).decide(df)
    assert v.status == status


NEGATE = {"supported": "contradicted", "contradicted": "supported", "inconclusive": "inconclusive"}


@pytest.mark.parametrize("patterns", list(itertools.product(PATTERNS, repeat=2)))
def test_not_all_is_the_negation_of_all_of(patterns):
    cells = {f"c{i}": PATTERNS[p] for i, p in enumerate(patterns)}
    df = planted(cells)
    parts = tuple(part(c) for c in cells)
    a = AllOf("a", "all.", parts).decide(df).status
    n = NotAll("n", "not all.", parts).decide(df).status
    assert n == NEGATE[a]


def test_direction_of_each_part_is_its_own():
    # The same NEG cell supports a "less" part: AllOf of a greater part on POS and a less part on NEG holds.
    df = planted({"x": POS, "y": NEG})
    assert AllOf("all", "s.", (part("x"), part("y", "less"))).decide(df).status == "supported"
    assert NotAll("n", "s.", (part("x"), part("y", "less"))).decide(df).status == "contradicted"


def test_composite_verdict_fields():
    df = planted({"x": POS, "y": POS})
    df = df[~((df.cell == "y") & (df.seed == 5))]   # cell y has one seed fewer
    c = AllOf("all", "A beats B in x and y.", [part("x"), part("y")])
    assert isinstance(c.parts, tuple)                 # a list of parts is kept as a tuple
    v = c.decide(df)
    assert v.status == "supported"
    assert v.n_seeds == len(POS) - 1                  # the smallest number of seeds among the parts
    assert math.isnan(v.effect) and not v.interval.defined
    assert "p_x" in v.rule and "p_y" in v.rule and "every part is supported" in v.rule
    assert v.notes == ("p_x: supported, p_y: supported",)
    assert "n/a" in v.line() and v.line().startswith("all: SUPPORTED")
    assert "any part is contradicted" in NotAll("n", "s.", [part("x")]).rule


# --- not decided ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", [AllOf, NotAll])
def test_smoke_makes_the_composite_not_decided(kind):
    df = planted({"x": POS, "y": NEG})
    c = kind("c", "s.", (part("x"), part("y")))
    assert c.decide(df).status in ("supported", "contradicted")     # decisive without smoke
    v = c.decide(df, smoke=True)
    assert v.status == "not_decided"
    assert any("smoke" in note for note in v.notes)


@pytest.mark.parametrize("kind", [AllOf, NotAll])
def test_one_seed_makes_the_composite_not_decided(kind):
    df = planted({"x": [1.0], "y": [-1.0]})
    v = kind("c", "s.", (part("x"), part("y"))).decide(df)
    assert v.status == "not_decided"
    assert part("x").decide(df).notes[0] in v.notes     # the part's own reason
    assert "1 seed" in v.notes[0]


@pytest.mark.parametrize("kind", [AllOf, NotAll])
def test_capped_part_makes_the_composite_not_decided(kind):
    # Cell x alone would decide both composites (AllOf contradicted, NotAll supported), but the capped
    # run in cell y makes that part not decided, and so the composite.
    df = planted({"x": NEG, "y": POS}, capped={("y", 2)})
    p_y = part("y").decide(df)
    assert p_y.status == "not_decided"
    v = kind("c", "s.", (part("x"), part("y"))).decide(df)
    assert v.status == "not_decided"
    assert v.notes == (p_y.notes[0],)
    assert "capped" in v.notes[0] and "[2]" in v.notes[0]


def test_capped_run_in_another_cell_does_not_matter():
    df = planted({"x": POS, "y": POS, "z": WIDE}, capped={("z", 1)})
    assert AllOf("c", "s.", (part("x"), part("y"))).decide(df).status == "supported"


def test_incomplete_part_makes_the_composite_not_decided():
    df = planted({"x": NEG, "y": POS})
    df = df[~((df.cell == "y") & (df.arm == "b") & (df.seed == 3))]
    v = AllOf("c", "s.", (part("x"), part("y"))).decide(df)
    assert v.status == "not_decided"
    assert "incomplete" in v.notes[0] and "unpaired" in v.notes[0]


# --- nesting ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("x,y,z,inner,outer", [
    ("POS", "NEG", "POS", "supported", "supported"),
    ("POS", "NEG", "NEG", "supported", "contradicted"),
    ("POS", "NEG", "WIDE", "supported", "inconclusive"),
    ("POS", "POS", "POS", "contradicted", "contradicted"),
    ("POS", "WIDE", "POS", "inconclusive", "inconclusive"),
])
def test_composites_nest(x, y, z, inner, outer):
    df = planted({"x": PATTERNS[x], "y": PATTERNS[y], "z": PATTERNS[z]})
    inner_c = NotAll("inner", "A does not always beat B in x and y.", (part("x"), part("y")))
    outer_c = AllOf("outer", "…and A beats B in z.", (inner_c, part("z")))
    assert inner_c.decide(df).status == inner
    v = outer_c.decide(df)
    assert v.status == outer
    assert f"inner: {inner}" in v.notes[0]


def test_nested_not_decided_carries_the_reason_up():
    df = planted({"x": POS, "y": NEG, "z": NEG}, capped={("x", 4)})
    outer = AllOf("outer", "s.", (NotAll("inner", "s.", (part("x"), part("y"))), part("z")))
    v = outer.decide(df)
    assert v.status == "not_decided"
    assert len(v.notes) == 1 and "capped" in v.notes[0] and "[4]" in v.notes[0]
    nested = NotAll("top", "s.", (outer,))
    assert nested.decide(df).status == "not_decided"
    assert nested.decide(df).notes == v.notes


# --- construction -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", [AllOf, NotAll])
@pytest.mark.parametrize("name,sentence,parts,match", [
    ("c", "s.", (), "at least one part"),
    ("c", "s.", ("p_x",), "parts must be claims"),
    ("c", "s.", (None,), "parts must be claims"),
    ("", "s.", None, "non-empty name"),
    ("  ", "s.", None, "non-empty name"),
    ("c", "", None, "non-empty name and sentence"),
    (None, "s.", None, "non-empty name"),
])
def test_construction_errors(kind, name, sentence, parts, match):
    if parts is None:
        parts = (part("x"),)
    with pytest.raises(InvalidInputError, match=match):
        kind(name, sentence, parts)


def test_a_composite_is_a_valid_part():
    inner = AllOf("inner", "s.", (part("x"),))
    outer = NotAll("outer", "s.", (inner, part("y")))
    assert outer.parts == (inner, part("y"))
    with pytest.raises(InvalidInputError, match="parts must be claims"):
        AllOf("c", "s.", (part("x"), DIFF))


# --- decide_safely -----------------------------------------------------------------------------------------

def test_decide_safely_passes_complete_runs_through():
    df = planted({"x": POS})
    assert decide_safely(part("x"), df) == part("x").decide(df)
    smoke = decide_safely(part("x"), df, smoke=True)
    assert smoke.status == "not_decided" and "smoke" in smoke.notes[0]


def test_decide_safely_missing_arm_is_not_decided_with_a_note():
    df = planted({"x": POS})
    c = Claim("missing", "A beats C.", {"cell": "x"}, paired_difference("acc", {"arm": "a"}, {"arm": "c"}), "greater")
    with pytest.raises(InvalidInputError):
        c.decide(df)
    v = decide_safely(c, df)
    assert v.status == "not_decided" and v.claim == "missing" and v.n_seeds == 0
    assert math.isnan(v.effect) and not v.interval.defined
    assert v.rule == c.rule
    assert len(v.notes) == 1 and "incomplete" in v.notes[0] and "matches no runs" in v.notes[0]


def test_decide_safely_unpaired_arm_names_the_seed():
    df = planted({"x": POS})
    df = df[~((df.arm == "b") & (df.seed == 2))]
    v = decide_safely(part("x"), df)
    assert v.status == "not_decided"
    assert "unpaired" in v.notes[0] and "'seed': 2" in v.notes[0]


def test_decide_safely_unknown_column():
    df = planted({"x": POS}).drop(columns="cell")
    v = decide_safely(part("x"), df)
    assert v.status == "not_decided" and "unknown column" in v.notes[0]


def test_decide_safely_does_not_hide_other_errors():
    def broken(df):
        raise ValueError("a bug in the statistic")
    c = Claim("b", "s.", "all runs", broken, "greater")
    with pytest.raises(ValueError, match="a bug"):
        decide_safely(c, planted({"x": POS}))


# --- verdict_table ------------------------------------------------------------------------------------------

def _halves(diffs):
    return list(diffs[0::2]), list(diffs[1::2])


def test_verdict_table_rows_and_columns():
    df = planted({"x": POS, "y": NEG, "z": WIDE})
    plain = part("x")
    inner = NotAll("inner", "A does not always beat B in x and y.", (part("x"), part("y")))
    top = AllOf("all", "…and in z.", (inner, part("z")))
    t = verdict_table([plain, top], df)
    assert list(t.columns) == list(VERDICT_COLUMNS)
    assert set(VERDICT_COLUMNS) == {"claim", "sentence", "verdict", "effect", "ci_low", "ci_high", "seeds",
                                    "subset_a", "subset_b", "rule", "notes"}
    assert list(t["claim"]) == ["p_x", "all", "↳ inner", "↳ ↳ p_x", "↳ ↳ p_y", "↳ p_z"]
    sentences = [plain.sentence, top.sentence, inner.sentence, part("x").sentence, part("y").sentence,
                 part("z").sentence]
    assert list(t["sentence"]) == sentences
    assert list(t["verdict"]) == ["supported", "inconclusive", "supported", "supported", "contradicted",
                                  "inconclusive"]
    # composite rows have no effect or interval; claim rows have the mean and SciPy's interval
    for i in (1, 2):
        assert math.isnan(t["effect"][i]) and math.isnan(t["ci_low"][i]) and math.isnan(t["ci_high"][i])
    for i, diffs in ((0, POS), (3, POS), (4, NEG), (5, WIDE)):
        ci = sst.ttest_1samp(diffs, 0.0).confidence_interval(0.95)
        assert t["effect"][i] == pytest.approx(np.mean(diffs), abs=1e-9)
        assert t["ci_low"][i] == pytest.approx(ci.low, abs=1e-9)
        assert t["ci_high"][i] == pytest.approx(ci.high, abs=1e-9)
        assert t["seeds"][i] == len(diffs)
        assert "paired difference of acc" in t["rule"][i]
    assert "parts: inner, p_z" in t["rule"][1]


def test_verdict_table_subsets_are_the_alternating_halves():
    df = planted({"x": POS, "y": NEG, "z": WIDE})
    t = verdict_table([part("x"), part("y"), part("z", "less")], df).set_index("claim")
    for name, diffs, direction in (("p_x", POS, "greater"), ("p_y", NEG, "greater"), ("p_z", WIDE, "less")):
        a, b = _halves(diffs)     # seeds 0, 2, 4 and 1, 3, 5
        assert t.loc[name, "subset_a"] == f"{status_of(a, direction)} (n = {len(a)})"
        assert t.loc[name, "subset_b"] == f"{status_of(b, direction)} (n = {len(b)})"
        assert "seed subsets" in t.loc[name, "notes"]
    assert t.loc["p_x", "subset_a"] == "supported (n = 3)"


def test_verdict_table_explicit_subsets():
    df = planted({"x": POS})
    t = verdict_table([part("x")], df, subsets=((0, 1, 2), (3, 4, 5)))
    assert t["subset_a"][0] == f"{status_of(POS[:3])} (n = 3)"
    assert t["subset_b"][0] == f"{status_of(POS[3:])} (n = 3)"


def test_verdict_table_one_seed_has_no_subsets():
    df = planted({"x": [1.0], "y": [2.0]})
    t = verdict_table([AllOf("all", "s.", (part("x"), part("y")))], df)
    assert list(t["claim"]) == ["all", "↳ p_x", "↳ p_y"]
    assert set(t["verdict"]) == {"not_decided"}
    assert set(t["subset_a"]) == {""} and set(t["subset_b"]) == {""}
    assert list(t["seeds"]) == [1, 1, 1]
    assert "1 seed" in t["notes"][1]


def test_verdict_table_flip_between_subsets_is_inconclusive():
    up = [10.0, 10.1, 9.9, 10.05, 9.95, 10.0]
    down = [-0.5, -0.6, -0.4, -0.55, -0.45, -0.5]
    flip = [v for pair in zip(up, down) for v in pair]    # even seeds up, odd seeds down
    steady = POS + POS
    # the planted design, checked with SciPy: all seeds support it, the two halves disagree
    assert status_of(flip) == "supported"
    assert _halves(flip) == (up, down)
    assert (status_of(up), status_of(down)) == ("supported", "contradicted")
    df = planted({"f": flip, "s": steady})
    assert part("f").decide(df).status == "supported"      # on all seeds alone it would be supported
    t = verdict_table([part("f"), part("s"), AllOf("all", "s.", (part("f"), part("s")))], df)
    rows = {r["claim"]: r for r in t.to_dict("records")}
    f = rows["p_f"]
    assert f["verdict"] == "inconclusive"
    assert f["subset_a"] == "supported (n = 6)" and f["subset_b"] == "contradicted (n = 6)"
    assert "flip" in f["notes"] and "rule 6" in f["notes"]
    assert f["effect"] == pytest.approx(np.mean(flip))
    assert rows["p_s"]["verdict"] == "supported"
    # The composite: all seeds supported (both parts supported), half a supported, half b contradicted
    # (p_f is contradicted there) — a flip, so inconclusive too.
    a = rows["all"]
    assert (a["subset_a"], a["subset_b"]) == ("supported (n = 6)", "contradicted (n = 6)")
    assert a["verdict"] == "inconclusive"
    assert [r["claim"] for r in t.to_dict("records")][-2:] == ["↳ p_f", "↳ p_s"]
    assert rows["↳ p_f"]["verdict"] == "inconclusive"


def test_verdict_table_incomplete_claim_is_a_row_not_an_error():
    df = planted({"x": POS})
    missing = Claim("missing", "A beats C.", "all runs", paired_difference("acc", {"arm": "a"}, {"arm": "c"}),
                    "greater")
    t = verdict_table([missing, part("x"), AllOf("all", "s.", (missing, part("x")))], df)
    rows = {r["claim"]: r for r in t.to_dict("records")}
    assert rows["missing"]["verdict"] == "not_decided"
    assert "incomplete" in rows["missing"]["notes"] and "matches no runs" in rows["missing"]["notes"]
    assert rows["missing"]["seeds"] == 0
    assert rows["p_x"]["verdict"] == "supported"
    assert rows["all"]["verdict"] == "not_decided" and "incomplete" in rows["all"]["notes"]
    assert rows["↳ missing"]["verdict"] == "not_decided"


def test_verdict_table_smoke_decides_nothing():
    df = planted({"x": POS, "y": NEG})
    t = verdict_table([part("x"), NotAll("n", "s.", (part("x"), part("y")))], df, smoke=True)
    assert len(t) == 4
    assert set(t["verdict"]) == {"not_decided"}
    assert all("smoke" in n for n in t["notes"])
    assert t["effect"][0] == pytest.approx(np.mean(POS))    # the statistic is still computed


def test_verdict_table_of_no_claims():
    t = verdict_table([], planted({"x": POS}))
    assert t.empty and list(t.columns) == list(VERDICT_COLUMNS)


def test_composite_row_follows_its_parts_final_verdicts():
    """Two parts flipping in opposite directions: each half is contradicted for the composite (so it
    never flips), yet both parts read inconclusive after their own subset check — the composite must
    not read supported above them."""
    up = [10.0, 10.1, 9.9, 10.05, 9.95, 10.0]
    down = [-0.5, -0.6, -0.4, -0.55, -0.45, -0.5]
    one = [v for pair in zip(up, down) for v in pair]  # even seeds up, odd seeds down
    two = [v for pair in zip(down, up) for v in pair]  # the reverse
    assert status_of(one) == status_of(two) == "supported"
    df = planted({"x": one, "y": two})
    composite = AllOf("both", "s.", (part("x"), part("y")))
    assert composite.decide(df).status == "supported"  # all seeds, before the subset checks
    rows = {r["claim"]: r for r in verdict_table([composite], df).to_dict("records")}
    assert rows["↳ p_x"]["verdict"] == rows["↳ p_y"]["verdict"] == "inconclusive"
    both = rows["both"]
    assert (both["subset_a"], both["subset_b"]) == ("contradicted (n = 6)", "contradicted (n = 6)")
    assert both["verdict"] == "inconclusive" and "parts' final verdicts" in both["notes"]
