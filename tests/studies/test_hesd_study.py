"""The ``hesd-type`` study: the smoke preset end to end through the CLI, its measurements against
independent computations, and its declared claims on planted tables built from the ``full`` preset's own
configurations (every claim reads runs the preset trains; planted effects are supported, reversed ones
contradicted; a missing run leaves its claim undecided with the reason)."""

from __future__ import annotations

import math
import types

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import hesslens as hl
from hesslens.cli import cli as main
from hesslens.errors import InvalidInputError
from hesslens.studies import Store, config_dict, get, make_config
from hesslens.studies.hesd import FULL, SMOKE, HesdConfig, analyze, declare, grids
from hesslens.studies.hesd.claims import manipulation
from hesslens.studies.hesd.figures import FIGURES
from hesslens.studies.hesd.measure import collapse
from hesslens.studies.stats import kendall_tau
from hesslens.studies.verdicts import VERDICT_COLUMNS


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("hesd") / "out"
    runner = CliRunner()
    result = runner.invoke(main, ["study", "hesd-type", "--preset", "smoke", "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = runner.invoke(main, ["study", "hesd-type", "--report", "--out", str(out)], catch_exceptions=False)
    assert report.exit_code == 0, report.output
    return out


def _artifacts(out, row) -> dict:
    with Store(out / "study.sqlite") as store:
        return store.artifacts("hesd-type", row["run_key"], int(row["seed"]))


def test_smoke_runs_every_grid_and_records_the_type_of_its_own_density(smoke):
    df = pd.read_csv(smoke / "results.csv", keep_default_na=False, na_values=[""])
    assert len(df) == len(get("hesd-type").configs("smoke")) and df["smoke"].all()
    assert {g for e in df["experiment"] for g in e.split("+")} == set(grids(SMOKE))
    assert set(df["hesd_type"]) <= {"MP", "MN", "QS"} and np.isfinite(df["balance"]).all()
    assert not df["capped"].any() and (df["stop_reason"] == "epochs").all()  # every run trains a fixed budget
    assert (df["epochs"] == df["max_epochs"]).all()
    for _, row in df.sample(4, random_state=0).iterrows():  # the record's type is hesd_type of the stored density
        d = _artifacts(smoke, row)["density"]
        density = hl.SpectralDensity(np.asarray(d["nodes"]), np.asarray(d["weights"]))
        t = hl.hesd_type(density, margin=SMOKE.margin)
        assert t.balance == pytest.approx(row["balance"], abs=1e-12)
        if row["experiment"] != "collapse":  # a tracked run's type also uses its peak as the QS reference
            assert t.kind == row["hesd_type"]
    shifted = df[df["shifts"]]
    assert len(shifted) == len(SMOKE.nets) * len(SMOKE.shift_optimizers) + len(SMOKE.collapse_nets) * len(
        SMOKE.collapse_runs)
    row = shifted.iloc[0]
    table = _artifacts(smoke, row)["shifts"]
    assert len(table) == len(SMOKE.shifts) + (row["dataset"] in dict(SMOKE.other_datasets))
    mp = table[table["hesd_type"] == "MP"]
    if len(mp) >= 2 and mp["kh"].nunique() > 1 and mp["accuracy"].nunique() > 1:
        assert row["tau_kh_acc_mp"] == pytest.approx(kendall_tau(mp["kh"], mp["accuracy"]))
    tracked = df[df["experiment"] == "collapse"].iloc[0]
    trajectory = _artifacts(smoke, tracked)["trajectory"]
    assert len(trajectory) == SMOKE.collapse_epochs // SMOKE.collapse_every + 1
    assert tracked["peak_scale"] == pytest.approx(trajectory["scale"].max())


def test_smoke_report_decides_nothing_but_computes_every_effect(smoke):
    claims = pd.read_csv(smoke / "claims.csv")
    assert list(claims.columns) == list(VERDICT_COLUMNS)
    assert set(claims["verdict"]) == {"not_decided"}  # study standard 7
    top = claims[~claims["claim"].str.startswith("↳")]
    assert list(top["claim"]) == [c.name for c in declare(SMOKE)]
    singles = claims[claims["claim"].isin(["2c", "R"]) | claims["claim"].str.startswith("↳")]
    # every statistic ran, except claim 5's when no net has three non-MP shifts (then it says why)
    ran = singles[~singles["claim"].str.contains("5 ")]
    assert np.isfinite(ran["effect"]).all(), ran[["claim", "notes"]].to_string()
    md = (smoke / "report.md").read_text()
    assert md.index("SMOKE RUNS ONLY") < md.index("## The papers' claims") < md.index("## Figures")
    assert "SUPPORTED" not in md and "CONTRADICTED" not in md
    for name, _ in FIGURES.values():
        assert (smoke / "figures" / name).stat().st_size > 1000, name
    again = analyze(pd.read_csv(smoke / "results.csv"))
    assert again.smoke and list(again.claims["verdict"]) == list(claims["verdict"])


# -- the full design on planted tables ------------------------------------------------------------------
def _planted(*, reverse: bool = False, seeds: int = 5) -> pd.DataFrame:
    """The full preset's configurations × seeds, with records in which every claim holds (or, with
    ``reverse``, fails the other way)."""
    rng = np.random.default_rng(0)
    s = -1.0 if reverse else 1.0
    rows = []
    for config in get("hesd-type").configs("full"):
        c = config_dict(config)
        manipulated = any(c[k] for k in ("clip_norm", "clip_value", "grad_noise")) or c["optimizer"] in (
            "adahessian", "signsgd")
        experiment = ("duration" if c["track_every"] and c["finetune"] else "collapse" if c["track_every"] else
                      "manipulated" if manipulated else
                      "finetune" if c["finetune"] else "ordinary")
        for seed in range(seeds):
            noise = rng.normal(0, 0.01)
            # MN from manipulation on tanh nets; ReLU nets stay (barely) MP, so the mean over the search nets is
            # still negative and claim R holds too
            balance = s * ((0.1 + abs(noise) if c["activation"] == "relu" else -0.8 + noise) if manipulated
                           else 0.8 + noise)
            rows.append({**c, "seed": seed, "status": "done", "experiment": experiment, "balance": balance,
                         "hesd_type": "MP" if balance > 0 else "MN", "decisive": True, "capped": False,
                         "negative_weight": 0.3, "test_acc": 0.8, "qs_log_ratio": -s + noise,
                         "tau_kh_acc_mp": -0.6 * s + noise, "tau_re_acc_mp": -0.6 * s + noise,
                         "tau_kh_acc_nonmp": (0.01 if not reverse else -0.9) + noise,
                         "tau_re_acc_nonmp": (0.01 if not reverse else -0.9) + noise,
                         "tau_mp_defined": c["shifts"], "tau_nonmp_defined": c["shifts"],
                         "qs_reached": not reverse, "qs_first_epoch": 1000.0, "peak_scale": 1.0, "final_scale": 1e-3,
                         "final_tracked_loss": 1e-6})
    return pd.DataFrame(rows)


def _verdicts(a, *, parts: bool = False) -> dict:
    c = a.claims if parts else a.claims[~a.claims["claim"].str.startswith("↳")]
    return dict(zip(c["claim"], c["verdict"]))


def test_every_claim_of_the_full_design_reads_runs_the_full_preset_trains():
    a = analyze(_planted())
    assert not a.smoke
    undecided = a.claims[a.claims["verdict"] == "not_decided"]
    assert undecided.empty, undecided[["claim", "notes"]].to_string()


def test_planted_effects_give_supported_and_reversed_ones_contradicted():
    assert set(_verdicts(analyze(_planted())).values()) == {"supported"}
    assert set(_verdicts(analyze(_planted(reverse=True))).values()) == {"contradicted"}


def test_a_missing_run_leaves_its_claims_undecided_with_the_reason():
    df = _planted()
    gone = (df["optimizer"] == "adamw") & (df["dataset"] == "digits") & (df["activation"] == "tanh") & (df["seed"] == 2)
    a = analyze(df[~gone])
    row = a.claims.set_index("claim").loc["↳ 1 adamw"]
    assert row["verdict"] == "not_decided" and "expected 11 runs per seed" in row["notes"]
    assert _verdicts(a)["2a"] == "supported"


def test_manipulation_filters_pick_exactly_their_runs():
    configs = pd.DataFrame([config_dict(c) for c in get("hesd-type").configs("full")])
    for name in FULL.manipulation_names:
        where = manipulation(FULL, name)
        hit = configs["track_every"].to_numpy() == 0  # the tracked fine-tunings of grid duration aside
        for k, v in where.items():
            hit &= configs[k].to_numpy() == v
        assert hit.sum() == 2 * len(FULL.search), name  # from scratch and fine-tuning, on every search net


def test_design_values_are_trained_by_the_grids():
    configs = [config_dict(c) for c in get("hesd-type").configs("full")]
    assert len(get("hesd-type").seeds_for("full")) >= 5
    assert {c["dataset"] for c in configs} >= {"mnist1d", "digits", "teacher_cls_d20_c5_noise0.0", "breast_cancer"}
    assert {c["arch"] for c in configs} == {"mlp", "vgg1d", "vgg2d"}
    ordinary = [c for c in configs if not (c["finetune"] or c["track_every"] or c["clip_norm"] or c["clip_value"]
                                           or c["grad_noise"] or c["optimizer"] in ("adahessian", "signsgd"))]
    assert {c["optimizer"] for c in ordinary} == {"sgd", "momentum", "adam", "adamw", "rmsprop"}
    assert {c["augment"] for c in ordinary} > {""}
    assert all(c["epochs"] > 0 and c["epochs"] == c["max_epochs"] for c in configs)  # fixed budgets, none capped
    tuned = [c for c in configs if c["finetune"] and not c["track_every"]]
    assert tuned and all(c["epochs"] == FULL.finetune_epochs and c["pretrain_epochs"] > 0 for c in tuned)
    names = {n for n, _ in FULL.manipulations}
    assert {"adahessian", "sign-SGD", "clip_value 0.001"} <= names and sum("clip_norm" in n for n in names) >= 3


# -- configuration and measurement pieces ----------------------------------------------------------------
@pytest.mark.parametrize("values,field", [
    ({"augment": "blur"}, "augment"),
    ({"finetune": "permute"}, "epochs"),
    ({"pretrain_epochs": 3}, "pretrain_epochs"),
    ({"clip_norm": -1.0}, "clip_norm"),
    ({"activation": "swish"}, "activation"),
    ({"optimizer": "lbfgs"}, "optimizer"),
])
def test_invalid_configs_name_the_field(values, field):
    with pytest.raises(InvalidInputError, match=rf"\b{field}\b"):
        make_config(HesdConfig, values)


def test_the_pretraining_of_a_finetuning_run_is_plain_sgd_from_scratch():
    c = make_config(HesdConfig, {"finetune": "permute", "epochs": 4, "pretrain_epochs": 9, "optimizer": "adam",
                                 "lr": 1e-3, "clip_norm": 0.1})
    p = c.pretraining()
    assert (p.optimizer, p.lr, p.clip_norm, p.finetune, p.epochs) == ("sgd", 0.1, 0.0, "", 9)
    assert c.train_options()["epochs"] == 4 and c.train_options()["until_train_acc"] is None
    assert c.train_options()["clip_norm"] == 0.1 and c.model_options() == {"activation": "relu"}


def test_collapse_finds_the_relative_threshold_after_the_peak():
    scales = [0.5, 2.0, 1.0, 0.03, 0.015, 0.04]  # peak 2.0 at epoch 10; 0.015 < 0.01 × 2.0? no: 0.02 is the line
    scales[4] = 0.01  # now below 0.01 × 2.0 = 0.02
    rows = [{"epoch": 10 * i, "analysis_loss": 1.0 / (i + 1)} for i in range(len(scales))]
    densities = [(i, hl.SpectralDensity(np.array([[-0.1 * s, s]]), np.array([[0.5, 0.5]]))) for i, s in
                 enumerate(scales)]
    record, table = collapse(types.SimpleNamespace(rows=rows, densities=densities), qs_relative=0.01)
    assert record["peak_scale"] == 2.0 and record["peak_epoch"] == 10
    assert record["min_scale_after_peak"] == 0.01
    assert record["qs_log_ratio"] == pytest.approx(math.log10(0.01 / 0.02))
    assert record["qs_reached"] and record["qs_first_epoch"] == 40
    assert list(table["scale"]) == scales
    _, flat = collapse(types.SimpleNamespace(rows=rows[:3], densities=densities[:3]), qs_relative=0.01)
    assert len(flat) == 3
