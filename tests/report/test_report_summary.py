"""summary.json: versioned schema, strict JSON, loader validation."""

from __future__ import annotations

import json

import numpy as np
import pytest

import hesslens as hl
from hesslens.report import SCHEMA, Summary, load_summary

from ._summaries import NODES, WEIGHTS, make_summary


def _reject_constants(name):
    raise AssertionError(f"non-standard JSON constant {name}")


def test_round_trip_through_a_file(tmp_path):
    s = make_summary()
    s.to_json(tmp_path / "summary.json")
    back = load_summary(tmp_path / "summary.json")
    assert back == s
    assert load_summary(tmp_path) == s  # a report folder works too
    assert load_summary(s.to_json()) == s  # and the text itself


def test_schema_comes_first_and_density_round_trips():
    d = json.loads(make_summary().to_json())
    assert next(iter(d)) == "schema" and d["schema"] == SCHEMA == "hesslens.summary/1"
    sd = make_summary().spectral_density
    np.testing.assert_array_equal(sd.nodes, NODES)
    np.testing.assert_array_equal(sd.weights, WEIGHTS)


def test_non_finite_numbers_become_null():
    text = make_summary(stderr=float("nan"), timings={"total": float("inf")}).to_json()
    d = json.loads(text, parse_constant=_reject_constants)
    assert d["trace"]["stderr"] is None and d["timings"]["total"] is None


def test_numpy_scalars_are_written_as_numbers():
    s = make_summary(lambda_max={"value": np.float64(2.5), "residual": np.float32(0.5), "converged": np.bool_(True)})
    d = json.loads(s.to_json())
    assert d["lambda_max"] == {"value": 2.5, "residual": 0.5, "converged": True}


@pytest.mark.parametrize("schema, message", [
    ("hesslens.summary/2", "unsupported summary version"),
    ("hesslens.SpectralDensity/1", "not a hesslens summary"),
    (None, "not a hesslens summary"),
])
def test_loader_checks_the_schema(schema, message):
    d = make_summary().to_dict()
    if schema is None:
        del d["schema"]
    else:
        d["schema"] = schema
    with pytest.raises(hl.InvalidInputError, match=message):
        load_summary(d)


def test_loader_names_missing_fields_and_bad_json(tmp_path):
    d = make_summary().to_dict()
    del d["trace"], d["engine"]
    with pytest.raises(hl.InvalidInputError, match="trace, engine"):
        Summary.from_dict(d)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(hl.InvalidInputError, match="not valid JSON"):
        load_summary(tmp_path / "bad.json")
