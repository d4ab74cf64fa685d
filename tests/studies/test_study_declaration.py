"""Grid expansion, configuration validation (naming field and value), run keys, TOML/YAML presets."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Literal, Optional

import pytest

from hesslens.errors import InvalidInputError
from hesslens.studies import Study, expand_grid, load_presets, make_config, param, run_key, run_study

from _toy_study import ToyConfig, log_lines, run_toy


@dataclass(frozen=True)
class Cfg:
    lr: float = param(0.1, gt=0)
    seed: int = param(0, ge=0)
    act: Literal["tanh", "relu"] = "tanh"
    width: Optional[int] = None
    hidden: tuple[int, ...] = (8,)
    flag: bool = False
    name: str = param("a", choices=("a", "b"))


def _study(**kw) -> Study:
    return Study(name="cfg", config=Cfg, run=lambda c: {}, presets=kw.pop("presets", {"smoke": {}}), **kw)


# -- expansion -----------------------------------------------------------------------------------
def test_product_in_declared_order_last_axis_fastest():
    rows = expand_grid({"lr": [0.1, 0.2, 0.3], "seed": [0, 1], "act": "relu"})
    expected = [{"lr": lr, "seed": s, "act": "relu"} for lr, s in itertools.product([0.1, 0.2, 0.3], [0, 1])]
    assert rows == expected


def test_list_of_grids_is_their_concatenation():
    rows = expand_grid([{"lr": [0.1, 0.2]}, {"lr": 1.0, "seed": [3, 4, 5]}])
    assert rows == [{"lr": 0.1}, {"lr": 0.2}, {"lr": 1.0, "seed": 3}, {"lr": 1.0, "seed": 4}, {"lr": 1.0, "seed": 5}]


def test_sequence_field_list_of_scalars_is_one_value_list_of_lists_is_an_axis():
    one = _study(presets={"smoke": {"hidden": [16, 16]}}).configs("smoke")
    assert [c.hidden for c in one] == [(16, 16)]
    axis = _study(presets={"smoke": {"hidden": [[16], [16, 16], [32, 32, 32]]}}).configs("smoke")
    assert [c.hidden for c in axis] == [(16,), (16, 16), (32, 32, 32)]


def test_empty_axis_and_bad_spec_are_errors():
    with pytest.raises(InvalidInputError, match="axis 'lr' is an empty list"):
        expand_grid({"lr": []})
    with pytest.raises(InvalidInputError, match="mapping"):
        expand_grid(42)
    with pytest.raises(InvalidInputError, match="item #1"):
        expand_grid([{"lr": 1.0}, 3])


def test_duplicates_are_run_once_and_int_widens_to_float():
    configs = _study(presets={"smoke": [{"lr": [1, 1.0]}, {"lr": 1.0}]}).configs("smoke")
    assert configs == [Cfg(lr=1.0)]
    assert isinstance(configs[0].lr, float)


# -- validation ----------------------------------------------------------------------------------
@pytest.mark.parametrize("values, field_name, bad", [
    ({"lr": "fast"}, "lr", "'fast'"),
    ({"lr": -0.5}, "lr", "-0.5"),
    ({"lr": 0}, "lr", "0"),
    ({"lr": math.nan}, "lr", "nan"),
    ({"seed": 1.5}, "seed", "1.5"),
    ({"seed": True}, "seed", "True"),
    ({"seed": -1}, "seed", "-1"),
    ({"act": "gelu"}, "act", "'gelu'"),
    ({"width": "8"}, "width", "'8'"),
    ({"hidden": [8, "x"]}, "hidden", "[8, 'x']"),
    ({"flag": 1}, "flag", "1"),
    ({"name": "c"}, "name", "'c'"),
    ({"depth": 3}, "depth", "3"),
])
def test_bad_field_is_named_with_its_value(values, field_name, bad):
    with pytest.raises(InvalidInputError) as info:
        make_config(Cfg, values)
    message = str(info.value)
    assert f"'{field_name}'" in message and bad in message, message


def test_good_values_are_coerced():
    c = make_config(Cfg, {"lr": 2, "width": None, "hidden": [4, 5], "act": "relu", "flag": True})
    assert c == Cfg(lr=2.0, width=None, hidden=(4, 5), act="relu", flag=True)
    assert make_config(Cfg, {"width": 3}).width == 3


def test_missing_required_field_and_post_init():
    @dataclass(frozen=True)
    class Req:
        a: int
        b: int = 1

        def __post_init__(self):
            if self.b > self.a:
                raise ValueError(f"b={self.b} exceeds a={self.a}")

    with pytest.raises(InvalidInputError, match="'a' is required"):
        make_config(Req, {"b": 2})
    with pytest.raises(InvalidInputError, match="b=5 exceeds a=2"):
        make_config(Req, {"a": 2, "b": 5})


def test_a_bad_configuration_stops_everything_before_any_run(tmp_path):
    log = tmp_path / "log"
    study = Study(name="toy-v", config=ToyConfig, run=run_toy, presets={})
    grid = [{"x": [0.0, 1.0], "log": str(log)}, {"x": 1e6, "log": str(log)}, {"x": 1.0, "sleep": -3}]
    with pytest.raises(InvalidInputError) as info:
        run_study(study, grid, out=tmp_path / "out")
    message = str(info.value)
    assert "2 of 4 configurations are invalid" in message
    assert "field 'x' = 1000000.0" in message and "field 'sleep' = -3.0" in message
    assert log_lines(log) == []
    assert not (tmp_path / "out").exists()


def test_unknown_preset_lists_known_ones():
    with pytest.raises(InvalidInputError, match="no preset 'huge'; known presets: full, smoke"):
        _study(presets={"smoke": {}, "full": {}}).configs("huge")


def test_study_declaration_errors():
    with pytest.raises(InvalidInputError, match="dataclass"):
        Study(name="x", config=dict, run=lambda c: {}, presets={})
    with pytest.raises(InvalidInputError, match="without spaces"):
        Study(name="a b", config=Cfg, run=lambda c: {}, presets={})
    with pytest.raises(InvalidInputError, match="1 or 2 positional"):
        Study(name="x", config=Cfg, run=lambda a, b, c: {}, presets={}).run_arity()


# -- run keys ------------------------------------------------------------------------------------
def test_run_key_is_a_stable_function_of_the_values():
    a = make_config(Cfg, {"lr": 1, "seed": 2})
    b = make_config(Cfg, {"seed": 2, "lr": 1.0})
    assert run_key(a) == run_key(b)
    assert run_key(a) != run_key(make_config(Cfg, {"lr": 2.0, "seed": 2}))
    # The seed is not part of a configuration's identity: the store keys a run by (run key, seed).
    assert run_key(a) == run_key(make_config(Cfg, {"lr": 1.0, "seed": 3}))
    assert len(run_key(a)) == 16 and int(run_key(a), 16) >= 0
    # The key hashes the canonical JSON: recomputing it by hand gives the same digest.
    import hashlib
    import json

    text = json.dumps({"act": "tanh", "flag": False, "hidden": [8], "lr": 1.0, "name": "a", "width": None},
                      sort_keys=True, separators=(",", ":"))
    assert run_key(a) == hashlib.sha256(text.encode()).hexdigest()[:16]


# -- files ---------------------------------------------------------------------------------------
def test_toml_presets(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text('[smoke]\nlr = [0.1, 0.2]\nwidth = 1\nhidden = [4, 4]\n\n'
                    '[[mixed]]\nlr = 0.5\n\n[[mixed]]\nlr = [1.0, 2.0]\nact = "relu"\n\n'
                    '[seeded]\nlr = 0.5\nseed = [0, 1]\n')
    presets = load_presets(path)
    assert set(presets) == {"smoke", "mixed", "seeded"}
    study = _study(presets={"smoke": {"lr": 9.0}})
    smoke = study.configs("smoke", grid_file=path)  # the file's preset overrides the declared one
    assert smoke == [Cfg(lr=0.1, width=1, hidden=(4, 4)), Cfg(lr=0.2, width=1, hidden=(4, 4))]
    assert study.configs("mixed", grid_file=path) == [Cfg(lr=0.5), Cfg(lr=1.0, act="relu"), Cfg(lr=2.0, act="relu")]
    file_study = _study(presets=path)
    assert file_study.preset_names() == ["smoke", "mixed", "seeded"]
    # Seeds are not a preset's business: a file that sets them is refused, saying where they go.
    with pytest.raises(InvalidInputError, match=r"preset 'seeded' sets 'seed'.*--seeds"):
        file_study.configs("seeded")


def test_toml_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[smoke\nlr = 1")
    with pytest.raises(InvalidInputError, match="not valid TOML"):
        load_presets(bad)
    scalar = tmp_path / "scalar.toml"
    scalar.write_text("smoke = 3\n")
    with pytest.raises(InvalidInputError, match="preset 'smoke' must be a table"):
        load_presets(scalar)
    with pytest.raises(InvalidInputError, match="does not exist"):
        load_presets(tmp_path / "missing.toml")


def test_yaml_presets(tmp_path):
    pytest.importorskip("yaml", reason="PyYAML is optional")
    path = tmp_path / "grid.yaml"
    path.write_text("smoke:\n  lr: [0.1, 0.3]\n  act: relu\n")
    assert _study().configs("smoke", grid_file=path) == [Cfg(lr=0.1, act="relu"), Cfg(lr=0.3, act="relu")]
