"""The catalogue agrees with the registry, and docs/datasets.md is exactly its rendering."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from hesslens import datasets
from hesslens.datasets import listing

from _datasets_fixtures import isolated_registry, no_network  # noqa: F401  (pytest fixtures)

DOC = Path(__file__).resolve().parents[2] / "docs" / "datasets.md"


def test_catalogue_rows_match_info():
    frame = datasets.catalogue()
    assert list(frame["name"]) == datasets.names()
    for row in frame.itertuples():
        i = datasets.info(row.name)
        assert (row.source, row.task, row.n_samples, row.n_features) == (i.source, i.task, i.n_samples, i.n_features)
        assert row.n_train + row.n_test == i.n_samples
        assert (None if pd.isna(row.n_classes) else int(row.n_classes)) == i.n_classes
    assert len(datasets.catalogue("statsmodels")) == len(datasets.names("statsmodels"))


def test_docs_page_is_generated_from_the_registry():
    assert DOC.read_text(encoding="utf-8") == listing.markdown(), (
        "docs/datasets.md is stale: run `python -m hesslens.datasets docs/datasets.md`")
    for name in datasets.names():
        assert f"`{name}`" in DOC.read_text(encoding="utf-8")
