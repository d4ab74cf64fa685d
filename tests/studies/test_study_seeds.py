"""Replicates: seeds as an axis of every study — declaration, --seeds N and --seeds 3,4,5, resume per
(configuration, seed), the seed column of results.csv, status per seed, and old databases."""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from hesslens.errors import InvalidInputError
from hesslens.studies import Store, Study, get, param, parse_seeds, run_key, run_study, status
from hesslens.studies.cli import study as study_cli

from _toy_study import STUDY, ToyConfig, log_lines

TOY_SPEC = "_toy_study:STUDY"


def invoke(*args):
    return CliRunner().invoke(study_cli, [str(a) for a in args], catch_exceptions=False)


def executions(log) -> Counter:
    return Counter(k for k, _, _ in log_lines(log))


# -- declaration -----------------------------------------------------------------------------------
def test_seed_counts_are_validated_where_declared():
    for bad, needle in ((0, "positive integer, got 0"), (-2, "got -2"), ("5", "got '5'"), (True, "got True"),
                        ({"full": 0}, "seeds of preset 'full'"), ({1: 5}, "got key 1")):
        with pytest.raises(InvalidInputError, match=needle):
            replace(STUDY, seeds=bad)


def test_seeds_per_preset_and_overrides():
    study = replace(STUDY, seeds={"smoke": 1, "full": 5})
    assert study.seeds_for("smoke") == (0,) and study.seeds_for("full") == (0, 1, 2, 3, 4)
    assert study.seeds_for("custom") == (0,)  # a preset the mapping does not name: one seed
    assert replace(STUDY, seeds=3).seeds_for("anything") == (0, 1, 2)
    assert study.seeds_for("full", 2) == (0, 1) and study.seeds_for("full", "3,4,5") == (3, 4, 5)
    assert study.seeds_for("full", [7]) == (7,) and parse_seeds("7,") == (7,) and parse_seeds(" 2 ") == (0, 1)


@pytest.mark.parametrize("bad, needle", [
    ("0", "positive integer"), ("many", "give a number of seeds"), ("3,x", "'x' is not an integer seed"),
    ("3,3", "seed 3 is listed more than once"), ("-1,2", "-1 is not a non-negative integer"), (",", "empty"),
    ([], "empty"), (2.5, "a count or a list"),
])
def test_bad_seed_overrides_are_named(bad, needle):
    with pytest.raises(InvalidInputError, match=needle):
        parse_seeds(bad)


def test_a_preset_setting_the_seed_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(InvalidInputError, match=r"sets 'seed', but the seed is an axis.*Study\(seeds=\.\.\.\)"):
        run_study(STUDY, {"x": [1.0], "seed": [0, 1]}, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


@dataclass(frozen=True)
class FewSeeds:
    x: float = 0.0
    seed: int = param(0, ge=0, le=3)


def test_a_seed_outside_the_fields_bounds_is_refused_before_anything_runs(tmp_path):
    study = Study(name="few", config=FewSeeds, run=lambda c: {"y": c.x}, presets={"smoke": {"x": 1.0}})
    with pytest.raises(InvalidInputError, match=r"seed 4: field 'seed' = 4: must be <= 3"):
        run_study(study, "smoke", tmp_path / "out", seeds=5, progress=False)
    assert not (tmp_path / "out").exists()


@dataclass(frozen=True)
class Unseeded:
    x: float = 1.0


def run_unseeded(config, ctx):
    return {"y": config.x * 10 + ctx.seed}


def test_a_config_without_a_seed_field_gets_the_seed_from_the_context(tmp_path):
    study = Study(name="unseeded", config=Unseeded, run=run_unseeded, presets={"smoke": {"x": [1.0, 2.0]}}, seeds=3)
    summary = run_study(study, "smoke", tmp_path, progress=False)
    assert summary.total == 6 and summary.ok and summary.seeds == (0, 1, 2)
    df = pd.read_csv(tmp_path / "results.csv")
    assert list(df.columns[:3]) == ["run_key", "seed", "x"]
    assert sorted(df["y"]) == [10, 11, 12, 20, 21, 22]
    assert df.groupby("x")["run_key"].nunique().tolist() == [1, 1]  # one key per configuration, all seeds


# -- running -----------------------------------------------------------------------------------------
def test_every_configuration_runs_once_per_seed_with_the_seed_filled_in(tmp_path):
    log, out = tmp_path / "log", tmp_path / "out"
    study = replace(STUDY, seeds={"smoke": 2})
    summary = run_study(study, {"x": [0.0, 1.0, 2.0], "log": str(log)}, out, progress=False)
    assert summary.total == 3 and summary.seeds == (0,)  # a grid given directly is preset "custom": 1 seed
    summary = run_study(replace(study, presets={"smoke": {"x": [0.0, 1.0, 2.0], "log": str(log)}}), "smoke", out,
                        progress=False)
    assert summary.total == 6 and summary.executed == 3 and summary.skipped == 3 and summary.ok
    assert "seeds 0,1: 6 runs" in str(summary)
    df = pd.read_csv(out / "results.csv")
    assert list(df.columns[:3]) == ["run_key", "seed", "x"] and "record_seed" not in df.columns
    assert sorted(zip(df["x"], df["seed"])) == [(x, s) for x in (0.0, 1.0, 2.0) for s in (0, 1)]
    assert (df["y"] == df["x"] ** 2 + df["seed"]).all()  # the run saw config.seed = its seed
    assert set(executions(log).values()) == {1} and len(executions(log)) == 6
    for x in (0.0, 1.0, 2.0):
        assert set(df.loc[df["x"] == x, "run_key"]) == {run_key(ToyConfig(x=x, log=str(log)))}


def test_adding_seeds_later_runs_only_the_new_ones(tmp_path):
    log, out = tmp_path / "log", tmp_path / "out"
    grid = {"x": [1.0, 2.0], "log": str(log)}
    first = run_study(STUDY, grid, out, seeds=2, progress=False)
    assert first.executed == 4
    more = run_study(STUDY, grid, out, seeds=4, progress=False)
    assert more.executed == 4 and more.skipped == 4 and more.total == 8
    assert len(executions(log)) == 8 and set(executions(log).values()) == {1}
    with Store(out / "study.sqlite") as store:
        assert sorted((r["seed"], r["config"]["seed"]) for r in store.runs("toy")) == \
            [(s, s) for s in (0, 0, 1, 1, 2, 2, 3, 3)]
        assert {s for _, s, *_ in store.series("toy")} == {0, 1, 2, 3}
    again = run_study(STUDY, grid, out, seeds="2,3", progress=False)
    assert again.executed == 0 and again.skipped == 4


def test_a_failed_seed_is_retried_alone(tmp_path):
    log, out = tmp_path / "log", tmp_path / "out"
    grid = {"x": 1.0, "mode": "fail_once", "log": str(log)}
    assert run_study(STUDY, grid, out, seeds=3, progress=False).counts["failed"] == 3  # every first attempt
    assert run_study(STUDY, grid, out, seeds=3, progress=False).ok
    with Store(out / "study.sqlite") as store:
        with store.transaction() as c:  # seed 1 alone is found unfinished
            c.execute("UPDATE runs SET status = 'failed' WHERE seed = 1")
    again = run_study(STUDY, grid, out, seeds=3, progress=False)
    assert again.executed == 1 and again.ok
    key = run_key(ToyConfig(x=1.0, mode="fail_once", log=str(log)))
    assert executions(log) == Counter({key: 2, f"{key}/1": 3, f"{key}/2": 2})


# -- the command line ----------------------------------------------------------------------------------
def test_cli_seeds_count_and_disjoint_list_then_status_per_seed(tmp_path):
    grid = tmp_path / "grid.toml"
    log = tmp_path / "log"
    grid.write_text(f'[mine]\nx = [1.0, 2.0]\nlog = "{log}"\n')
    first = invoke(TOY_SPEC, "--grid", grid, "--preset", "mine", "--seeds", "2", "--out", tmp_path)
    assert first.exit_code == 0, first.output
    assert "seeds 0,1: 4 runs (4 done); ran 4" in first.output
    second = invoke(TOY_SPEC, "--grid", grid, "--preset", "mine", "--seeds", "3,4,5", "--out", tmp_path)
    assert second.exit_code == 0 and "seeds 3-5: 6 runs (6 done); ran 6" in second.output, second.output
    df = pd.read_csv(tmp_path / "results.csv")
    assert len(df) == 10 and sorted(set(df["seed"])) == [0, 1, 3, 4, 5]
    assert set(executions(log).values()) == {1} and len(executions(log)) == 10
    shown = invoke(TOY_SPEC, "--status", "--out", tmp_path)
    assert shown.exit_code == 0
    for s in (0, 1, 3, 4, 5):
        assert f"  seed {s}: 2/2 finished (2 done)" in shown.output
    assert "  seed 2:" not in shown.output
    assert list(status(STUDY, tmp_path).runs.columns[:3]) == ["run_key", "seed", "status"]
    bad = invoke(TOY_SPEC, "--grid", grid, "--preset", "mine", "--seeds", "3,3", "--out", tmp_path)
    assert bad.exit_code == 2 and "seed 3 is listed more than once" in bad.output
    misuse = invoke(TOY_SPEC, "--status", "--seeds", "3", "--out", tmp_path)
    assert misuse.exit_code == 2 and "--seeds" in misuse.output


def test_cli_refuses_a_database_from_before_seeds_and_changes_nothing(tmp_path):
    ok = invoke(TOY_SPEC, "--out", tmp_path)
    assert ok.exit_code == 0, ok.output
    db, csv = tmp_path / "study.sqlite", tmp_path / "results.csv"
    conn = sqlite3.connect(db)
    conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    before = db.read_bytes(), csv.read_bytes()
    result = invoke(TOY_SPEC, "--out", tmp_path)
    assert result.exit_code == 2
    assert "schema version '2'" in result.output and "(configuration, seed)" in result.output
    assert (db.read_bytes(), csv.read_bytes()) == before


# -- the built-in studies and the example study -----------------------------------------------------------
DEMO_SPEC = f"{Path(__file__).resolve().parents[2] / 'examples' / 'demo_study.py'}:STUDY"


@pytest.mark.parametrize("name", [DEMO_SPEC, "sharpness"], ids=["demo-example", "sharpness"])
def test_built_in_and_example_full_presets_have_at_least_five_seeds(name):
    study = get(name)
    assert len(study.seeds_for("full")) >= 5
    assert "seed" not in str(study.preset_table())  # no preset sets the seed itself
    if name == "sharpness":
        assert study.seeds_for("smoke") == (0,)  # the smoke preset stays one run per configuration
