"""The end-to-end benchmark (one job per fresh process) and the GPT-style decoder of the zoo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import hesslens as hl

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not (ROOT / "benchmarks" / "end_to_end.py").exists(), reason="benchmarks/ not present")


def test_quick_run_without_the_peers_times_every_part(tmp_path):
    out = tmp_path / "e2e.json"
    env = dict(os.environ, HESSLENS_BENCH_HIDE="hessian_eigenthings,curvlinops,pyhessian")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.end_to_end", "--quick", "--out", str(out)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(out.read_text())["results"]["mlp"]
    for job in ("slq", "lambda_max"):
        (run,) = results[job]["hesslens"]
        assert {"build", "import", "setup", "job", "process"} <= set(run) and run["value"] > 0
        assert run["process"] > run["build"] + run["job"]
        assert run["engine"]["engine"].split("+")[0] in ("double_backward", "linearize")  # the run's own choice
        assert "eigenthings" not in results[job]  # not installed: left out, not failed
    assert "| mlp | slq | hesslens |" in proc.stdout


def test_table_marks_the_targets():
    sys.path.insert(0, str(ROOT))
    from benchmarks.end_to_end import table

    def runs(own: float) -> list[dict]:
        return [{"process": own + 2.0, "build": 1.0, "import": 0.1, "setup": 0.1, "job": own - 0.2}]

    text = table({"mlp": {"slq": {"hesslens": runs(1.0), "eigenthings": runs(2.5)},
                          "lambda_max": {"hesslens": runs(1.0), "pyhessian": runs(0.9)}}})
    assert "| mlp | slq | hesslens |" in text and "2.50× (≥ 2× ✔)" in text
    assert "0.90× (≥ 1× ✘)" in text


def test_gpt_products_match_double_backward():
    """A small GPT of the zoo's class: the operator's products against plain double backward."""
    sys.path.insert(0, str(ROOT))
    from benchmarks import zoo

    torch.manual_seed(0)
    model = zoo.GPT(vocab=11, context=6, d_model=8, heads=2, layers=2).double().eval()
    tokens = torch.randint(0, 11, (3, 7))
    x, y = tokens[:, :-1], tokens[:, 1:]
    loss_fn = torch.nn.CrossEntropyLoss()
    assert model(x).shape == (3, 11, 6)  # (batch, vocab, time): cross-entropy over every position
    op = hl.HessianOperator(model, loss_fn, (x, y))
    v = torch.randn(op.n, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    params = list(model.parameters())
    g = torch.autograd.grad(loss_fn(model(x), y), params, create_graph=True)
    flat = torch.cat([t.reshape(-1) for t in g])
    expected = torch.stack([torch.cat([h.reshape(-1) for h in torch.autograd.grad(flat @ v[:, j], params,
                                                                                  retain_graph=True)])
                            for j in range(2)], dim=1)
    torch.testing.assert_close(op @ v, expected.detach(), rtol=1e-9, atol=1e-12)
    # the causal mask: a later token cannot change an earlier position's logits
    changed = x.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 11
    torch.testing.assert_close(model(changed)[:, :, :-1], model(x)[:, :, :-1])


def test_the_benchmark_gpt_is_a_few_million_parameters():
    sys.path.insert(0, str(ROOT))
    from benchmarks import zoo

    case = zoo.build("gpt")
    assert 2_000_000 < case.num_params < 5_000_000 and case.inputs.shape == case.targets.shape == (32, 64)
    assert case.num_params == 3_438_080  # embeddings 147,456; 4 blocks of 789,760; final norm 512; head 131,072
