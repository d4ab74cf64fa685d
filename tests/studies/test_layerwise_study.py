"""The ``layerwise`` study: the smoke preset end to end through the CLI, its features against the tracked
tables and the trained model, its learning statistics against independent computations, and its claims
on planted tables built from the ``full`` preset's own configurations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from hesslens.cli import cli as main
from hesslens.errors import InvalidInputError
from hesslens.studies import Store, config_dict, get
from hesslens.studies.layerwise import FULL, SMOKE, analyze, declare
from hesslens.studies.layerwise.design import CHEAP, SPECTRAL
from hesslens.studies.layerwise.figures import FIGURES
from hesslens.studies.layerwise.learn import canonical_correlation, cv_accuracy
from hesslens.studies.layerwise.report import stump_rules
from hesslens.studies.verdicts import VERDICT_COLUMNS


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("layerwise") / "out"
    runner = CliRunner()
    result = runner.invoke(main, ["study", "layerwise", "--preset", "smoke", "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = runner.invoke(main, ["study", "layerwise", "--report", "--out", str(out)], catch_exceptions=False)
    assert report.exit_code == 0, report.output
    return out


def test_smoke_runs_record_the_final_checkpoints_features(smoke):
    df = pd.read_csv(smoke / "results.csv")
    assert len(df) == len(SMOKE.datasets) * len(SMOKE.regimes) and df["smoke"].all()
    assert set(df["regime"]) == set(SMOKE.regimes) and set(df["task"]) == {"classification", "regression"}
    for col in (*SPECTRAL, *CHEAP, "score_gap", "test_score"):
        assert col in df.columns, col
    row = df[df["regime"] == "balanced"].iloc[0]  # (a width-2 ReLU net can die: its blocks' metrics are NaN)
    with Store(smoke / "study.sqlite") as store:
        long = store.artifacts("layerwise", row["run_key"], int(row["seed"]))["layerwise"]
    assert long["checkpoint"].nunique() == SMOKE.checkpoints + 1 == row["checkpoints"]
    last = long[long["checkpoint"] == long["checkpoint"].max()].reset_index(drop=True)
    assert row["log_lambda_max_out"] == pytest.approx(math.log10(last.loc[2, "lambda_max"]))
    assert row["effective_rank_fraction_in"] == pytest.approx(last.loc[0, "effective_rank"] / last.loc[0, "n_params"])
    assert row["score_gap"] == pytest.approx(row["train_score"] - row["test_score"])
    relu = df[df["activation"] == "relu"]
    masses = relu[[f"neg_mass_{p}" for p in ("in", "hidden", "out")]].to_numpy(float)
    # ReLU blocks are PSD (H_ii = G_ii): round-off-level negative mass at most (NaN: a dead block)
    assert relu["p_negmass_falls"].isna().all() and (masses[np.isfinite(masses)] < 1e-6).all()


def test_smoke_report_decides_nothing(smoke):
    claims = pd.read_csv(smoke / "claims.csv")
    assert list(claims.columns) == list(VERDICT_COLUMNS)
    assert set(claims["verdict"]) == {"not_decided"}
    assert list(claims["claim"]) == [c.name for c in declare(SMOKE)]
    assert np.isfinite(claims["effect"]).all(), claims[["claim", "notes"]]
    md = (smoke / "report.md").read_text()
    assert md.index("SMOKE RUNS ONLY") < md.index("## The paper's claims")
    for name, _ in FIGURES.values():
        assert (smoke / "figures" / name).stat().st_size > 1000, name


# -- learning statistics ------------------------------------------------------------------------------
def _separable(seed: int = 0, n_datasets: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for d in range(n_datasets):
        for j, regime in enumerate(("under", "balanced", "over")):
            rows.append({"dataset": f"d{d}", "regime": regime, "signal": j + rng.normal(0, 0.05),
                         "noise": rng.normal(), "seed": 0})
    return pd.DataFrame(rows)


def test_cv_accuracy_is_high_on_a_signal_and_chance_like_on_noise():
    df = _separable()
    assert cv_accuracy(df, ["signal"], folds=4) == 1.0
    assert cv_accuracy(df, ["noise"], folds=4) < 0.6
    with pytest.raises(InvalidInputError, match=r"group\(s\) for 20 folds"):
        cv_accuracy(df, ["signal"], folds=20)


def test_canonical_correlation_of_one_pair_is_the_absolute_pearson_correlation():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 1))
    y = -0.7 * x + rng.normal(size=(60, 1))
    assert canonical_correlation(x, y) == pytest.approx(abs(np.corrcoef(x[:, 0], y[:, 0])[0, 1]), abs=1e-6)


def test_stump_rules_find_the_planted_feature_and_threshold():
    df = _separable().assign(**{c: 0.0 for c in SPECTRAL})
    df["log_lambda_max_out"] = df["signal"]  # over ≈ 2, the others ≈ 0 and 1
    rules = stump_rules(df, folds=4).set_index("regime")
    assert rules.loc["over", "feature"] == "log_lambda_max_out" and rules.loc["over", "direction"] == ">"
    assert 1.0 < rules.loc["over", "threshold"] < 2.0 and rules.loc["over", "cv_accuracy"] == 1.0
    assert rules.loc["under", "direction"] == "<" and rules.loc["under", "threshold"] < 1.0


# -- the full design on planted tables ------------------------------------------------------------------
def _planted(*, reverse: bool = False, seeds: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    s = -1.0 if reverse else 1.0
    rows = []
    for config in get("layerwise").configs("full"):
        c = config_dict(config)
        level = {"under": 0.0, "balanced": 1.0, "over": 2.0}[c["regime"]]
        for seed in range(seeds):
            spectral = {f: rng.normal() for f in SPECTRAL}
            if not reverse:  # the regime shows in the spectra and the gap follows it; the cheap features are noise
                spectral["log_lambda_max_out"] = level + rng.normal(0, 0.1)
                spectral["effective_rank_fraction_hidden"] = -level + rng.normal(0, 0.1)
            cheap = {f: rng.normal() for f in CHEAP}
            if reverse:  # the cheap features know the regime, the spectra do not
                cheap["log_params_per_sample"] = level + rng.normal(0, 0.1)
            gap = (level if not reverse else 0.0) + rng.normal(0, 0.1)
            holds = 1.0 if not reverse else 0.0
            rows.append({**c, "seed": seed, "status": "done", **spectral, **cheap, "score_gap": gap,
                         "test_score": 1 - gap + rng.normal(0, 0.1), "task": "classification",
                         "p_output_sharpest": holds, "p_sharpness_peaks": holds, "p_erank_falls": holds,
                         "p_negmass_falls": math.nan if c["activation"] == "relu" else holds})
    return pd.DataFrame(rows)


def _verdicts(a) -> dict:
    return dict(zip(a.claims["claim"], a.claims["verdict"]))


def test_planted_effects_give_supported_and_reversed_ones_contradicted():
    assert set(_verdicts(analyze(_planted())).values()) == {"supported"}
    reversed_ = _verdicts(analyze(_planted(reverse=True)))
    # spectra of pure noise: chance accuracy (1b) and no relation (3) sit at or below their references, which
    # is inconclusive or contradicted; the others are reversed outright
    chance_like = ("1b", "3")
    assert {k: v for k, v in reversed_.items() if k not in chance_like} == {
        k: "contradicted" for k in reversed_ if k not in chance_like}
    assert {reversed_[k] for k in chance_like} <= {"contradicted", "inconclusive"}


def test_the_design_names_the_features_the_analysis_computes():
    from hesslens.analysis import layer_features
    from hesslens.studies.layerwise import design

    assert design.POSITIONS == layer_features.POSITIONS
    assert design.FEATURES_PER_BLOCK == layer_features.FEATURES_PER_BLOCK


def test_design_is_111_runs_of_37_datasets_and_3_regimes_per_seed():
    configs = [config_dict(c) for c in get("layerwise").configs("full")]
    assert len(configs) == 111 and len({c["dataset"] for c in configs}) == 37
    assert {c["regime"] for c in configs} == {"under", "balanced", "over"}
    assert {c["activation"] for c in configs} == {"relu", "tanh", "gelu"}
    from hesslens import datasets

    assert {datasets.load(d, seed=0).info.task for d in FULL.datasets} == {"classification", "regression"}
    assert len(get("layerwise").seeds_for("full")) >= 5
