"""A lean main job: heavy packages load where they are used, and the analysis installs only the core.

``import hesslens`` and ``hesslens study NAME --status`` must not pay for pandas, matplotlib, Ray,
Lightning, scikit-learn, statsmodels or SciPy's statistics; each check runs in a fresh interpreter,
since this test process has long imported all of them. Datasets whose package is an extra name the
extra when it is missing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import hesslens
from hesslens import datasets
from hesslens.datasets.real import MissingDependencyError

try:
    import tomllib
except ImportError:  # Python 3.10: the core's tomli
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]

#: Never imported by ``import hesslens``, nor by touching every public name it exports.
HEAVY = ("pandas", "matplotlib", "ray", "lightning", "pytorch_lightning", "sklearn", "statsmodels", "mnist1d",
         "pyarrow", "tensorboard", "mlflow")


def _loaded_after(code: str) -> set[str]:
    """Top-level packages and ``scipy.stats`` in ``sys.modules`` after ``code`` ran in a fresh interpreter."""
    probe = (f"{code}\nimport json, sys\n"
             "print(json.dumps(sorted({m.partition('.')[0] for m in sys.modules} | "
             "({'scipy.stats'} & set(sys.modules)))))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_import_hesslens_loads_no_heavy_package():
    loaded = _loaded_after("import hesslens")
    assert loaded.isdisjoint(HEAVY + ("torch", "scipy", "tqdm")), sorted(loaded & set(HEAVY + ("torch", "scipy")))


def test_public_names_load_no_heavy_package():
    """``from hesslens import *`` imports torch and the algorithms, still without pandas and the rest."""
    loaded = _loaded_after("from hesslens import *\nimport hesslens as hl\nhl.datasets.names()\nhl.training.evenly_spaced")
    assert "torch" in loaded
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))


def test_study_status_loads_neither_torch_nor_the_report(tmp_path):
    """``hesslens study sharpness --status`` counts rows: no torch, matplotlib or SciPy statistics."""
    code = ("from hesslens.studies.cli import study\n"
            f"try:\n    study(['sharpness', '--status', '--out', {str(tmp_path)!r}])\n"
            "except SystemExit as exc:\n    assert not exc.code, exc.code")
    loaded = _loaded_after(code)
    assert loaded.isdisjoint({"torch", "matplotlib", "scipy.stats", "tqdm", "ray", "sklearn"}), sorted(loaded)


def test_lazy_names_are_the_real_objects():
    from hesslens.linalg import eigenvalues
    from hesslens.training import Tracker, evenly_spaced

    assert hesslens.eigenvalues is eigenvalues and hesslens.Tracker is Tracker
    assert hesslens.training.evenly_spaced is evenly_spaced and hesslens.datasets is datasets
    assert set(hesslens.__all__) <= set(dir(hesslens))
    with pytest.raises(AttributeError, match="no_such_name"):
        hesslens.no_such_name  # noqa: B018
    import hesslens.studies as studies

    assert studies.Study is studies.declaration.Study and set(studies.__all__) <= set(dir(studies))


@pytest.mark.parametrize("name, blocked", [
    ("fair", ("statsmodels", "statsmodels.datasets", "statsmodels.datasets.fair")),
    ("mnist1d_n20", ("mnist1d", "mnist1d.data")),
])
def test_missing_optional_package_names_the_extra(monkeypatch, name, blocked):
    datasets.clear_cache()
    for module in blocked:  # None in sys.modules: the import fails as for a package never installed
        monkeypatch.setitem(sys.modules, module, None)
    try:
        with pytest.raises(MissingDependencyError, match=r"pip install 'hesslens\[studies\]'") as caught:
            datasets.load(name)
    finally:
        datasets.clear_cache()
    assert isinstance(caught.value, ImportError) and isinstance(caught.value, hesslens.HesslensError)
    assert blocked[0] in str(caught.value)


def test_analysis_dependencies_are_the_core():
    """scripts/analyze.sh installs the core only; scripts/test.sh the test extra, which has the studies'."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {d.split(";")[0].split(">")[0].split("=")[0].strip() for d in project["dependencies"]}
    extras = project["optional-dependencies"]
    assert core.isdisjoint({"statsmodels", "mnist1d", "ray", "lightning", "pyarrow", "hypothesis", "pytest"})
    assert {"torch", "numpy", "scipy", "matplotlib", "scikit-learn", "click"} <= core
    assert "hesslens[studies]" in extras["test"] and {"statsmodels>=0.14", "mnist1d==0.0.2.post1"} <= set(extras["studies"])
    analyze, test = (ROOT / "scripts" / "analyze.sh").read_text(), (ROOT / "scripts" / "test.sh").read_text()
    assert "bash scripts/setup.sh >&2" in analyze and "bash scripts/setup.sh test" in test


def test_cli_which_choices_are_the_api_s():
    from hesslens import cli
    from hesslens.linalg.eigen import WHICH

    assert cli.WHICH == WHICH
