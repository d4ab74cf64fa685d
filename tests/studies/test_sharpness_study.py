"""The ``sharpness`` study: smoke preset end to end through the CLI, and the claim rules on planted tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy.stats import kendalltau

from hesslens.cli import cli as main
from hesslens.errors import InvalidInputError
from hesslens.studies import get
from hesslens.studies.sharpness import CLAIMS, VERDICTS, SharpnessConfig, analyze

REQUIRED = ["lr", "batch_size", "optimizer", "rho", "dropout", "batchnorm", "lambda_max", "train_acc", "test_acc",
            "epochs", "experiment", "reached_target", "diverged", "wall_seconds", "full_batch"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("sharpness") / "out"
    runner = CliRunner()
    result = runner.invoke(main, ["study", "sharpness", "--preset", "smoke", "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = runner.invoke(main, ["study", "sharpness", "--report", "--out", str(out)], catch_exceptions=False)
    assert report.exit_code == 0, report.output
    return out


def test_smoke_results_table(smoke):
    df = pd.read_csv(smoke / "results.csv")
    configs = get("sharpness").configs("smoke")
    assert len(df) == len(configs) and df["run_key"].is_unique
    assert (df["seed"] == 0).all()  # the smoke preset: one seed per configuration
    for col in REQUIRED:
        assert col in df.columns, col
    for col in ("lr", "batch_size", "rho", "dropout", "lambda_max", "train_acc", "test_acc", "epochs"):
        assert pd.api.types.is_numeric_dtype(df[col]), col
    assert set(df["experiment"]) == {"lr_bs", "ratio", "sam", "dropout", "batchnorm"}
    # Full batch: batch_size holds the training-set size and full_batch says so.
    gd = df[df["full_batch"]]
    assert len(gd) and (gd["batch_size"] == gd["n_train"]).all()
    assert (df.loc[~df["full_batch"], "batch_size"] < df.loc[~df["full_batch"], "n_train"]).all()
    assert np.isfinite(df["lambda_max"]).all() and (df["lambda_max"] > 0).all()
    # BatchNorm runs were interpolated: the maximum over the path is at least the endpoint.
    bn = df[df["batchnorm"]]
    assert len(bn) and (bn["lambda_max"] >= bn["lambda_max_endpoint"]).all()
    assert set(bn["sharpness_mode"]) == {"train"}


def test_report_lists_every_claim_with_a_verdict(smoke):
    md = (smoke / "report.md").read_text()
    analysis_md = (smoke / "analysis.md").read_text()
    for i in CLAIMS:
        assert any(f"Claim {i} — {v.upper()}" in md for v in VERDICTS), i
        assert any(f"**Claim {i} — {v}.**" in analysis_md for v in VERDICTS), i
    # The verdicts and τ tables head report.md and report.html, before the figures and the runs.
    assert md.index("## The paper's five claims") < md.index("## Kendall τ") < md.index("## Figures")
    page = (smoke / "report.html").read_text()
    assert "<h2>The paper&#x27;s five claims, as reproduced here</h2>" in page
    for name in ("claim1_lr_batch.png", "claim5_batchnorm.png", "lambda_vs_test.png", "eos_gd.png"):
        assert (smoke / "figures" / name).stat().st_size > 1000
    # The hook's verdicts are those of analyze() on the CSV.
    claims = pd.read_csv(smoke / "claims.csv")
    again = analyze(pd.read_csv(smoke / "results.csv"))
    assert list(claims["verdict"]) == list(again.claims["verdict"])
    assert set(claims["verdict"]) <= set(VERDICTS)


def test_kendall_tau_matches_scipy_on_the_csv(smoke):
    df = pd.read_csv(smoke / "results.csv")
    # A training run shared by two grids (same configuration apart from the grid label, epoch cap and
    # tracking; same epochs) counts once.
    same = [c for c in df.columns if c in SharpnessConfig.__dataclass_fields__
            and c not in ("experiment", "max_epochs", "track_every", "tol")] + ["epochs"]
    assert df.duplicated(subset=same).any()  # the smoke grids do share runs
    df = df.drop_duplicates(subset=same)
    # Runs that failed to train (final training accuracy < 0.5) are left out of the analysis.
    df = df[(df["train_acc"] >= 0.5) & ~df["diverged"]]
    tau = pd.read_csv(smoke / "kendall_tau.csv")
    mlp = df[df["arch"] == "mlp"]
    checked = 0
    for _, row in tau.iterrows():
        if row["scope"] == "all MLP runs":
            sub = mlp
        elif row["scope"] == "all runs":
            sub = df
        elif str(row["scope"]).startswith("MLP runs, batch size"):
            sub = mlp[mlp["batch_size"] == row["batch_size"]]
        else:
            sub = df[df["arch"] != "mlp"]
        assert row["runs"] == len(sub)
        if len(sub) >= 2 and sub["lambda_max"].nunique() > 1 and sub["test_acc"].nunique() > 1:
            expected = kendalltau(sub["lambda_max"], sub["test_acc"])
            assert row["tau"] == pytest.approx(expected.statistic, abs=1e-12)
            assert row["p_value"] == pytest.approx(expected.pvalue, abs=1e-12)
            checked += 1
        else:
            assert math.isnan(row["tau"])
    assert checked >= 2


# -- the decision rules on planted tables -----------------------------------------------------------
def _row(**kw):
    base = dict(status="done", diverged=False, arch="mlp", optimizer="sgd", rho=0.0, dropout=0.0, batchnorm=False,
                full_batch=False, reached_target=True, n_test=1250, train_acc=0.99, epochs=10, run_key="k")
    base.update(kw)
    return base


def _planted(claim1_gd_gain: float = 0.0, ratio_spread: float = 0.0, bn_gain: float = 0.05,
             dropout_high_acc: float = 0.50) -> pd.DataFrame:
    rows = []
    for bs, gain in ((32, 0.10), (128, 0.05), (3750, claim1_gd_gain)):
        for lr, lam, acc in ((0.1, 20.0, 0.60), (0.4, 5.0, 0.60 + gain)):
            rows.append(_row(experiment="lr_bs", lr=lr, batch_size=bs, lambda_max=lam + bs / 1e4, test_acc=acc,
                             full_batch=bs == 3750))
    for i, bs in enumerate((32, 64, 128)):
        rows.append(_row(experiment="ratio", lr=0.1 * bs / 128, batch_size=bs, lambda_max=10.0 / (i + 1),
                         test_acc=0.62 + ratio_spread * i / 2))
    for bs, gain in ((32, 0.08), (512, 0.0)):
        rows.append(_row(experiment="sam", lr=0.2, batch_size=bs, lambda_max=10.0, test_acc=0.6))
        for rho in (0.05, 0.1):
            rows.append(_row(experiment="sam", optimizer="sam", rho=rho, lr=0.2, batch_size=bs, lambda_max=3.0,
                             test_acc=0.6 + gain))
    for p, lam, acc in ((0.0, 10.0, 0.62), (0.2, 8.0, 0.63), (0.6, 2.0, dropout_high_acc), (0.7, 1.0, 0.45)):
        rows.append(_row(experiment="dropout", lr=0.1, batch_size=32, dropout=p, lambda_max=lam, test_acc=acc))
    for lr, lam_off, lam_on in ((0.1, 5.0, 8.0), (0.4, 3.0, 2.0)):
        rows.append(_row(experiment="batchnorm", arch="vgg1d", lr=lr, batch_size=128, lambda_max=lam_off,
                         test_acc=0.90))
        rows.append(_row(experiment="batchnorm", arch="vgg1d", lr=lr, batch_size=128, batchnorm=True,
                         lambda_max=lam_on, test_acc=0.90 + bn_gain))
    return pd.DataFrame(rows)


def test_rules_on_a_table_where_every_claim_holds():
    a = analyze(_planted())
    assert list(a.claims["verdict"]) == ["reproduced"] * 5, a.claims["evidence"].tolist()


def test_rules_reject_each_claim_when_its_evidence_is_removed():
    verdicts = lambda df: dict(zip(analyze(df).claims["claim"], analyze(df).claims["verdict"]))  # noqa: E731
    assert verdicts(_planted(claim1_gd_gain=0.10))[1] == "not reproduced"  # the lr benefit persists under GD
    assert verdicts(_planted(ratio_spread=0.10))[2] == "not reproduced"  # generalization changes along η/B
    assert verdicts(_planted(bn_gain=0.0))[5] == "not reproduced"  # BatchNorm does not help
    assert verdicts(_planted(dropout_high_acc=0.62))[4] == "not reproduced"  # p = 0.6 does not hurt
    # Claim 1 (a): λ_max rising with η at one batch size breaks it.
    df = _planted()
    df.loc[(df["experiment"] == "lr_bs") & (df["batch_size"] == 128) & (df["lr"] == 0.4), "lambda_max"] = 50.0
    assert verdicts(df)[1] == "not reproduced"
    # A run that collapsed (training accuracy near chance at the cap) is left out, like a diverged one.
    df = _planted()
    bad = _row(experiment="lr_bs", lr=0.8, batch_size=32, lambda_max=3.0, test_acc=0.12, train_acc=0.16,
               reached_target=False)
    with_bad = pd.concat([df, pd.DataFrame([bad])], ignore_index=True)
    a = analyze(with_bad)
    assert a.verdicts[1] == "reproduced" and list(a.excluded["lr"]) == [0.8]
    assert analyze(with_bad, min_train_acc=0.0).verdicts[1] == "not reproduced"
    # Too little data: inconclusive, not a verdict either way.
    assert verdicts(_planted()[lambda d: d["experiment"] != "sam"])[3] == "inconclusive"
    empty = analyze(_planted().iloc[:0])
    assert list(empty.claims["verdict"]) == ["inconclusive"] * 5


def test_bad_configurations_fail_before_running():
    with pytest.raises(InvalidInputError, match="rho"):
        SharpnessConfig(optimizer="sgd", rho=0.1)
    with pytest.raises(InvalidInputError, match="batchnorm"):
        SharpnessConfig(arch="mlp", batchnorm=True)
    with pytest.raises(InvalidInputError):
        get("sharpness").configs({"experiment": "lr_bs", "lr": -1.0})
