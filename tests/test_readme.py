"""The README's quick start runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_quick_start_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python block"
    quick = blocks[0]
    assert len([l for l in quick.splitlines() if l.strip()]) <= 12
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(quick, str(README), "exec"), namespace)
    top, tr, sd = namespace["top"], namespace["tr"], namespace["sd"]
    assert top.values[0] <= top.values[1] and top.all_converged
    assert tr.stderr >= 0 and sd.nodes.shape == (10, 80)
    assert (tmp_path / "density.png").stat().st_size > 0


def test_training_example_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 2, "README has no training example"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(blocks[1], str(README), "exec"), namespace)
    history, s = namespace["tracker"].history, namespace["s"]
    assert list(history["epoch"]) == [0, 5, 10, 15, 20] and (history["lambda_max"] > 0).all()
    assert s.lambda_max > 0 and s.residual <= 1e-3 * s.lambda_max
